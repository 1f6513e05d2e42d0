"""Calibration and power of the monitors on data they were not tuned on; run by ``make bench``.

    .venv/bin/python bench/monitoring_calibration.py [--splits 100] [--data-sets a,b]
        [--spread 6] [--write docs/performance.md]

For each data set (see ``calibration_data.py``; digits is ``drift_power.py``'s) and each of
its independent splits (``--splits``; the bundled tables get seven times as many more, with clean
windows only): a model is trained on the reference rows, the monitors are fitted as
``log_model`` fits them (reference rows with their targets, the model's predictions,
held-out rows with labels and class probabilities),
and windows of 100 requests are tested at alpha 0.01: clean windows with their truths as
feedback (the false-alarm rate of every detector and of the overall verdict) and one window
per drift scenario (the power). Label noise gets the last 50, 100 or 200 labelled rows (the
bundled tables' pools hold fewer: all of them). Intervals are 95 % Wilson intervals; clean
windows of one split share a reference, so theirs use the effective count (the design
effect of that sharing, estimated from the data). ``--spread`` also tests MMD against a few
fixed references with many fresh windows each: the false alarms one deployment sees.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from calibration_data import DATA_SETS, DataSet, Split
from calibration_scenarios import INPUT_SCENARIOS, Context, clean, label_noise, relabelled
from calibration_stats import Tally, percent
from drift_power import write_section
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from greenbutton.monitoring.drift import DriftResult, Window
from greenbutton.monitoring.mmd import MMDDetector
from greenbutton.monitoring.monitors import HeldOut, Monitors, fit
from greenbutton.monitoring.performance import row_outcomes

ALPHA = 0.01
WINDOW = 100
FEEDBACK_ROWS = (50, 100, 200)
SECTION = "## Monitoring: calibration and power on data not tuned on (issue 26)"
BEGIN, END = "<!-- monitoring-calibration:begin -->", "<!-- monitoring-calibration:end -->"


def train(split: Split, task: str) -> Pipeline:
    """A plain model: imputed, scaled numbers and one-hot strings into a linear model."""
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         make_column_selector(dtype_include="number")),
        ("strings", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore")),
         make_column_selector(dtype_exclude="number"))])
    head = LogisticRegression(max_iter=2000) if task == "classification" else Ridge(1.0)
    return make_pipeline(prepare, head).fit(split.reference, split.reference_y)


@dataclass
class Fitted:
    """One split with its model and monitors."""

    split: Split
    model: Pipeline
    monitors: Monitors
    context: Context
    accuracy: float | None


def prepare(data: DataSet, rng: np.random.Generator) -> Fitted:
    split = data.draw(rng)
    model = train(split, data.task)
    held_predictions = model.predict(split.held_out)
    probabilities = (model.predict_proba(split.held_out) if data.task == "classification"
                     else None)
    monitors = fit(split.reference, model.predict(split.reference),
                   held_out=HeldOut(split.held_out_y, held_predictions, probabilities),
                   reference_truths=split.reference_y, categorical=list(data.categorical))
    accuracy = (float(np.mean(held_predictions == split.held_out_y))
                if data.task == "classification" else None)
    return Fitted(split, model, monitors,
                  Context.of(split, data.task, data.categorical, WINDOW), accuracy)


def test(fitted: Fitted, frame: pd.DataFrame, truths: np.ndarray | None,
         feedback_frame: pd.DataFrame | None = None) -> dict[str, DriftResult]:
    """All monitors on one window; ``truths`` (of ``feedback_frame``'s rows, default the
    window's) as feedback."""
    return fitted.monitors.test(window_of(fitted, frame, truths, feedback_frame), ALPHA)


def window_of(fitted: Fitted, frame: pd.DataFrame, truths: np.ndarray | None,
              feedback_frame: pd.DataFrame | None = None) -> Window:
    """The window the serving process would test: inputs, outputs, outlier scores, class
    probabilities and, with ``truths``, the feedback's truths and per-row outcomes."""
    predictions = fitted.model.predict(frame)
    scores = fitted.monitors.outlier_scores(frame)
    probabilities = (fitted.model.predict_proba(frame) if fitted.accuracy is not None
                     else np.empty(0))
    if truths is None:
        return Window(frame, predictions, scores, probabilities=probabilities)
    labelled = frame if feedback_frame is None else feedback_frame
    _, outcomes = row_outcomes(fitted.model.predict(labelled).tolist(), truths.tolist())
    return Window(frame, predictions, scores, truths=truths, outcomes=np.asarray(outcomes),
                  probabilities=probabilities)


def estimate_error(fitted: Fitted, frame: pd.DataFrame, truths: np.ndarray
                   ) -> tuple[float, bool] | None:
    """Estimated minus actual accuracy of a window, and whether the interval covers it."""
    if fitted.monitors.confidence is None:
        return None
    actual = float(np.mean(fitted.model.predict(frame) == truths))
    found = fitted.monitors.confidence.estimate(fitted.model.predict_proba(frame))
    if found is None:
        return None
    return found["accuracy"] - actual, found["low"] <= actual <= found["high"]


def run(data: DataSet, splits: int, seed: int) -> dict[str, Any]:
    """Clean windows on ``splits`` × ``data.clean_splits`` splits, scenarios on the first
    ``splits`` of them."""
    rng = np.random.default_rng(seed)
    tally, row_flags = Tally(), Tally()
    estimates: dict[str, list[tuple[float, bool] | None]] = defaultdict(list)
    started = time.perf_counter()
    for index in range(splits * data.clean_splits):
        fitted = prepare(data, rng)
        threshold = fitted.monitors.outliers.threshold if fitted.monitors.outliers else np.inf
        windows = [clean(fitted.context, rng) for _ in range(data.clean_per_split)]
        results = [test(fitted, frame, truths) for frame, truths in windows]
        for name in {n for r in results for n in r}:
            tally.add(f"clean|{name}", [r[name].is_drift for r in results if name in r])
        for frame, truths in windows[:1]:
            estimates["clean"].append(estimate_error(fitted, frame, truths))
        row_flags.add("rows", [bool(s > threshold) for frame, _ in windows
                               for s in fitted.monitors.outlier_scores(frame)])
        if index >= splits:
            continue
        for scenario, draw in INPUT_SCENARIOS.items():
            if scenario.startswith("unseen") and fitted.context.categorical is None:
                continue
            frame, truths = draw(fitted.context, rng)
            result = test(fitted, frame, truths)
            for name, value in result.items():
                tally.add(f"{scenario}|{name}", [value.is_drift])
            if not scenario.startswith(("unseen", "informative feature all")):
                estimates[scenario].append(estimate_error(fitted, frame, truths))
        feedback(fitted, rng, tally)
    return {"tally": tally, "rows": row_flags, "estimates": estimates, "splits": splits,
            "clean_splits": splits * data.clean_splits, "seconds": time.perf_counter() - started}


def feedback(fitted: Fitted, rng: np.random.Generator, tally: Tally) -> None:
    """Feedback scenarios: clean inputs, reported truths noisy or relabelled."""
    context = fitted.context
    for wanted in FEEDBACK_ROWS:
        rows = min(wanted, len(context.split.pool))  # the bundled tables' pools are small
        labelled = context.split.pool.sample(rows, random_state=int(rng.integers(2**31)))
        truths = context.split.pool_y[labelled.index.to_numpy()]
        frame, _ = clean(context, rng)
        noisy = label_noise(truths, fitted.accuracy or 0.0, context, rng)
        result = test(fitted, frame, noisy, labelled.reset_index(drop=True))
        for name, value in result.items():
            tally.add(f"label noise, {rows} rows|{name}", [value.is_drift])
    if context.task == "classification":
        frame, truths = clean(context, rng)
        result = test(fitted, frame, relabelled(truths, context))
        for name, value in result.items():
            tally.add(f"relabelled class|{name}", [value.is_drift])


DETECTOR_ORDER = ("features", "quality", "mmd", "predictions", "outlier_scores", "labels",
                  "performance", "overall")


def render(figures: dict[str, dict[str, Any]], splits: int) -> str:
    names = sorted({k.split("|")[1] for f in figures.values() for k in f["tally"].hits},
                   key=lambda n: DETECTOR_ORDER.index(n) if n in DETECTOR_ORDER else 99)
    lines = [SECTION, "",
             f"`.venv/bin/python bench/monitoring_calibration.py --splits {splits}` — per data "
             "set, independent splits (a model and monitors fitted on each reference, as "
             "`log_model` fits them with held-out rows), clean windows (false alarms, with "
             "their feedback) and one window per drift scenario on each, windows of "
             f"{WINDOW} requests, alpha {ALPHA}. Figures: share of windows flagged, 95 % "
             "interval in brackets.", "", *render_summary(figures), ""]
    for name, found in figures.items():
        tally: Tally = found["tally"]
        data = DATA_SETS[name]
        lines += [f"### {name}", "", f"{data.description}; clean windows: "
                  f"{data.clean_per_split} on each of {found['clean_splits']} splits; "
                  f"scenarios: one window on each of {found['splits']}.", "",
                  "| window | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for scenario in scenarios_of(tally):
            cells = [percent(tally.rate(f"{scenario}|{n}")) for n in names]
            lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
        rows = found["rows"].rate("rows")
        lines += ["", f"Rows flagged as outliers in clean windows: {percent(rows)} "
                      f"(target 1 %); {found['seconds']:.0f} s.", ""]
        lines += render_estimates(found["estimates"])
    return "\n".join(lines)


def scenarios_of(tally: Tally) -> list[str]:
    """The windows tested, in the order of the tables."""
    labelled = sorted({k.split("|")[0] for k in tally.hits if k.startswith("label")},
                      key=lambda k: int(k.split()[2]))
    wanted = ["clean", *INPUT_SCENARIOS, *labelled, "relabelled class"]
    return [s for s in wanted if any(k.startswith(f"{s}|") for k in tally.hits)]


def render_summary(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The overall verdict: one row per data set, one column per window."""
    tallies: dict[str, Tally] = {name: found["tally"] for name, found in figures.items()}
    columns = ["clean", *INPUT_SCENARIOS, "label noise", "relabelled class"]
    titles = {"clean": "false alarms (clean)",
              "label noise": "label noise, 200 labelled rows (fewer: all the pool)"}
    lines = ["| data set | " + " | ".join(titles.get(c, c) for c in columns) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for name, tally in tallies.items():
        cells = []
        for column in columns:
            found = [s for s in scenarios_of(tally) if s.startswith(column)]
            key = found[-1] if found else None  # label noise: the most feedback rows
            cells.append("n/a" if key is None else percent(tally.rate(f"{key}|overall")))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pooled = Tally()
    for tally in tallies.values():
        for group in tally.hits.get("clean|overall", []):
            pooled.add("clean", group)
    lines.append("| all, pooled | " + percent(pooled.rate("clean")) + " |"
                 + " – |" * (len(columns) - 1))
    return lines


def spread(data: DataSet, references: int, windows: int, seed: int) -> list[float]:
    """Per reference: the share of its clean windows whose MMD p-value is at most 0.05 (one
    reference, many fresh windows: what a deployment sees, not an average over references)."""
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(references):
        split = data.draw(rng)
        detector = MMDDetector.fit(split.reference)
        flagged = [detector.test(Window(split.pool.sample(
            WINDOW, random_state=int(rng.integers(2**31))).reset_index(drop=True),
            np.empty(0)), 0.05).is_drift for _ in range(windows)]
        shares.append(float(np.mean(flagged)))
    return shares


def render_spread(name: str, shares: list[float], windows: int) -> list[str]:
    noise = 1.96 * math.sqrt(0.05 * 0.95 / windows)
    return [f"MMD against one reference ({name}, {len(shares)} references, {windows} fresh "
            f"clean windows each): share of p ≤ 0.05 per reference "
            f"{', '.join(f'{100 * s:.1f}' for s in sorted(shares))} % (nominal 5 %; "
            f"sampling alone spreads a reference's share by ±{100 * noise:.1f} points).", ""]


def render_estimates(estimates: dict[str, list[tuple[float, bool] | None]]) -> list[str]:
    """Accuracy estimated without labels against the window's actual accuracy."""
    known = {k: [e for e in v if e is not None] for k, v in estimates.items()}
    known = {k: v for k, v in known.items() if v}
    if not known:
        return []
    lines = ["Accuracy estimated without labels (from the model's calibrated confidence) "
             "against the window's actual accuracy:", "",
             "| window | mean error | mean absolute error | 95 % interval covers |",
             "|---|---|---|---|"]
    for scenario, found in known.items():
        errors = np.array([e for e, _ in found])
        covered = float(np.mean([c for _, c in found]))
        lines.append(f"| {scenario} | {100 * errors.mean():+.1f} pts | "
                     f"{100 * np.abs(errors).mean():.1f} pts | {100 * covered:.0f} % |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=100,
                        help="splits per data set with every scenario (bundled tables get "
                             "seven times as many more with clean windows only)")
    parser.add_argument("--data-sets", default=",".join(DATA_SETS))
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--spread", type=int, default=6,
                        help="references of the one-reference MMD experiment (0: none)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    figures = {name: run(DATA_SETS[name], args.splits, args.seed)
               for name in args.data_sets.split(",")}
    text = render(figures, args.splits)
    if args.spread:
        text += "\n" + "\n".join(render_spread("mixed25", spread(
            DATA_SETS["mixed25"], args.spread, 300, args.seed), 300))
    print(text)
    if args.write:
        write_section(args.write, text, BEGIN, END)


if __name__ == "__main__":
    main()
