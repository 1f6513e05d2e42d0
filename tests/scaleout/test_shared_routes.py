"""Followers' gateways take the leader's route table through ``<home>/run/routes.json``."""

from __future__ import annotations

from pathlib import Path

from greenbutton.controller.reconcile import Backend
from greenbutton.controller.routing.shared import SharedRoutes
from greenbutton.controller.routing.table import RouteTable


def test_follower_mirrors_switches_sticky_headers_and_removals(tmp_path: Path) -> None:
    path = tmp_path / "run" / "routes.json"
    leader_table, follower_table = RouteTable(), RouteTable()
    leader, follower = SharedRoutes(leader_table, path), SharedRoutes(follower_table, path)
    follower.tick(is_leader=False)  # nothing published yet: nothing changes
    assert follower_table.snapshot() == {}

    leader_table.switch("wine", [Backend(3, "http://127.0.0.1:9001", 80),
                                 Backend(4, "http://127.0.0.1:9002", 20)])
    leader_table.switch("digits", [Backend(1, "http://127.0.0.1:9003")])
    leader_table.set_sticky_header("wine", "X-User")
    leader.tick(is_leader=True)
    follower.tick(is_leader=False)
    assert follower_table.snapshot() == leader_table.snapshot()
    assert follower_table.sticky_header("wine") == "x-user"

    leader_table.remove("digits")
    leader.tick(is_leader=True)
    follower.tick(is_leader=False)
    assert set(follower_table.snapshot()) == {"wine"}
    assert path.stat().st_mode & 0o022 == 0


def test_a_corrupt_file_is_logged_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text("{not json")
    table = RouteTable()
    SharedRoutes(table, path).tick(is_leader=False)
    assert table.snapshot() == {}
