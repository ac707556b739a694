"""Evaluation metrics for aesthetics prediction.

MLSP (Hosu et al. 2019, sec. 4): SRCC, PLCC and binary accuracy (AVA: MOS > 5
is "high quality").  M+MNet (He et al. 2025, sec. 4.1): the SRCC / accuracy
ratio (accuracy as a fraction) and the EMD of Eq. 3 between distributions.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error


def emd_numpy(p, q, r: float = 2):
    """EMD of M+MNet Eq. 3: ((1/K) sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r).

    ``p``, ``q``: (K,) -> a float, or (N, K) -> an (N,) array, one EMD a row.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"emd_numpy: shapes {p.shape} and {q.shape} differ")
    d = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))
    out = np.mean(d ** r, axis=-1) ** (1.0 / r)
    return float(out) if out.ndim == 0 else out


def distribution_mean(p, bin_scores) -> tuple[np.ndarray, np.ndarray]:
    """(the mean score of each distribution, the distributions normalised to sum 1):
    ``sum_k p_k s_k`` over the bin scores ``s`` (NIMA's mean score; M+MNet sec. 4.1).
    ``p``: (N, K) softmax outputs or vote counts."""
    p = np.asarray(p, np.float64)
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    return p @ np.asarray(bin_scores, np.float64), p


def srcc(a, b) -> float:
    """Spearman's rank correlation of two score vectors; NaN when either is constant."""
    return _corr(spearmanr, np.asarray(a, np.float64).reshape(-1),
                 np.asarray(b, np.float64).reshape(-1))


def _corr(fn, a, b) -> float:
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # undefined for constant input (scipy would warn)
    return float(fn(a, b)[0])


def evaluate_predictions(mos_true, mos_pred, threshold: float = 5.0, dist_true=None,
                         dist_pred=None) -> dict:
    """All metrics as plain Python floats (``n`` an int), JSON-serialisable.

    Keys: n, srcc (Spearman), plcc (Pearson), accuracy (MOS > ``threshold``
    is the positive class, for truth and prediction alike), srcc_acc_ratio
    (srcc / accuracy), mae, rmse, and emd (mean EMD, r=2) when both
    distributions are given, then also ped, cheb, cos, pkl (MTP-NasNet Eq. 5-8,
    :mod:`mlsp.evaluation.distribution`).  Undefined values (constant input) are NaN.
    """
    t = np.asarray(mos_true, dtype=np.float64).reshape(-1)
    p = np.asarray(mos_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"evaluate_predictions: {t.size} true and {p.size} predicted scores")
    if t.size == 0:
        raise ValueError("evaluate_predictions: no predictions")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("evaluate_predictions: non-finite scores")
    srcc = _corr(spearmanr, t, p)
    plcc = _corr(pearsonr, t, p)
    acc = float(accuracy_score(t > threshold, p > threshold))
    out = {
        "n": int(t.size),
        "srcc": srcc,
        "plcc": plcc,
        "accuracy": acc,
        "srcc_acc_ratio": srcc / acc if acc > 0 else float("nan"),
        "mae": float(mean_absolute_error(t, p)),
        "rmse": float(math.sqrt(mean_squared_error(t, p))),
    }
    if dist_true is not None and dist_pred is not None:
        dt = np.asarray(dist_true, dtype=np.float64)
        dp = np.asarray(dist_pred, dtype=np.float64)
        if dt.ndim != 2 or dt.shape != dp.shape or dt.shape[0] != t.size:
            raise ValueError(f"evaluate_predictions: distributions {dt.shape} / {dp.shape} "
                             f"for {t.size} images")
        out["emd"] = float(np.mean(emd_numpy(dt, dp, 2)))
        from .distribution import distribution_metrics  # MTP-NasNet Eq. 5-9

        out.update({k: v for k, v in distribution_metrics(dt, dp).items() if k != "emd"})
    return out
