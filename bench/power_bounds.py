"""Reference tests for one power target of the calibration benchmark (0.5 sd shift).

    .venv/bin/python bench/power_bounds.py [--splits 300] [--write docs/performance.md]

The "0.5 sd shift of an informative feature" scenario of ``monitoring_calibration.py``, on
the same data sets and splits, tested by tests that are given more than a monitor has:

* **knows the column**: Welch's t-test on the shifted column only, at alpha 0.01 (a monitor
  would have to be told which of its features will move);
* **t on every column**: Welch's t-test on each column, Bonferroni over the columns at alpha
  0.01 (the classic test of a location shift of near-normal columns, nothing else tested:
  no KS, no other detector; not a bound: on skewed columns KS can do better);
* **... and its share of the verdict**: the same, with alpha also split over the five
  detectors of a window without feedback, as the overall verdict splits it.

A monitor that must also answer "did anything else change" (KS, MMD, outliers, quality,
predictions) pays for that in alpha; the first row is what a test given the column finds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from calibration_data import DATA_SETS
from calibration_scenarios import INPUT_SCENARIOS, Context
from calibration_stats import percent, wilson
from drift_power import write_section
from scipy import stats

ALPHA = 0.01
WINDOW = 100
DETECTORS = 5
"""Detectors of a window without feedback: features, quality, mmd, predictions, outliers."""
SCENARIO = "0.5 sd shift, informative feature"
BEGIN, END = "<!-- power-bounds:begin -->", "<!-- power-bounds:end -->"
ROWS = ("knows the column", "t on every column",
        f"t on every column, alpha also split over {DETECTORS} detectors")


def p_value(window: pd.Series, reference: pd.Series) -> float:
    return float(stats.ttest_ind(window.dropna(), reference.dropna(), equal_var=False).pvalue)


def bounds(name: str, splits: int, seed: int) -> dict[str, list[bool]]:
    data, rng = DATA_SETS[name], np.random.default_rng(seed)
    found: dict[str, list[bool]] = {row: [] for row in ROWS}
    for _ in range(splits):
        split = data.draw(rng)
        context = Context.of(split, data.task, data.categorical, WINDOW)
        frame, _ = INPUT_SCENARIOS[SCENARIO](context, rng)
        reference = split.reference
        numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])]
        every = min(p_value(frame[c], reference[c]) for c in numeric) * len(numeric)
        found[ROWS[0]].append(p_value(frame[context.informative],
                                      reference[context.informative]) < ALPHA)
        found[ROWS[1]].append(every < ALPHA)
        found[ROWS[2]].append(every * DETECTORS < ALPHA)
    return found


def rate(flags: list[bool]) -> str:
    share = sum(flags) / len(flags)
    return percent((share, *wilson(share, len(flags)), len(flags)))


def render(figures: dict[str, dict[str, list[bool]]], splits: int) -> str:
    names = list(figures)
    lines = ["## Monitoring: reference tests for the 0.5 sd shift target (issue 26)", "",
             f"`.venv/bin/python bench/power_bounds.py --splits {splits}` — scenario "
             f"'{SCENARIO}', windows of {WINDOW}, one per split, alpha {ALPHA}; what a test "
             "told which column moved, and Welch's t-test on every column (Bonferroni), "
             "find (share of windows flagged, 95 % interval). Target of issue 26: ≥ 90 %.", "",
             "| test | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(rate(figures[n][row]) for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=300)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    figures = {name: bounds(name, args.splits, args.seed) for name in DATA_SETS}
    text = render(figures, args.splits)
    print(text)
    if args.write:
        write_section(args.write, text, BEGIN, END)


if __name__ == "__main__":
    main()
