"""One ``/metrics`` for several workers: each publishes its registry, any of them sums them up.

Every worker keeps its own ``CollectorRegistry``. With several workers a scrape lands on one
of them at random, so each worker writes its exposition to ``<directory>/<pid>.prom``
(write-then-rename) every ``interval_s`` and whenever it answers a scrape, and the
answering worker merges every file: counters, histograms and summaries are summed, gauges
take the maximum (a drift score or readiness of any worker), except the additive ones
(requests in flight) which are summed, and p-values, which take the minimum (the worker
with the strongest evidence of drift, whose flag the maximum reports). When a worker exits,
the supervisor retires its file: its counts stay (totals never go backwards), its gauges go
(a dead worker's drift flag or requests in flight describe nothing any more).

A file that cannot be written (a full disk) leaves that worker's last file in place: the
other workers' scrapes show it as it was, and the worker's own scrapes show it fresh (its
exposition is merged from memory, not read back), so ``/metrics`` keeps answering. Until
the files can be written again, a summed counter can step back between two scrapes
answered by different workers (each adds the other's stale count to its fresh one).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

ADDITIVE_GAUGES = frozenset({"greenbutton_requests_in_flight"})
"""Gauges whose per-worker values add up (the others report the largest worker value)."""
SMALLEST_GAUGES = frozenset({"greenbutton_drift_p_value"})
"""Gauges where the smallest worker value is the one to report: a drift p-value beside the
drift flag of the worker that raised it (the largest p-value would contradict that flag)."""

Key = tuple[str, tuple[tuple[str, str], ...]]


class SharedMetrics:
    """Publishes this worker's metrics to ``directory`` and renders the sum of all workers."""

    def __init__(self, directory: Path, render_own: Callable[[], bytes],
                 interval_s: float = 1.0) -> None:
        self.directory = directory
        self.render_own = render_own
        self.interval_s = interval_s
        self._path = directory / f"{os.getpid()}.prom"
        self._is_failing = False

    def publish(self, own: bytes | None = None) -> None:
        """Write this worker's exposition (``own`` if already rendered); call every interval.
        A failed write is logged (once until one succeeds) and retried next time."""
        try:
            _replace(self._path, own if own is not None else self.render_own())
        except OSError as error:
            if not self._is_failing:
                logger.warning("publishing this worker's metrics to %s failed (%s); the "
                               "other workers show its last published values until it "
                               "succeeds", self._path, error)
            self._is_failing = True
            return
        if self._is_failing:
            logger.info("publishing this worker's metrics to %s works again", self._path)
        self._is_failing = False

    def render(self) -> bytes:
        """Every worker's metrics merged into one exposition (this worker's fresh)."""
        own = self.render_own()
        self.publish(own)
        texts = [own.decode()]
        for path in sorted(self.directory.glob("*.prom")):
            if path == self._path:
                continue
            try:
                texts.append(path.read_text())
            except OSError:  # a worker replaced its file meanwhile
                continue
        return merge_expositions(texts).encode()


def retire(directory: Path, pid: int) -> None:
    """Drop the gauges from the file of worker ``pid``, which has exited (if it published)."""
    path = directory / f"{pid}.prom"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    _replace(path, merge_expositions([text], with_gauges=False).encode())


def _replace(path: Path, content: bytes) -> None:
    # write-then-rename: a worker merging the files meanwhile reads the old or the new one
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_bytes(content)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()  # a partial file would hold on to the full disk's blocks
        raise
    temporary.replace(path)


def merge_expositions(texts: list[str], *, with_gauges: bool = True) -> str:
    """Prometheus text expositions merged sample by sample (see the module docstring)."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help)
    samples: dict[str, dict[Key, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue  # creation times (parsed as gauges) do not add up
            if family.type == "gauge" and not with_gauges:
                continue
            families.setdefault(family.name, (family.type, family.documentation))
            merged = samples.setdefault(family.name, {})
            combine = _combination(family.type, family.name)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # creation times do not add up
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in merged:
                    merged[key] = combine(merged[key], sample.value)
                else:
                    merged[key] = sample.value
    lines = []
    for name, (kind, documentation) in families.items():
        escaped_help = documentation.replace("\\", "\\\\").replace("\n", "\\n")
        # as prometheus_client writes them: a counter's lines name its _total samples (else
        # a parser, Prometheus's too, takes those for another, untyped, metric)
        shown = f"{name}_total" if kind == "counter" else name
        lines += [f"# HELP {shown} {escaped_help}", f"# TYPE {shown} {kind}"]
        for (sample_name, labels), value in samples[name].items():
            rendered = floatToGoString(value)  # type: ignore[no-untyped-call]
            lines.append(f"{sample_name}{_labels(labels)} {rendered}")
    return "\n".join(lines) + "\n"


def _combination(kind: str, name: str) -> Callable[[float, float], float]:
    if kind != "gauge" or name in ADDITIVE_GAUGES:
        return operator.add
    return min if name in SMALLEST_GAUGES else max


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, escaped, strict=True)) + "}"
