"""MTP-NasNet multi-task head (Sun and Zhou, "Integrity-Preserving Image Aesthetic
Assessment", sec. 3.1, Eq. 1-4; sec. 4.3) on narrow MLSP features.

A shared trunk (the MLSP 3FC block, Dense X/1024/256) feeds three task layers:

- ``output``  (K,) softmax: the score distribution, L_dis = EMD (Eq. 2, r = 2);
- ``binary``  (2,) softmax: high / low quality, L_two = -log softmax (Eq. 3), the label
  being MOS > threshold (5 on AVA);
- ``tags``    (T,) softmax: style, L_sty = -log softmax (Eq. 4); AVA gives each image up
  to two semantic tag ids (``Labels.tags``, 0 = none), so the target is the multi-hot
  over the tag ids present in the training labels, normalised to sum 1 (cross-entropy
  against it = the mean -log softmax of the image's tags).  Images without a tag are
  left out of L_sty.  No tag column (e.g. CSV labels): no style task, no sigma_3.

Total loss, Eq. 1 (Kendall et al.'s uncertainty weighting):

    L = L_dis / (2 sigma_1^2) + lambda_1 L_two / (2 sigma_2^2) + lambda_2 L_sty / (2 sigma_3^2)
        + log sigma_1 + log sigma_2 + log sigma_3,

with trainable s_i = log sigma_i (so 1 / (2 sigma^2) = exp(-2 s) / 2), initialised to the
paper's s = (0.5, 0.9, 0.6), constrained to the paper's range -1 < s < 2.5 (clipped after
every update), lambda_1 = 0.15, lambda_2 = 0.06.

Binary margin (sec. 4.3): the paper calls images with score < 5 - delta low and > 5 + delta
high (delta = 1), i.e. those within delta of the threshold belong to neither class;
``margin=delta`` leaves samples with |MOS - threshold| < delta out of L_two (default 0:
every image counts).  Per-task means: L_dis over the batch (sample-weighted, e.g.
variance weights, sec. 3.3), L_two over the samples inside the margin rule (weighted),
L_sty over tagged samples.

Targets are packed into one array per image (see :func:`pack_targets`):
``[distribution (K) | binary label | binary mask | tag multi-hot (T) | tag mask]``.
Backend-agnostic (``keras.ops`` only): :class:`MultiTaskModel` overrides ``compute_loss``.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .losses import per_sample_emd
from .blocks import DEFAULT_DROPOUT, Seeds, dense, fc3

__all__ = ["MTL_INIT_LOG_SIGMA", "MTL_LAMBDAS", "build_multitask_net", "MultiTaskModel",
           "pack_targets", "tag_vocabulary", "multitask_total", "ClipConstraint"]

MTL_INIT_LOG_SIGMA = (0.5, 0.9, 0.6)     # log sigma_1..3 of Eq. 1
MTL_LAMBDAS = (0.15, 0.06)               # lambda_1 (binary), lambda_2 (style)
LOG_SIGMA_RANGE = (-1.0, 2.5)


def tag_vocabulary(tags) -> np.ndarray:
    """Sorted non-zero tag ids present in an (N, 2) tag array (AVA: 0 = no tag)."""
    if tags is None:
        return np.zeros(0, np.int64)
    t = np.asarray(tags, np.int64).reshape(-1)
    return np.unique(t[t > 0])


def pack_targets(distribution, mos, threshold=5.0, margin=0.0, tags=None, vocab=None):
    """(N, K + 2 + T + 1) float32 targets for :class:`MultiTaskModel` (see module doc)."""
    dist = np.asarray(distribution, np.float32)
    mos = np.asarray(mos, np.float64).reshape(-1)
    binary = (mos > threshold).astype(np.float32)[:, None]
    bmask = (np.abs(mos - threshold) >= margin).astype(np.float32)[:, None] if margin > 0 \
        else np.ones_like(binary)
    parts = [dist, binary, bmask]
    if vocab is not None and len(vocab):
        t = np.asarray(tags, np.int64)
        hot = (t[:, :, None] == np.asarray(vocab)[None, None, :]).any(axis=1).astype(np.float32)
        n = hot.sum(axis=1, keepdims=True)
        parts += [hot / np.maximum(n, 1.0), (n > 0).astype(np.float32)]
    return np.concatenate(parts, axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="mlsp")
class ClipConstraint(keras.constraints.Constraint):
    """Clip a variable into [lo, hi] after each update (MTP-NasNet: -1 < log sigma < 2.5)."""

    def __init__(self, lo=LOG_SIGMA_RANGE[0], hi=LOG_SIGMA_RANGE[1]):
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, w):
        return ops.clip(w, self.lo, self.hi)

    def get_config(self):
        return {"lo": self.lo, "hi": self.hi}


def build_multitask_net(channels, n_bins=10, n_tags=0, width=None, dropout=DEFAULT_DROPOUT,
                        seed=None) -> keras.Model:
    """Shared trunk + task layers; outputs ``[output (K), binary (2)(, tags (T))]``."""
    seeds = Seeds(seed)
    inp = keras.Input((int(channels),), dtype="float32", name="features")
    x = fc3(inp, width or 2048, dropout, seeds, prefix="shared_fc")
    outs = [dense(int(n_bins), seeds, "output", activation="softmax")(x),
            dense(2, seeds, "binary", activation="softmax")(x)]
    if n_tags:
        outs.append(dense(int(n_tags), seeds, "tags", activation="softmax")(x))
    return keras.Model(inp, outs, name="multitask")


def multitask_total(l_dis, l_two, l_sty, log_sigma, lambdas=MTL_LAMBDAS):
    """Eq. 1 from the task losses and s = log sigma (length 2 without, 3 with the style task)."""
    s = ops.convert_to_tensor(log_sigma)
    total = 0.5 * ops.exp(-2.0 * s[0]) * l_dis + s[0]
    total = total + 0.5 * ops.exp(-2.0 * s[1]) * lambdas[0] * l_two + s[1]
    if l_sty is not None:
        total = total + 0.5 * ops.exp(-2.0 * s[2]) * lambdas[1] * l_sty + s[2]
    return total


def _weighted_mean(values, weights):
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1e-12)


@keras.saving.register_keras_serializable(package="mlsp")
class MultiTaskModel(keras.Model):
    """Training wrapper: the task net plus trainable log sigmas; loss = Eq. 1.

    ``net``: from :func:`build_multitask_net`.  ``y`` is :func:`pack_targets`' array;
    ``sample_weight`` (B,) multiplies L_dis and L_two (variance weights, sec. 3.3).
    ``self.inference`` is the single-output model (the distribution) that is saved
    and scored (the binary / style layers are training aids, as in the paper, whose
    tests use the distribution and the binary decision derived from it).
    """

    def __init__(self, net, n_bins, n_tags=0, lambdas=MTL_LAMBDAS,
                 init_log_sigma=MTL_INIT_LOG_SIGMA, **kwargs):
        super().__init__(**kwargs)
        self.net, self.n_bins, self.n_tags = net, int(n_bins), int(n_tags)
        self.lambdas = tuple(float(v) for v in lambdas)
        k = 3 if self.n_tags else 2
        init = np.asarray(init_log_sigma[:k], np.float32)
        self.log_sigma = self.add_weight(shape=(k,), name="log_sigma",
                                         initializer=keras.initializers.Constant(init),
                                         constraint=ClipConstraint(), trainable=True)
        self.inference = keras.Model(net.input, net.outputs[0], name="multitask")

    def call(self, x, training=False):
        return self.net(x, training=training)

    def task_losses(self, y, y_pred, sample_weight=None):
        """(L_dis, L_two, L_sty or None) as scalars (see module doc)."""
        k, t = self.n_bins, self.n_tags
        y = ops.cast(y, "float32")
        dist_pred, bin_pred = ops.cast(y_pred[0], "float32"), ops.cast(y_pred[1], "float32")
        w = ops.ones_like(y[:, 0]) if sample_weight is None else \
            ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        l_dis = ops.mean(w * per_sample_emd(y[:, :k], dist_pred, 2))
        label, bmask = y[:, k], y[:, k + 1]
        p_bin = ops.clip(bin_pred, 1e-7, 1.0)
        ce_two = -(label * ops.log(p_bin[:, 1]) + (1.0 - label) * ops.log(p_bin[:, 0]))
        l_two = _weighted_mean(ce_two, w * bmask)
        l_sty = None
        if t:
            target, tmask = y[:, k + 2:k + 2 + t], y[:, k + 2 + t]
            p_tag = ops.clip(ops.cast(y_pred[2], "float32"), 1e-7, 1.0)
            ce_sty = -ops.sum(target * ops.log(p_tag), axis=-1)
            l_sty = _weighted_mean(ce_sty, tmask)
        return l_dis, l_two, l_sty

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        l_dis, l_two, l_sty = self.task_losses(y, y_pred, sample_weight)
        return multitask_total(l_dis, l_two, l_sty, self.log_sigma, self.lambdas)

    def get_config(self):
        return {"net": keras.saving.serialize_keras_object(self.net), "n_bins": self.n_bins,
                "n_tags": self.n_tags, "lambdas": self.lambdas}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["net"] = keras.saving.deserialize_keras_object(config["net"])
        return cls(**config)
