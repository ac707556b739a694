"""95% intervals of cross-validated results that stay inside the possible range.

Every cross-validated number in mlsp (``train --folds``, ``compare``, the ablations, the
plots, ``benchmarks/bench_quality.py``) comes from this one module, so the same rule
holds everywhere.  The base is the corrected repeated k-fold t interval (Nadeau and
Bengio 2003, Eq. of their "corrected resampled t"; Bouckaert and Frank 2004): over
J = K x S fold values with sample variance s^2,

    mean +- t_{J-1, 0.975} * sqrt((1/J + n_test/n_train) * s^2)

where the ``n_test/n_train`` term (1/(K-1) for K folds) corrects for the folds sharing
training images; a plain t interval (1/J alone) is too narrow.  That interval is
symmetric and unbounded, so on few, scattered folds it left the range a quantity can
take (``SRCC 0.045 [-1.285, 1.374]``, RMSE below 0).  Each kind of quantity is
therefore put on a scale where it is unbounded, the interval computed there, and mapped
back:

- correlations (SRCC, PLCC): Fisher's z = arctanh(r) (|r| clipped to 1 - 1e-7 first),
  interval on z, back with tanh.  z is the scale on which a sample correlation is
  close to normal with a variance that does not depend on r (Fisher 1921), so a t
  interval there is the textbook one; tanh maps any z interval into (-1, 1).  The
  centre reported is tanh(mean z), the point the interval is built around (it differs
  from the mean of r by ~0.001 at the spread of real folds).
- error measures (RMSE, MAE, EMD and the other distances): the log scale; back with exp,
  so the centre is the geometric mean and the bounds are > 0.  Errors are ratio-scaled
  (fold-to-fold scatter grows with the level), and a clip at 0 would claim a perfect
  model is plausible, which fold values of 0.4-0.6 never support.
- accuracy (a proportion): the raw scale, clipped to [0, 1].  Fold accuracies of
  exactly 0 or 1 occur on small folds and would need an arbitrary continuity correction
  on the logit scale that then dominates the width; at real fold sizes the proportion is
  close to normal and the clip never binds.
- paired differences of correlations (a head minus a reference on the same folds): the
  per-fold difference of r, corrected t interval, clipped to [-2, 2].  Reported on the r
  scale because that is the unit of the table a paper prints (a z difference means a
  different r difference at every level of r); the two correlations share the fold's
  test images, so their difference is far less skewed than either (the bounds largely
  cancel) and the clip only binds on degenerate folds.  The same rule serves "is it
  distinguishable from the best" in the ablations (interval contains 0).

Everything here is numpy / scipy; no Keras.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["Interval", "corrected_t", "correlation_interval", "error_interval",
           "proportion_interval", "raw_interval", "difference_interval", "metric_interval",
           "paired_difference", "as_interval", "interval_text", "best_and_indistinguishable",
           "CORRELATIONS", "ERRORS", "PROPORTIONS", "R_CLIP", "LEVEL"]

LEVEL = 0.95
R_CLIP = 1.0 - 1e-7
CORRELATIONS = ("srcc", "plcc")
ERRORS = ("rmse", "mae", "emd", "ped", "cheb", "pkl")
PROPORTIONS = ("accuracy",)


@dataclass(frozen=True)
class Interval:
    """A cross-validated mean with its 95% interval, named (``low <= mean <= high``)."""

    mean: float
    low: float
    high: float
    n_folds: int
    method: str

    def as_dict(self) -> dict:
        return asdict(self)

    def contains(self, x: float) -> bool:
        return bool(self.low <= x <= self.high)

    def __str__(self) -> str:
        return interval_text(self)


def _finite(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)


def corrected_t(values, test_fraction: float, level: float = LEVEL):
    """``(mean, half width)`` of the corrected repeated k-fold t interval on the given
    scale; half width NaN for fewer than two values, mean NaN for none."""
    v = _finite(values)
    if v.size == 0:
        return math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * math.sqrt(
        (1.0 / v.size + float(test_fraction)) * v.var(ddof=1))
    return m, float(half)


def _make(values, test_fraction, level, to, back, method, lo=-math.inf, hi=math.inf):
    v = _finite(values)
    m, half = corrected_t(to(v), test_fraction, level)
    b = (lambda x: float(np.clip(back(x), lo, hi))) if math.isfinite(m) else float
    low, high = (b(m - half), b(m + half)) if math.isfinite(half) else (math.nan, math.nan)
    return Interval(b(m), low, high, int(v.size), method)


def correlation_interval(values, test_fraction: float, level: float = LEVEL) -> Interval:
    """Fisher z of each fold's r, corrected t interval on z, back with tanh."""
    return _make(values, test_fraction, level,
                 lambda r: np.arctanh(np.clip(r, -R_CLIP, R_CLIP)), np.tanh,
                 "fisher_z corrected_t")


def error_interval(values, test_fraction: float, level: float = LEVEL) -> Interval:
    """log of each fold's (positive) error, corrected t interval, back with exp."""
    return _make(values, test_fraction, level,
                 lambda e: np.log(np.clip(e, 1e-300, None)), np.exp, "log corrected_t")


def proportion_interval(values, test_fraction: float, level: float = LEVEL) -> Interval:
    """Corrected t interval of a proportion, clipped to [0, 1]."""
    return _make(values, test_fraction, level, np.asarray, np.asarray,
                 "corrected_t clipped to [0, 1]", 0.0, 1.0)


def raw_interval(values, test_fraction: float, level: float = LEVEL) -> Interval:
    """The plain corrected t interval (a quantity with no bounds)."""
    return _make(values, test_fraction, level, np.asarray, np.asarray, "corrected_t")


def difference_interval(values, test_fraction: float, level: float = LEVEL) -> Interval:
    """Paired differences of correlations on the r scale, clipped to [-2, 2]."""
    return _make(values, test_fraction, level, np.asarray, np.asarray,
                 "paired r difference, corrected_t clipped to [-2, 2]", -2.0, 2.0)


def metric_interval(metric: str, values, test_fraction: float,
                    level: float = LEVEL) -> Interval:
    """The interval suited to ``metric`` (srcc/plcc, rmse/mae/emd/..., accuracy, other)."""
    fn = (correlation_interval if metric in CORRELATIONS else error_interval
          if metric in ERRORS else proportion_interval if metric in PROPORTIONS
          else raw_interval)
    return fn(values, test_fraction, level)


def paired_difference(a, b, metric: str, test_fraction: float,
                      level: float = LEVEL) -> Interval:
    """``a - b`` over the same folds (sequences in the same fold order, or dicts keyed by
    fold); correlations: :func:`difference_interval`; other metrics: the plain corrected
    t (a difference of errors or accuracies may take either sign)."""
    if isinstance(a, dict):
        keys = [k for k in a if k in b and a[k] is not None and b[k] is not None]
        a, b = [a[k] for k in keys], [b[k] for k in keys]
    if len(a) != len(b):
        raise ValueError(f"paired difference of {metric}: {len(a)} and {len(b)} folds")
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    fn = difference_interval if metric in CORRELATIONS else raw_interval
    return fn(d, test_fraction, level)


def as_interval(x) -> Interval | None:
    """An :class:`Interval` from itself, a dict with mean/low/high, or an old
    ``[mean, low, high]`` triplet (files written before named fields); else None."""
    if x is None or isinstance(x, Interval):
        return x
    if isinstance(x, dict) and "mean" in x:
        nan = math.nan

        def num(k):
            return nan if x.get(k) is None else float(x[k])
        return Interval(num("mean"), num("low"), num("high"), int(x.get("n_folds") or 0),
                        str(x.get("method", "")))
    if isinstance(x, (list, tuple)) and len(x) == 3:
        m, lo, hi = (math.nan if v is None else float(v) for v in x)
        return Interval(m, lo, hi, 0, "corrected_t (old triplet)")
    return None


def interval_text(x, digits: int = 3) -> str:
    """``0.752 [0.731, 0.773]``; ``-`` when missing; the mean alone without bounds."""
    i = as_interval(x)
    if i is None or not math.isfinite(i.mean):
        return "-"
    if not math.isfinite(i.low):
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


def best_and_indistinguishable(fold_values: dict, metric: str, test_fraction: float,
                               higher_is_better: bool = True) -> dict:
    """Which setting is best, and which others cannot be told apart from it.

    ``fold_values``: setting -> {fold key: value} (the same folds for all settings).  The
    best has the highest centre (:func:`metric_interval`); a setting is indistinguishable
    when its paired difference to the best has an interval containing 0.  Returns
    ``{"best", "indistinguishable" (list, best excluded), "differences" (setting ->
    Interval of setting - best)}``; best None when no setting has a value.
    """
    centres = {k: metric_interval(metric, list(v.values()), test_fraction).mean
               for k, v in fold_values.items()}
    centres = {k: c for k, c in centres.items() if math.isfinite(c)}
    if not centres:
        return {"best": None, "indistinguishable": [], "differences": {}}
    sign = 1 if higher_is_better else -1
    best = max(centres, key=lambda k: sign * centres[k])
    diffs, same = {}, []
    for k in fold_values:
        if k == best or k not in centres:
            continue
        d = paired_difference(fold_values[k], fold_values[best], metric, test_fraction)
        diffs[k] = d
        if not (math.isfinite(d.low) and (d.high < 0 or d.low > 0)):
            same.append(k)
    return {"best": best, "indistinguishable": same, "differences": diffs}
