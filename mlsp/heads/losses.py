"""Distribution losses (backend-agnostic, ``keras.ops`` only)."""
from __future__ import annotations

from keras import ops

#: Added inside the r-th root so the gradient stays finite when prediction == target
#: (d sqrt(x)/dx is infinite at 0); shifts the loss by at most EPS**(1/r) (1e-6 for r=2).
EPS = 1e-12


def emd_loss(r: float = 2):
    """Earth mover's distance loss between score distributions (B, K).

    M+MNet Eq. 3 (after Talebi & Milanfar, NIMA):
    EMD(p, p_hat) = ((1/K) sum_k |CDF_p(k) - CDF_p_hat(k)|^r)^(1/r),
    CDF(k) = sum_{i<=k} p_i; returned as the mean over the batch.
    """
    r = float(r)

    def emd(y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        diff = ops.abs(ops.cumsum(y_true, axis=-1) - ops.cumsum(y_pred, axis=-1))
        per_image = ops.power(ops.mean(ops.power(diff, r), axis=-1) + EPS, 1.0 / r)
        return ops.mean(per_image)

    emd.__name__ = f"emd_r{r:g}"
    return emd


#: Re-EMD constants of M+MNet (He et al. 2025, sec. 4.2): alpha = 10, beta = 0.1.
RE_EMD_ALPHA, RE_EMD_BETA = 10.0, 0.1


def re_emd_weights(p, alpha: float = RE_EMD_ALPHA, beta: float = RE_EMD_BETA):
    """The rebalancing weight M(p) of M+MNet Eq. 4, per bin: ``(p / sum_j p_j + beta) * alpha``.

    ``p``: the *ground-truth* rating distribution (B, K) (the paper's p = (p_1..p_N) of
    Eq. 3); the result (B, K) is a constant of the target (no gradient flows into it).
    """
    p = ops.convert_to_tensor(p)
    total = ops.maximum(ops.sum(p, axis=-1, keepdims=True), 1e-12)
    return (p / total + beta) * alpha


def re_emd_loss(r: float = 2, alpha: float = RE_EMD_ALPHA, beta: float = RE_EMD_BETA):
    """Rebalanced EMD (Re-EMD) of M+MNet (He et al. 2025), sec. 3.2, Eq. 3-4.

    Re-EMD(p, p_hat) = ((1/N) sum_k |M(p)_k (CDF_p(k) - CDF_p_hat(k))|^r)^(1/r),
    M(p) = (p / sum_j p_j + beta) * alpha      (alpha = 10, beta = 0.1; r is the paper's
    gamma, 1 or 2).

    Reading of Eq. 4 (the paper writes M(p) as a vector times a scalar CDF difference):
    p is the ground-truth distribution, M(p) is applied element-wise, bin k's CDF gap
    weighted by ``alpha (p_k + beta)`` -- bins where many raters voted count more, the
    minority-opinion bins less ("the more raters vote for a certain score, the more
    likely [it] represents the image's true rating").  The weight depends on the
    target only, so it is a constant for the gradient.  Returned as the batch mean.
    With M = 1 (alpha = 1 and beta = 1 - p_k, i.e. no rebalancing) it is Eq. 3.
    """
    r, alpha, beta = float(r), float(alpha), float(beta)

    def re_emd(y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        w = ops.stop_gradient(re_emd_weights(y_true, alpha, beta))
        diff = ops.abs(w * (ops.cumsum(y_true, axis=-1) - ops.cumsum(y_pred, axis=-1)))
        per_image = ops.power(ops.mean(ops.power(diff, r), axis=-1) + EPS, 1.0 / r)
        return ops.mean(per_image)

    re_emd.__name__ = f"re_emd_r{r:g}"
    return re_emd


def per_sample_emd(y_true, y_pred, r: float = 2, weights=None):
    """(B,) EMD (M+MNet Eq. 3), or Re-EMD (Eq. 4) when ``weights`` (B, K) = M(p) is given."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    diff = ops.cumsum(y_true, axis=-1) - ops.cumsum(y_pred, axis=-1)
    if weights is not None:
        diff = ops.cast(weights, diff.dtype) * diff
    return ops.power(ops.mean(ops.power(ops.abs(diff), float(r)), axis=-1) + EPS, 1.0 / float(r))
