"""What the dashboard says a deployment is doing: the controller's status against what is wanted."""

from __future__ import annotations

from typing import Any

from greenbutton.controller.loop import DeploymentState, DeploymentStatus, TrafficShare
from greenbutton.controller.reconcile import DeploymentSpec, RouteSpec, ShadowSpec
from greenbutton.controlplane.dashboard.rollout import Step, rollout_of


def status(state: DeploymentState, version: int | None, serving: int | None,
           traffic: tuple[tuple[int, int, int], ...] = (), **extra: Any) -> DeploymentStatus:
    return DeploymentStatus(
        name="wine", model="wine", version=version, state=state,
        url="http://127.0.0.1:8600/endpoints/wine/", serving_version=serving,
        traffic=tuple(TrafficShare(version=v, weight=w, mirror_percent=m) for v, w, m in traffic),
        **extra)


def wanted(version: int, split: tuple[tuple[int, int], ...] = (),
           shadow: tuple[tuple[int, int], ...] = ()) -> DeploymentSpec:
    return DeploymentSpec(name="wine", model="wine", version=version,
                          split=tuple(RouteSpec(version=v, weight=w) for v, w in split),
                          shadow=tuple(ShadowSpec(version=v, percent=p) for v, p in shadow))


def test_rollout_of_ready_deployment_is_done() -> None:
    found = rollout_of(status(DeploymentState.READY, 1, 1, ((1, 100, 0),)), wanted(1))
    assert found.step is Step.DONE
    assert found.text == "ready: v1 100 %"


def test_rollout_of_promotion_not_yet_reconciled_is_waiting() -> None:
    found = rollout_of(status(DeploymentState.READY, 1, 1, ((1, 100, 0),)), wanted(2))
    assert found.step is Step.WAITING
    assert found.text == "waiting for the controller to roll out v2 100 %; v1 keeps serving"


def test_rollout_of_starting_successor_names_both_versions() -> None:
    found = rollout_of(status(DeploymentState.STARTING, 2, 1, ((1, 100, 0),)), wanted(2))
    assert found.step is Step.STARTING
    assert found.text == "rolling out (v1 -> v2, 0 %): starting v2; v1 keeps serving"


def test_rollout_of_crash_looping_version_says_so() -> None:
    found = rollout_of(status(DeploymentState.READY, 1, 1, ((1, 100, 0),), failures=4,
                              restarts=4, is_crash_looping=True,
                              summary="crash loop: v1 failed 4 times in a row (4 restarts)"),
                       wanted(1))
    assert found.step is Step.FAILED
    assert found.text.startswith("crash loop: v1")


def test_rollout_of_first_start_has_no_traffic() -> None:
    found = rollout_of(status(DeploymentState.PENDING, 1, None), wanted(1))
    assert found.step is Step.STARTING
    assert "no traffic yet" in found.text


def test_rollout_of_split_not_yet_routed_is_switching() -> None:
    found = rollout_of(status(DeploymentState.READY, 1, 1, ((1, 100, 0),)),
                       wanted(1, split=((1, 80), (2, 20))))
    assert found.step is Step.SWITCHING
    assert "v1 80 %, v2 20 %" in found.text and "now v1 100 %" in found.text


def test_rollout_of_routed_split_with_shadow_is_done() -> None:
    found = rollout_of(status(DeploymentState.READY, 1, 1, ((1, 40, 0), (2, 10, 0), (3, 0, 5))),
                       wanted(1, split=((1, 80), (2, 20)), shadow=((3, 5),)))
    assert found.step is Step.DONE
    assert found.text == "ready: v1 80 %, v2 20 %; shadow v3 5 %"


def test_rollout_of_failed_version_gives_reason_and_retry() -> None:
    found = rollout_of(status(DeploymentState.FAILED, 2, 1, ((1, 100, 0),),
                              reason="exited with code 1: boom", failures=3, retry_in_s=4.2),
                       wanted(2))
    assert found.step is Step.FAILED
    assert "exited with code 1: boom" in found.text
    assert "retry in 4 s" in found.text and "v1 keeps serving" in found.text


def test_rollout_of_removed_deployment_is_stopping() -> None:
    found = rollout_of(status(DeploymentState.STOPPING, None, None), None)
    assert found.step is Step.STOPPING
