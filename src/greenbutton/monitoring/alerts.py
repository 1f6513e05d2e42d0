"""Alert rules over the live monitoring figures → JSON webhook, with cooldown → retraining.

The rules file (``monitoring.alerts_file``) is an :class:`AlertsSpec`::

    {"rules": [{"name": "drift", "kind": "drift"},
               {"name": "low-reward", "kind": "reward_below", "threshold": -0.5}],
     "webhook": {"url": "https://hooks.slack.com/...", "format": "slack"},
     "cooldown_s": 3600,
     "retrain": {"command": ["python", "retrain.py", "--model", "wine"]}}

Deciding (:func:`firing`, pure) is kept apart from doing (:class:`Alerter`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .webhooks import post_json

logger = logging.getLogger(__name__)


class RuleKind(StrEnum):
    """What a rule watches: ``drift`` the overall verdict (inputs, outputs, data quality,
    labels and performance), ``data_quality`` and ``performance_drop`` their own tests (no
    threshold); ``*_below`` fire under the threshold, the others above it."""

    DRIFT = "drift"
    DATA_QUALITY = "data_quality"
    PERFORMANCE_DROP = "performance_drop"
    OUTLIER_RATE_ABOVE = "outlier_rate_above"
    ACCURACY_BELOW = "accuracy_below"
    ESTIMATED_ACCURACY_BELOW = "estimated_accuracy_below"
    REWARD_BELOW = "reward_below"
    ERROR_RATE_ABOVE = "error_rate_above"
    P99_LATENCY_ABOVE_S = "p99_latency_above_s"


class RuleSpec(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: RuleKind
    threshold: float | None = None
    is_retraining: bool = True
    """Whether this rule firing also starts the retraining trigger."""

    @model_validator(mode="after")
    def _needs_threshold(self) -> Self:
        if self.kind not in VERDICT_OF and self.threshold is None:
            raise ValueError(f"rule kind {self.kind} needs a threshold")
        return self


class WebhookSpec(BaseModel):
    """Where alerts are posted; ``slack`` sends ``{"text": ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    format: Literal["json", "slack"] = "json"


class RetrainSpec(BaseModel):
    """The retraining trigger: an argv list (run without a shell) or a webhook URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    timeout_s: float = 3600.0

    @model_validator(mode="after")
    def _one_trigger(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise ValueError("retrain needs exactly one of command or url")
        return self


class AlertsSpec(BaseModel):
    """The alert rules of a serving process and where they go."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[RuleSpec] = []
    webhook: WebhookSpec | None = None
    cooldown_s: float = Field(default=3600.0, ge=0)
    retrain: RetrainSpec | None = None

    @classmethod
    def from_file(cls, path: Path) -> AlertsSpec:
        """Parse the rules file (JSON)."""
        return cls.model_validate_json(path.read_text())


@dataclass(frozen=True)
class Figures:
    """The live figures rules are checked against (None: not known yet)."""

    model: str
    version: str | None
    is_drift: bool = False
    is_quality_issue: bool = False
    is_performance_drop: bool = False
    outlier_rate: float | None = None
    accuracy: float | None = None
    """Over the newest labelled rows (all feedback when there is no held-out reference)."""
    estimated_accuracy: float | None = None
    """Estimated from the model's confidence on the window, without labels."""
    mean_reward: float | None = None
    error_rate: float | None = None
    p99_latency_s: float | None = None


VERDICT_OF: dict[RuleKind, str] = {
    RuleKind.DRIFT: "is_drift", RuleKind.DATA_QUALITY: "is_quality_issue",
    RuleKind.PERFORMANCE_DROP: "is_performance_drop",
}
"""Rules that fire on a test's verdict (no threshold)."""
FIGURE_OF: dict[RuleKind, str] = {
    RuleKind.OUTLIER_RATE_ABOVE: "outlier_rate", RuleKind.ACCURACY_BELOW: "accuracy",
    RuleKind.ESTIMATED_ACCURACY_BELOW: "estimated_accuracy",
    RuleKind.REWARD_BELOW: "mean_reward", RuleKind.ERROR_RATE_ABOVE: "error_rate",
    RuleKind.P99_LATENCY_ABOVE_S: "p99_latency_s",
}


def firing(rules: list[RuleSpec], figures: Figures) -> list[tuple[RuleSpec, float | bool]]:
    """The rules ``figures`` break, each with the offending value."""
    fired: list[tuple[RuleSpec, float | bool]] = []
    for rule in rules:
        if rule.kind in VERDICT_OF:
            if getattr(figures, VERDICT_OF[rule.kind]):
                fired.append((rule, True))
            continue
        value = getattr(figures, FIGURE_OF[rule.kind])
        if value is None or rule.threshold is None:
            continue
        is_below = rule.kind.value.endswith("_below")
        if (value < rule.threshold) if is_below else (value > rule.threshold):
            fired.append((rule, value))
    return fired


def payload(rule: RuleSpec, value: float | bool, figures: Figures, fmt: str) -> dict[str, Any]:
    """The webhook body for one fired rule (plain JSON or Slack's ``{"text": ...}``)."""
    body = {"alert": rule.name, "kind": rule.kind.value, "threshold": rule.threshold,
            "value": value, "model": figures.model, "version": figures.version}
    if fmt == "slack":
        return {"text": f":rotating_light: greenbutton alert *{rule.name}* on "
                        f"{figures.model} v{figures.version}: {rule.kind.value} = {value}"
                        + (f" (threshold {rule.threshold})" if rule.threshold is not None else "")}
    return body


Claim = Callable[[str, str | None, str, float], bool]
"""``(model, version, rule, cooldown_s) → may this process send it now``, shared by every
process that alerts for the model (``Coordination.claim_alert``)."""


class Alerter:
    """Checks rules, posts alerts (at most once per rule per cooldown) and triggers retraining.

    The cooldown is this process's own unless ``claim`` is given; with it, all the workers and
    replicas serving a version (each tests the version's drift window) send an alert once
    between them. When the claim cannot be made (the store is down), the alert is sent: a duplicate
    is better than a lost alert.
    """

    def __init__(self, spec: AlertsSpec, *, is_private_allowed: bool,
                 on_fired: Callable[[str, str | None, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 claim: Claim | None = None) -> None:
        self.spec, self.is_private_allowed = spec, is_private_allowed
        self.on_fired, self.clock, self.claim = on_fired, clock, claim
        self.last_sent: dict[str, float] = {}
        self.sent: list[dict[str, Any]] = []
        self.children: set[asyncio.Task[int]] = set()

    async def check(self, figures: Figures) -> list[str]:
        """Send what fires and is out of its cooldown; the names of the rules sent."""
        sent: list[str] = []
        for rule, value in firing(self.spec.rules, figures):
            now = self.clock()
            last = self.last_sent.get(rule.name)
            if last is not None and now - last < self.spec.cooldown_s:
                continue
            self.last_sent[rule.name] = now
            if not await self._is_claimed(rule, figures):
                continue  # another worker or replica sent it within the cooldown
            sent.append(rule.name)
            if self.on_fired is not None:
                self.on_fired(figures.model, figures.version, rule.name)
            await self._notify(rule, value, figures)
            if rule.is_retraining and self.spec.retrain is not None:
                await self._retrain(rule, value, figures)
        return sent

    async def _is_claimed(self, rule: RuleSpec, figures: Figures) -> bool:
        if self.claim is None:
            return True
        try:
            return await asyncio.to_thread(self.claim, figures.model, figures.version,
                                           rule.name, self.spec.cooldown_s)
        except Exception:
            logger.exception("could not check whether alert %r was sent elsewhere; sending",
                             rule.name)
            return True

    async def _notify(self, rule: RuleSpec, value: float | bool, figures: Figures) -> None:
        if self.spec.webhook is None:
            return
        body = payload(rule, value, figures, self.spec.webhook.format)
        self.sent.append(body)
        try:
            await post_json(self.spec.webhook.url, body,
                            is_private_allowed=self.is_private_allowed)
        except Exception:  # an unreachable receiver must not stop monitoring
            logger.exception("alert webhook for rule %r failed", rule.name)

    async def _retrain(self, rule: RuleSpec, value: float | bool, figures: Figures) -> None:
        retrain = self.spec.retrain
        assert retrain is not None
        body = {"event": "retrain", **payload(rule, value, figures, "json")}
        try:
            if retrain.url is not None:
                await post_json(retrain.url, body, is_private_allowed=self.is_private_allowed)
            elif retrain.command is not None:
                process = await asyncio.create_subprocess_exec(
                    *retrain.command, env={"GREENBUTTON_ALERT": json.dumps(body)},
                    stdin=asyncio.subprocess.DEVNULL)
                reaping = asyncio.create_task(asyncio.wait_for(process.wait(), retrain.timeout_s))
                self.children.add(reaping)
                reaping.add_done_callback(self.children.discard)
        except Exception:
            logger.exception("retraining trigger for rule %r failed", rule.name)
