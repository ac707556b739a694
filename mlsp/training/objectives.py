"""Multi-patch objectives (Sheng et al., "Attention-based Multi-Patch Aggregation for Image
Aesthetic Assessment", ACM MM 2018, sec. 3, Eq. 3-8) on stored MLSP augmentations.

The A (= 8) stored crop / flip augmentations of an image are its patches P.  The head
is applied to every patch ((B, A, ...) -> (B*A, ...) -> head -> (B, A, out)) and the
per-patch losses l_a are combined with patch weights:

- ``mp_avg`` (Eq. 3):  L = (1/|P|) sum_a l_a;
- ``mp_min`` (Eq. 5, the paper's soft version): patch a is drawn with probability
  proportional to 1 - p_a; we use its expectation, L = sum_a q_a l_a with
  q_a = (1 - p_a) / sum_b (1 - p_b) (uniform when every p_b = 1); no gradient flows
  through q (a sampling probability);
- ``mp_ada`` (Eq. 7):  L = (1/|P|) sum_a omega_a l_a, omega_a = 1 - p_a^beta, beta = 0.5;
  the gradient flows through omega as in the paper's Eq. 8.

p_a is the probability the model gives the correct answer on patch a.  For the
paper's binary task l_a = -log p_a (``task="binary"``: sigmoid output, p = y_hat or
1 - y_hat), which makes these exactly Eq. 3, 5, 7.  For MOS regression (this
project's default) there is no such probability; we use the analogue
``p_a = exp(-|MOS_hat_a - MOS| / s)`` with ``s`` the training MOS standard deviation
(for the z-scored MOS output s = 1 in its units; for distributions MOS_hat is the
expectation over the bin scores), so a well predicted patch has p near 1 and a patch
off by one standard deviation p = e^-1; l_a is then the chosen loss (MSE, EMD,
Re-EMD).  ``sample_weight`` (B,) multiplies each image's combined loss.

Test-time prediction stays MLSP's: the inner head's outputs averaged over the
augmentations (:func:`mlsp.inference.scoring.predict_averaged`).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..heads.losses import RE_EMD_ALPHA, RE_EMD_BETA, per_sample_emd, re_emd_weights
from ..heads.registry import OBJECTIVES
from .data import FeatureSequence

__all__ = ["OBJECTIVES", "MP_BETA", "patch_weights", "combine_patches", "MultiPatchModel",
           "AllAugmentationsSequence"]

MP_BETA = 0.5


def patch_weights(p, objective, beta=MP_BETA):
    """(B, A) patch weights w, so that the loss is sum_a w_a l_a (see module doc)."""
    p = ops.convert_to_tensor(p)
    a = ops.cast(ops.shape(p)[-1], p.dtype)
    if objective == "mp_avg":
        return ops.ones_like(p) / a
    if objective == "mp_min":
        miss = ops.stop_gradient(1.0 - p)
        total = ops.sum(miss, axis=-1, keepdims=True)
        uniform = ops.ones_like(p) / a
        return ops.where(total > 1e-12, miss / ops.maximum(total, 1e-12), uniform)
    if objective == "mp_ada":
        return (1.0 - ops.power(ops.maximum(p, 1e-12), beta)) / a
    raise ValueError(f"objective must be one of {OBJECTIVES[1:]}, got {objective!r}")


def combine_patches(losses, p, objective, beta=MP_BETA, sample_weight=None):
    """Batch mean of sum_a w_a l_a (Eq. 3 / 5 / 7 as losses to minimise)."""
    per_image = ops.sum(patch_weights(p, objective, beta) * losses, axis=-1)
    if sample_weight is not None:
        per_image = per_image * ops.reshape(ops.cast(sample_weight, per_image.dtype), (-1,))
    return ops.mean(per_image)


@keras.saving.register_keras_serializable(package="mlsp")
class MultiPatchModel(keras.Model):
    """Training wrapper: (B, A, ...) features -> inner head on every patch -> (B, A, out).

    ``loss``: ``mse`` (z-scored MOS, ``task="mos"``), ``emd`` / ``re_emd``
    (distributions; ``bin_scores`` and ``mos_std`` define p), or ``bce`` with
    ``task="binary"`` (the paper's setting).  ``r``: EMD exponent.
    """

    def __init__(self, head, objective="mp_ada", loss="mse", task="mos", beta=MP_BETA,
                 bin_scores=None, mos_std=1.0, r=2, **kwargs):
        super().__init__(**kwargs)
        if objective not in OBJECTIVES[1:]:
            raise ValueError(f"objective must be one of {OBJECTIVES[1:]}, got {objective!r}")
        self.head, self.objective, self.loss_name, self.task = head, objective, loss, task
        self.beta, self.mos_std, self.r = float(beta), float(mos_std), float(r)
        self.bin_scores = None if bin_scores is None else [float(v) for v in bin_scores]

    def call(self, x, training=False):
        shape = ops.shape(x)
        flat = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        y = self.head(flat, training=training)
        return ops.reshape(y, (shape[0], shape[1], -1))

    def patch_losses(self, y, y_pred):
        """(per-patch loss l, per-patch confidence p), both (B, A)."""
        y_pred = ops.cast(y_pred, "float32")
        y = ops.cast(y, "float32")
        n_aug = ops.shape(y_pred)[1]
        if self.task == "binary":
            q = ops.clip(y_pred[..., 0], 1e-7, 1.0 - 1e-7)
            lab = y[:, None] if len(y.shape) == 1 else y[:, :1]
            p = lab * q + (1.0 - lab) * (1.0 - q)
            return -ops.log(p), p
        if self.loss_name == "mse":
            err = y_pred[..., 0] - ops.reshape(y, (-1, 1))
            return ops.square(err), ops.exp(-ops.abs(err))  # z-scored: s = 1
        yt = ops.repeat(y[:, None, :], n_aug, axis=1)
        w = ops.stop_gradient(re_emd_weights(yt, RE_EMD_ALPHA, RE_EMD_BETA)) \
            if self.loss_name == "re_emd" else None
        losses = per_sample_emd(yt, y_pred, self.r, w)
        s = ops.convert_to_tensor(np.asarray(self.bin_scores, np.float32))
        err = (ops.sum(y_pred * s, axis=-1) - ops.sum(yt * s, axis=-1)) / self.mos_std
        return losses, ops.exp(-ops.abs(err))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, p = self.patch_losses(y, y_pred)
        return combine_patches(losses, p, self.objective, self.beta, sample_weight)

    def get_config(self):
        return {"head": keras.saving.serialize_keras_object(self.head),
                "objective": self.objective, "loss": self.loss_name, "task": self.task,
                "beta": self.beta, "bin_scores": self.bin_scores, "mos_std": self.mos_std,
                "r": self.r}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)


class AllAugmentationsSequence(FeatureSequence):
    """Batches ``(features (b, A, ...), targets[, sample weights])``: every stored
    augmentation of each image together (the patches of the multi-patch objectives);
    :class:`~mlsp.training.data.FeatureSequence` with ``augment="patches"``, so
    ``batch_size`` counts images.  ``features``: anything with ``n_aug`` and
    ``get(rows)`` -> (n, A, ...) float32 (StoreFeatures)."""

    def __init__(self, features, rows, targets, batch_size=16, shuffle=True, seed=0,
                 sample_weights=None, workers=1, **kwargs):
        super().__init__(features, rows, targets, batch_size, "patches", shuffle, seed,
                         workers=workers, sample_weights=sample_weights, **kwargs)
