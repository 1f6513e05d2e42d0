"""plan(desired, observed, routed): pure blue-green decisions, no processes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from greenbutton.controller.reconcile import (
    Backend,
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    RemoveRoute,
    RestartBackoff,
    StartVersion,
    StopVersion,
    SwitchTraffic,
    VersionRef,
    plan,
)

V1 = VersionRef("digits", "digits", 1)
V2 = VersionRef("digits", "digits", 2)
V3 = VersionRef("digits", "digits", 3)
URL1, URL2 = "http://127.0.0.1:40001", "http://127.0.0.1:40002"


def spec(version: int) -> DeploymentSpec:
    return DeploymentSpec(name="digits", model="digits", version=version)


def seen(
    ref: VersionRef, state: InstanceState, url: str | None = None, **kw: object
) -> ObservedDeployment:
    return ObservedDeployment(ref=ref, state=state, url=url, **kw)  # type: ignore[arg-type]


def routed_to(*backends: Backend) -> dict[str, tuple[Backend, ...]]:
    return {"digits": backends}


def test_plan_fresh_start_starts_version_and_announces_route() -> None:
    assert plan([spec(1)], []) == [StartVersion(V1), SwitchTraffic("digits", ())]


def test_plan_starting_version_waits() -> None:
    observed = [seen(V1, InstanceState.STARTING, URL1)]
    assert plan([spec(1)], observed, routed_to()) == []


def test_plan_ready_version_receives_traffic() -> None:
    observed = [seen(V1, InstanceState.READY, URL1)]
    assert plan([spec(1)], observed, routed_to()) == [
        SwitchTraffic("digits", (Backend(1, URL1, 100),))
    ]


def test_plan_converged_state_returns_no_actions() -> None:
    observed = [seen(V1, InstanceState.READY, URL1)]
    assert plan([spec(1)], observed, routed_to(Backend(1, URL1))) == []


def test_plan_new_version_starts_beside_serving_one() -> None:
    observed = [seen(V1, InstanceState.READY, URL1)]
    assert plan([spec(2)], observed, routed_to(Backend(1, URL1))) == [StartVersion(V2)]


def test_plan_new_version_starting_keeps_old_route() -> None:
    observed = [seen(V1, InstanceState.READY, URL1), seen(V2, InstanceState.STARTING, URL2)]
    assert plan([spec(2)], observed, routed_to(Backend(1, URL1))) == []


def test_plan_new_version_ready_switches_before_stopping_old() -> None:
    observed = [seen(V1, InstanceState.READY, URL1), seen(V2, InstanceState.READY, URL2)]
    assert plan([spec(2)], observed, routed_to(Backend(1, URL1))) == [
        SwitchTraffic("digits", (Backend(2, URL2, 100),)),
        StopVersion(V1, URL1),
    ]


def test_plan_old_version_stopping_is_left_alone() -> None:
    observed = [seen(V1, InstanceState.STOPPING, URL1), seen(V2, InstanceState.READY, URL2)]
    assert plan([spec(2)], observed, routed_to(Backend(2, URL2))) == []


def test_plan_new_version_failing_keeps_old_serving() -> None:
    observed = [
        seen(V1, InstanceState.READY, URL1),
        seen(V2, InstanceState.FAILED, failures=1, state_age_s=0.0),
    ]
    assert plan([spec(2)], observed, routed_to(Backend(1, URL1))) == []


def test_plan_superseded_starting_version_is_stopped() -> None:
    observed = [seen(V1, InstanceState.READY, URL1), seen(V2, InstanceState.STARTING, URL2)]
    assert plan([spec(3)], observed, routed_to(Backend(1, URL1))) == [
        StartVersion(V3),
        StopVersion(V2, None),
    ]


def test_plan_after_restart_routes_the_ready_old_version_and_keeps_it() -> None:
    adopted = [seen(V1, InstanceState.READY, URL1), seen(V2, InstanceState.STARTING, URL2)]
    assert plan([spec(2)], adopted, {}) == [SwitchTraffic("digits", (Backend(1, URL1),))]


def test_plan_after_restart_stops_nothing_not_yet_checked() -> None:
    adopted = [seen(V1, InstanceState.STARTING, URL1), seen(V2, InstanceState.STARTING, URL2)]
    assert plan([spec(2)], adopted, {}) == [SwitchTraffic("digits", ())]
    assert plan([spec(2)], adopted, routed_to()) == []


def test_plan_empty_route_takes_a_version_once_observed_ready() -> None:
    observed = [seen(V1, InstanceState.READY, URL1), seen(V2, InstanceState.STARTING, URL2)]
    assert plan([spec(2)], observed, routed_to()) == [
        SwitchTraffic("digits", (Backend(1, URL1),))]


def test_plan_removed_deployment_removes_route_then_stops() -> None:
    observed = [seen(V1, InstanceState.READY, URL1)]
    assert plan([], observed, routed_to(Backend(1, URL1))) == [
        RemoveRoute("digits"),
        StopVersion(V1, URL1),
    ]


def test_plan_removed_deployment_stopping_returns_no_actions() -> None:
    assert plan([], [seen(V1, InstanceState.STOPPING, URL1)]) == []


def test_plan_version_still_stopping_is_not_started_again() -> None:
    observed = [seen(V1, InstanceState.STOPPING, URL1)]
    assert plan([spec(1)], observed, routed_to()) == []


def test_plan_crashed_serving_version_is_unrouted() -> None:
    observed = [seen(V1, InstanceState.FAILED, failures=1, state_age_s=0.0)]
    assert plan([spec(1)], observed, routed_to(Backend(1, URL1))) == [SwitchTraffic("digits", ())]


def test_plan_failed_version_waits_for_backoff() -> None:
    observed = [seen(V1, InstanceState.FAILED, failures=2, state_age_s=1.5)]
    backoff = RestartBackoff(initial_s=1.0, max_s=60.0)
    assert plan([spec(1)], observed, routed_to(), backoff=backoff) == []


def test_plan_failed_version_restarts_after_backoff() -> None:
    observed = [seen(V1, InstanceState.FAILED, failures=2, state_age_s=2.5)]
    backoff = RestartBackoff(initial_s=1.0, max_s=60.0)
    assert plan([spec(1)], observed, routed_to(), backoff=backoff) == [StartVersion(V1)]


def test_plan_restarted_version_on_new_port_is_rerouted() -> None:
    observed = [seen(V1, InstanceState.READY, URL2)]
    assert plan([spec(1)], observed, routed_to(Backend(1, URL1))) == [
        SwitchTraffic("digits", (Backend(1, URL2, 100),))
    ]


def test_plan_other_deployments_are_planned_independently() -> None:
    other = DeploymentSpec(name="iris", model="iris", version=4)
    observed = [seen(V1, InstanceState.READY, URL1)]
    actions = plan([spec(1), other], observed, routed_to(Backend(1, URL1)))
    assert actions == [StartVersion(VersionRef("iris", "iris", 4)), SwitchTraffic("iris", ())]


def test_restart_backoff_doubles_up_to_max() -> None:
    backoff = RestartBackoff(initial_s=1.0, max_s=5.0)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_deployment_spec_routes_all_traffic_to_version() -> None:
    assert [(r.version, r.weight) for r in spec(7).routes] == [(7, 100)]


@pytest.mark.parametrize("name", ["", "../etc", "a b", "a/b", "-rf", "x" * 200, "a..b"])
def test_deployment_spec_unsafe_name_is_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        DeploymentSpec(name=name, model="digits", version=1)


def test_deployment_spec_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError):
        DeploymentSpec(name="digits", model="digits", version=1, replica=2)  # type: ignore[call-arg]
