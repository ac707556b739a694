"""The rule benchmarks/make_models.py ships a head by: Single-3FC only when it is clearly
better fold by fold AND small enough for the package; else ridge."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_models  # noqa: E402


def _rows(values):
    return {"rows": [{"seed": 0, "fold": j, "srcc": v} for j, v in enumerate(values)]}


RIDGE = [0.70, 0.72, 0.68, 0.71, 0.69]


def test_clearly_better_and_small_ships_single_3fc():
    better = [v + d for v, d in zip(RIDGE, (0.03, 0.04, 0.035, 0.03, 0.045))]
    winner, diff, _ = make_models.choose(_rows(RIDGE), _rows(better), 5, 10_000_000, 25)
    d = np.subtract(better, RIDGE)
    half = stats.t.ppf(0.975, 4) * math.sqrt((1 / 5 + 1 / 4) * d.var(ddof=1))  # by hand
    assert np.allclose(diff, [d.mean(), d.mean() - half, d.mean() + half])
    assert winner == "single_3fc" and diff[1] > 0


def test_too_large_or_not_clearly_better_ships_ridge():
    better = [v + 0.03 + 0.005 * j for j, v in enumerate(RIDGE)]
    winner, _, why = make_models.choose(_rows(RIDGE), _rows(better), 5, 48_000_000, 25)
    assert winner == "ridge" and "48 MB" in why
    mixed = [v + d for v, d in zip(RIDGE, (0.05, -0.04, 0.03, -0.02, 0.01))]
    winner, diff, why = make_models.choose(_rows(RIDGE), _rows(mixed), 5, 1, 25)
    assert winner == "ridge" and diff[1] < 0 < diff[2] and "not clearly better" in why
    winner, diff, why = make_models.choose(_rows(RIDGE), None, 5, 1, 25)
    assert winner == "ridge" and math.isnan(diff[0]) and "not cross-validated" in why
