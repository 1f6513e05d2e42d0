"""Drift-detection power on the digits scenario (issue 4's quality bar); run by ``make bench``.

    .venv/bin/python bench/drift_power.py [--trials 100] [--write docs/performance.md]

Reference = the training split, monitors fitted exactly as ``log_model`` fits them; clean
windows = random test rows; drifted windows = (a) only digits 0-4, (b) 10 % colour-inverted,
(c) 20 % rotated 15 degrees, (d) all rotated 5 degrees, (e) brightness x 0.9, each image
re-quantised to the 0-16 integer scale. One alpha (0.01) for everything, no per-scenario tuning.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from calibration_stats import wilson
from scipy import ndimage, stats
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from greenbutton.monitoring.drift import DriftResult, Window
from greenbutton.monitoring.monitors import fit

ALPHA = 0.01
SECTION = "## Monitoring: drift power (digits, issues 4 and 26)"


def quantise(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images), 0, 16)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    squares = images.reshape(-1, 8, 8)
    turned = ndimage.rotate(squares, degrees, axes=(1, 2), reshape=False, order=1, mode="constant")
    return quantise(turned.reshape(-1, 64))


def part(fraction: float,
         transform: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = images.copy()
        chosen = rng.choice(len(out), int(round(fraction * len(out))), replace=False)
        out[chosen] = transform(out[chosen])
        return out
    return apply


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "clean": lambda x, rng: x,
    "(a) digits 0-4 only": lambda x, rng: x,
    "(b) 10% inverted": part(0.1, lambda x: quantise(16 - x)),
    "(c) 20% rotated 15°": part(0.2, lambda x: rotate(x, 15)),
    "(d) all rotated 5°": lambda x, rng: rotate(x, 5),
    "(e) brightness x0.9": lambda x, rng: quantise(x * 0.9),
}
DETECTORS = ("features", "quality", "mmd", "predictions", "outlier_scores",
             "ks_bonferroni_only")


def ks_bonferroni(reference: np.ndarray, window: np.ndarray) -> DriftResult:
    """Issue 4's reference method: a KS test per pixel, Bonferroni over the pixels."""
    p_values = np.atleast_1d(stats.ks_2samp(reference, window, axis=0).pvalue)
    p_value = min(1.0, float(np.nanmin(p_values)) * reference.shape[1])
    return DriftResult("ks_bonferroni_only", 0.0, p_value, p_value < ALPHA)


def run(trials: int, window: int) -> tuple[list[str], dict[str, float]]:
    X, y = load_digits(return_X_y=True)
    columns = [f"pixel_{i}" for i in range(64)]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(X_train, y_train)
    started = time.perf_counter()
    monitors = fit(pd.DataFrame(X_train, columns=columns), model.predict(X_train))
    fit_s = time.perf_counter() - started
    rng = np.random.default_rng(2024)
    rows, figures = [], {"fit_s": fit_s}
    test_s = 0.0
    for kind, transform in KINDS.items():
        pool = X_test[y_test <= 4] if kind.startswith("(a)") else X_test
        hits = dict.fromkeys((*DETECTORS, "overall"), 0)
        for _ in range(trials):
            images = transform(pool[rng.choice(len(pool), window, replace=False)], rng)
            frame = pd.DataFrame(images, columns=columns)
            started = time.perf_counter()
            scores = monitors.outlier_scores(frame)
            result = monitors.test(Window(frame, model.predict(images), scores), ALPHA)
            test_s += time.perf_counter() - started
            result["ks_bonferroni_only"] = ks_bonferroni(X_train, images)
            for name in hits:
                hits[name] += result[name].is_drift
        rates = {name: 100.0 * count / trials for name, count in hits.items()}
        figures.update({f"{kind}|{name}": rate for name, rate in rates.items()})
        rows.append(f"| {kind} | " + " | ".join(f"{rates[n]:.0f} %" for n in
                                                 (*DETECTORS, "overall")) + " |")
    figures["test_ms"] = 1000 * test_s / (trials * len(KINDS))
    figures.update(outlier_figures(monitors, X_test, columns))
    return rows, figures


def outlier_figures(monitors: object, X_test: np.ndarray, columns: list[str]) -> dict[str, float]:
    scores = monitors.outlier_scores(pd.DataFrame(X_test, columns=columns))  # type: ignore[attr-defined]
    threshold = monitors.outliers.threshold  # type: ignore[attr-defined]
    rng = np.random.default_rng(7)
    odd = np.vstack([np.full(64, 16.0), rng.integers(0, 17, 64).astype(float)])
    odd_scores = monitors.outlier_scores(pd.DataFrame(odd, columns=columns))  # type: ignore[attr-defined]
    flagged = float(np.mean(scores > threshold))
    low, high = wilson(flagged, len(scores))
    return {"outlier_fpr": 100.0 * flagged, "outlier_fpr_low": 100.0 * low,
            "outlier_fpr_high": 100.0 * high, "test_rows": float(len(scores)),
            "white_flagged": float(odd_scores[0] > threshold),
            "noise_flagged": float(odd_scores[1] > threshold)}


def render(rows: list[str], figures: dict[str, float], trials: int, window: int) -> str:
    header = ("| window | KS+Mann-Whitney / chi² per feature (Bonferroni) | data quality "
              "(missing, type, range, unseen; Fisher, Tarone) | MMD (RBF, permutation) | "
              "prediction drift "
              "(chi²) | outlier scores (Mann-Whitney + tail counts) | KS+Bonferroni alone, "
              "alpha 0.01 (issue 4's reference) | **combined** |")
    lines = [
        SECTION, "",
        f"`.venv/bin/python bench/drift_power.py --trials {trials} --window {window}` — share of "
        f"windows flagged over {trials} trials per row, window = {window} requests, one alpha "
        f"(0.01, Bonferroni-split across the five detectors for the combined verdict; no "
        "feedback). 'clean' is the false-alarm rate; the KS-only column is issue 4's "
        "reference method.",
        "", header, "|" + "---|" * 8, *rows, "",
        f"- outlier false-positive rate on clean test rows: {figures['outlier_fpr']:.1f} % "
        f"({figures['outlier_fpr_low']:.1f}–{figures['outlier_fpr_high']:.1f}, 95 % interval "
        f"over {figures['test_rows']:.0f} rows; target 1 %, threshold from cross-fitted "
        "scores of all reference rows)",
        f"- all-white image flagged: {bool(figures['white_flagged'])}; "
        f"random-noise image flagged: {bool(figures['noise_flagged'])}",
        f"- fitting all monitors on 1 347 rows: {figures['fit_s']:.1f} s; testing one window "
        f"(all detectors, off the request path): {figures['test_ms']:.0f} ms", "",
    ]
    return "\n".join(lines)


BEGIN, END = "<!-- drift-power:begin -->", "<!-- drift-power:end -->"


def write_section(path: Path, text: str, begin: str = BEGIN, end: str = END,
                  before: str | None = None) -> None:
    """Replace a benchmark's block of ``path`` (between its markers, by default this one's),
    keep the rest: notes written by hand after the block stay. A first block goes before the
    line ``before`` (a heading), if given and there, else at the end."""
    old = path.read_text() if path.exists() else "# Performance\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        path.write_text(old[:old.index(begin)] + block + old[old.index(end) + len(end):])
    elif before is not None and f"\n{before}" in old:
        at = old.index(f"\n{before}") + 1
        path.write_text(old[:at] + block + "\n\n" + old[at:])
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + block + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    rows, figures = run(args.trials, args.window)
    text = render(rows, figures, args.trials, args.window)
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
