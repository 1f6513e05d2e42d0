"""choose_variant and is_mirrored: weighted, sticky, deterministic."""

from __future__ import annotations

import pytest

from greenbutton.controller.reconcile import Backend
from greenbutton.controller.routing.split import choose_variant, is_mirrored
from greenbutton.controller.routing.table import RouteTable

SPLIT = (Backend(1, "http://a", 80), Backend(2, "http://b", 20))


def test_choose_variant_same_key_same_variant() -> None:
    chosen = {choose_variant(SPLIT, "user-42").version for _ in range(50)}
    assert len(chosen) == 1


def test_choose_variant_shares_follow_weights() -> None:
    counts = {1: 0, 2: 0}
    for i in range(5000):
        counts[choose_variant(SPLIT, f"request-{i}").version] += 1
    assert 0.76 < counts[1] / 5000 < 0.84


def test_choose_variant_skips_zero_weight() -> None:
    split = (Backend(1, "http://a", 0), Backend(2, "http://b", 0, 5), Backend(3, "http://c", 1))
    assert {choose_variant(split, str(i)).version for i in range(100)} == {3}


def test_choose_variant_all_zero_raises() -> None:
    with pytest.raises(ValueError):
        choose_variant((Backend(1, "http://a", 0),), "k")


def test_is_mirrored_share_follows_percent() -> None:
    share = sum(is_mirrored(10, f"r{i}") for i in range(5000)) / 5000
    assert 0.08 < share < 0.12
    assert not any(is_mirrored(0, f"r{i}") for i in range(100))
    assert all(is_mirrored(100, f"r{i}") for i in range(100))


def test_lease_with_key_is_sticky() -> None:
    routes = RouteTable()
    routes.switch("wine", SPLIT)
    versions = set()
    for _ in range(30):
        with routes.lease("wine", key="customer-7") as backend:
            versions.add(backend.version)
    assert len(versions) == 1


def test_shadows_lists_mirror_backends_only() -> None:
    routes = RouteTable()
    shadow = Backend(3, "http://c", 0, 5)
    routes.switch("wine", (*SPLIT, shadow))
    assert routes.shadows("wine") == (shadow,)
