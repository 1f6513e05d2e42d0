"""RouteTable: request-time backend choice and in-flight counting for drains."""

from __future__ import annotations

import asyncio

import pytest

from greenbutton.controller.reconcile import Backend
from greenbutton.controller.routing.table import RouteTable
from greenbutton.errors import DeploymentNotFound, NotReady

OLD, NEW = Backend(1, "http://127.0.0.1:40001"), Backend(2, "http://127.0.0.1:40002")


def test_lease_unknown_deployment_raises_not_found() -> None:
    routes = RouteTable()
    routes.mark_loaded()
    with pytest.raises(DeploymentNotFound):
        routes.lease("digits")


def test_lease_before_routes_are_loaded_raises_not_ready() -> None:
    with pytest.raises(NotReady):
        RouteTable().lease("digits")


def test_lease_without_backend_raises_not_ready() -> None:
    routes = RouteTable()
    routes.switch("digits", ())
    with pytest.raises(NotReady):
        routes.lease("digits")


def test_lease_counts_request_in_flight_until_released() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    lease = routes.lease("digits")
    assert routes.in_flight(OLD.url) == 1
    lease.release()
    lease.release()
    assert routes.in_flight(OLD.url) == 0


def test_switch_applies_to_next_lease() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    with routes.lease("digits") as before:
        routes.switch("digits", (NEW,))
        with routes.lease("digits") as after:
            assert (before.version, after.version) == (1, 2)


def test_remove_makes_deployment_unknown() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    routes.mark_loaded()
    routes.remove("digits")
    with pytest.raises(DeploymentNotFound):
        routes.lease("digits")


def test_lease_avoiding_only_backend_raises_not_ready() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    with pytest.raises(NotReady):
        routes.lease("digits", avoid_url=OLD.url)


def test_lease_weighted_routes_skip_zero_weight() -> None:
    routes = RouteTable()
    routes.switch("digits", (Backend(1, OLD.url, 0), Backend(2, NEW.url, 100)))
    versions = set()
    for _ in range(20):
        with routes.lease("digits") as backend:
            versions.add(backend.version)
    assert versions == {2}


async def test_wait_drained_returns_when_last_request_finishes() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    lease = routes.lease("digits")
    asyncio.get_running_loop().call_later(0.1, lease.release)
    assert await routes.wait_drained(OLD.url, timeout_s=5.0)


async def test_wait_drained_times_out_with_request_in_flight() -> None:
    routes = RouteTable()
    routes.switch("digits", (OLD,))
    with routes.lease("digits"):
        assert not await routes.wait_drained(OLD.url, timeout_s=0.1)
