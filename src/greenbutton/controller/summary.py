"""A deployment's state in one line, for people: the API's ``summary``, ``greenbutton status``
and the dashboard say the same words. Usage::

    summarize(Situation(state="starting", version=2, wanted=(2,), traffic={1: 100},
                        ready=0, replicas=1))
    # 'rolling out (v1 -> v2, 0 %): 0/1 ready'
"""

from __future__ import annotations

from dataclasses import dataclass

CRASH_LOOP_FAILURES = 2
"""Consecutive failures (never ready for ``restart_backoff_max_s`` in between) that make a
crash loop."""


@dataclass(frozen=True)
class Situation:
    """What the controller knows about one deployment after a pass."""

    state: str
    version: int | None
    wanted: tuple[int, ...]
    """Versions the spec routes traffic to."""
    traffic: dict[int, float]
    """Version -> routed weight now (mirrors left out)."""
    ready: int = 0
    """Ready replicas of the wanted versions."""
    replicas: int = 0
    """Replicas the wanted versions should have."""
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    retry_in_s: float | None = None


def is_crash_looping(failures: int) -> bool:
    """Whether a version that failed ``failures`` times in a row is in a crash loop."""
    return failures >= CRASH_LOOP_FAILURES


def summarize(now: Situation) -> str:
    """``ready``, ``rolling out (v1 -> v2, 40 %)``, ``crash loop: ...``, and so on."""
    if now.version is None or now.state == "stopping":
        return "stopping"
    old = sorted(v for v, weight in now.traffic.items() if weight > 0 and v not in now.wanted)
    serving_old = f"; v{', v'.join(map(str, old))} keeps serving" if old else ""
    if is_crash_looping(now.failures):
        retry = f", retry in {now.retry_in_s:.0f} s" if now.retry_in_s is not None else ""
        return (f"crash loop: v{now.version} failed {now.failures} times in a row "
                f"({now.restarts} restarts{retry}): {_first_line(now.last_error)}{serving_old}")
    if now.state == "failed":
        retry = f"; retry in {now.retry_in_s:.0f} s" if now.retry_in_s is not None else ""
        return f"failed: {_first_line(now.last_error)}{retry}{serving_old}"
    if old:
        total = sum(w for w in now.traffic.values() if w > 0)
        new = sum(w for v, w in now.traffic.items() if v in now.wanted)
        percent = round(100 * new / total) if total else 0
        return (f"rolling out (v{', v'.join(map(str, old))} -> v{now.version}, {percent} %): "
                f"{now.ready}/{now.replicas} ready")
    if now.state in ("pending", "starting"):
        serving = "" if any(w > 0 for w in now.traffic.values()) else "; no traffic yet"
        return f"starting v{now.version}: {now.ready}/{now.replicas} ready{serving}"
    restarted = f" ({now.restarts} restarts, last: {_first_line(now.last_error)})" \
        if now.restarts else ""
    return f"{now.state}{restarted}"


def _first_line(text: str | None) -> str:
    """A failure reason's first line (a log tail follows it), at most 200 characters."""
    line = (text or "no reason given").strip().splitlines()[0] if text else "no reason given"
    return line[:200]
