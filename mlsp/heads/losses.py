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
