"""``greenbutton deploy`` flags -> DeploySpec (``--shadow 5`` means 5 % to staging)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from greenbutton.cli.deploy import spec_from_args
from greenbutton.controller.specs import RouteRule, ShadowRule
from greenbutton.errors import InvalidInput


def _args(**given: Any) -> argparse.Namespace:
    defaults = {"name": "wine", "model": None, "route": [], "shadow": [], "replicas": 1,
                "max_replicas": None, "sticky_header": None, "target": None}
    return argparse.Namespace(**{**defaults, **given})


def test_spec_from_args_routes_and_shadow_shorthand() -> None:
    spec = spec_from_args(_args(route=["production=80", "challenger=20"], shadow=["5"]))
    assert spec.model == "wine"
    assert spec.routes == (RouteRule(to="production", weight=80),
                           RouteRule(to="challenger", weight=20))
    assert spec.shadow == (ShadowRule(to="staging", percent=5),)


def test_spec_from_args_defaults_to_production_only() -> None:
    assert spec_from_args(_args()).routes == (RouteRule(to="production", weight=100),)


@pytest.mark.parametrize("bad", [{"route": ["production"]}, {"route": ["nightly=5"]},
                                 {"shadow": ["lots"]}, {"shadow": ["staging=0"]},
                                 {"replicas": 0}])
def test_spec_from_args_invalid_raises_invalid_input(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        spec_from_args(_args(**bad))
