"""Helpers for the extensions from M+MNet, MTP-NasNet and the multi-patch paper.

Training with them is :func:`mlsp.training.trainer.train_head` (one code path for every
head, feature kind, objective, loss, precision and sample weighting); this module keeps
the pieces that stand on their own:

- :func:`variance_weights`: MTP-NasNet sec. 3.3 per-image reliability weights
  (``train_head(sample_weights="variance")``);
- :func:`build_cells_3fc`: a neutral head for any (cells..., C) feature kind
  (``head="cells_3fc"``, used by the pooling ablation);
- the option values ``train_head`` accepts: :data:`FEATURE_KINDS`, :data:`LOSSES`,
  :data:`SAMPLE_WEIGHTS` (objectives: :data:`mlsp.training.objectives.OBJECTIVES`,
  precisions: :data:`mlsp.training.precision.PRECISIONS`).
"""
from __future__ import annotations

import keras
import numpy as np

from .data import FEATURE_KINDS

__all__ = ["variance_weights", "build_cells_3fc", "FEATURE_KINDS", "LOSSES", "SAMPLE_WEIGHTS"]

LOSSES = ("mse", "emd", "re_emd")
SAMPLE_WEIGHTS = (None, "none", "variance")


# -- MTP-NasNet sec. 3.3 --------------------------------------------------------------------
def variance_weights(distribution, bin_scores, train_mask=None) -> np.ndarray:
    """Per-image reliability weights from the rating distributions' variance (MTP-NasNet 3.3).

    The paper states the rule (larger variance -> less credible -> smaller weight) but
    gives no formula.  We use a smoothed inverse variance, normalised to mean 1 over the
    training images (so the loss scale and learning rate keep their meaning):

        var_i = sum_k p_ik (s_k - mu_i)^2,   mu_i = sum_k p_ik s_k   (s_k: bin scores)
        w_i   = (1 / (var_i + v)) / mean_train(1 / (var_j + v)),   v = mean_train(var_j)

    v keeps the weights bounded (a zero-variance image gets at most (1 + var_max / v)
    times the weight of the least reliable one).  Example: variances (1, 3): v = 2,
    1/(var+v) = (1/3, 1/5), mean 4/15, w = (1.25, 0.75).
    """
    p = np.asarray(distribution, np.float64)
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    s = np.asarray(bin_scores, np.float64)
    mu = p @ s
    var = np.sum(p * (s[None, :] - mu[:, None]) ** 2, axis=1)
    m = np.ones(len(var), bool) if train_mask is None else np.asarray(train_mask, bool)
    v = float(var[m].mean()) or 1.0
    raw = 1.0 / (var + v)
    return (raw / raw[m].mean()).astype(np.float32)


def build_cells_3fc(item_shape, output="mos", n_bins=10, width=512, cell_units=128,
                    dropout=(0.25, 0.25, 0.5), seed=None) -> keras.Model:
    """A neutral head for any (cells..., C) feature kind (grid P x P or SPP's 26 cells):
    a per-cell Dense(cell_units) + BN + ReLU (a 1x1 convolution), flatten, 3FC, output.
    Used to compare pooling kinds with the same head (``mlsp ablate pooling``)."""
    from ..heads.models import _dense, _final, _Seeds, fc3

    seeds = _Seeds(seed)
    inp = keras.Input(tuple(item_shape), dtype="float32", name="features")
    cells = int(np.prod(item_shape[:-1]))
    x = keras.layers.Reshape((cells, int(item_shape[-1])), name="cells")(inp)
    x = _dense(int(cell_units), seeds, "cell_1x1", activation="relu")(x)
    x = keras.layers.BatchNormalization(name="cell_1x1_bn")(x)
    x = keras.layers.Flatten(name="cells_flat")(x)
    x = fc3(x, width, dropout, seeds)
    return keras.Model(inp, _final(x, output, n_bins, seeds), name="cells_3fc")
