"""Distances between rating distributions (Sun and Zhou, MTP-NasNet, sec. 4, Eq. 5-9).

All functions take ``y`` (truth) and ``y_hat`` (prediction) of shape (K,) or (N, K)
and return a float or an (N,) array (vectorised numpy, float64):

- :func:`ped`       Eq. 5  sum_i (y_i - y_hat_i)^2 (the paper's formula: the *squared*
                    Euclidean distance; ``ped(..., root=True)`` gives the root);
- :func:`pkl`       Eq. 6  symmetric KL: 0.5 [sum y log(y / y_hat) + sum y_hat log(y_hat / y)],
                    both distributions clipped to ``eps`` (1e-10) and renormalised first,
                    so empty bins give a finite value;
- :func:`chebyshev` Eq. 7  max_i |y_i - y_hat_i|;
- :func:`cosine`    Eq. 8  y . y_hat / (|y| |y_hat|) (a similarity: higher is better);
- :func:`emd`       Eq. 9  ((1/N) sum_k |CDF_y(k) - CDF_y_hat(k)|^r)^(1/r), r = 2
                    (the same as M+MNet Eq. 3, :func:`mlsp.evaluation.metrics.emd_numpy`).

:func:`distribution_metrics` averages all five over images (keys ``ped``, ``cheb``,
``cos``, ``pkl``, ``emd``), the numbers of MTP-NasNet Table 1 / Table 3.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ped", "pkl", "chebyshev", "cosine", "emd", "distribution_metrics", "KL_EPS"]

KL_EPS = 1e-10


def _pair(y, y_hat):
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape or y.ndim not in (1, 2):
        raise ValueError(f"distributions must both be (K,) or (N, K); got {y.shape}, {y_hat.shape}")
    return y, y_hat


def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def ped(y, y_hat, root: bool = False):
    """MTP-NasNet Eq. 5: sum_i (y_i - y_hat_i)^2 (``root=True``: its square root)."""
    y, y_hat = _pair(y, y_hat)
    d = np.sum((y - y_hat) ** 2, axis=-1)
    return _out(np.sqrt(d) if root else d)


def pkl(y, y_hat, eps: float = KL_EPS):
    """MTP-NasNet Eq. 6: symmetric Kullback-Leibler divergence (after Wang et al.)."""
    y, y_hat = _pair(y, y_hat)
    a = np.clip(y, eps, None)
    b = np.clip(y_hat, eps, None)
    a = a / a.sum(axis=-1, keepdims=True)
    b = b / b.sum(axis=-1, keepdims=True)
    return _out(0.5 * (np.sum(a * np.log(a / b), axis=-1) + np.sum(b * np.log(b / a), axis=-1)))


def chebyshev(y, y_hat):
    """MTP-NasNet Eq. 7: max_i |y_i - y_hat_i|."""
    y, y_hat = _pair(y, y_hat)
    return _out(np.max(np.abs(y - y_hat), axis=-1))


def cosine(y, y_hat):
    """MTP-NasNet Eq. 8: cos(theta) = y . y_hat / (|y| |y_hat|) (0 for a zero vector)."""
    y, y_hat = _pair(y, y_hat)
    den = np.linalg.norm(y, axis=-1) * np.linalg.norm(y_hat, axis=-1)
    num = np.sum(y * y_hat, axis=-1)
    return _out(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))


def emd(y, y_hat, r: float = 2):
    """MTP-NasNet Eq. 9 (= M+MNet Eq. 3): normalised EMD of the CDFs, exponent r."""
    y, y_hat = _pair(y, y_hat)
    d = np.abs(np.cumsum(y, axis=-1) - np.cumsum(y_hat, axis=-1))
    return _out(np.mean(d ** r, axis=-1) ** (1.0 / r))


def distribution_metrics(y, y_hat) -> dict:
    """Means over images of PED, Chebyshev, cosine, PKL and EMD (r = 2), as floats."""
    y, y_hat = _pair(np.atleast_2d(y), np.atleast_2d(y_hat))
    return {"ped": float(np.mean(ped(y, y_hat))), "cheb": float(np.mean(chebyshev(y, y_hat))),
            "cos": float(np.mean(cosine(y, y_hat))), "pkl": float(np.mean(pkl(y, y_hat))),
            "emd": float(np.mean(emd(y, y_hat)))}
