"""The MNet fusion head of M+MNet (He et al., ZTE Communications 2025, sec. 3.1-3.2, Fig. 6)
on stored MLSP features.

Paper: MNet has two sub-branches on MobileNetV2 feature maps, trained end to end:
ForeNet (a self-attention layer *before* a ForePool layer, Eq. 1, so the relations
among salient subjects are modelled before down-sampling, sec. 3.1.2) and BackNet
(a BackPool layer, Eq. 2); a 1x1 convolution fuses the two so that neither branch
dominates by channel count (sec. 3.1.3); fully connected layers predict the
10-bin score distribution (EMD / Re-EMD loss, Eq. 3-4) or, without distributions,
the MOS (MSE, sec. 4.1).

Here the backbone is frozen and its features are stored (MLSP, Hosu et al. 2019), so
MNet is a *head* on a (P, P, C) grid of stored features:

- ``source="area"``: one (P, P, C) input, the MLSP wide (area-pooled) features;
  ForeNet = self-attention over the P*P grid positions, then ForePool2D to
  ``pool_size`` x ``pool_size``; BackNet = BackPool2D of the same grid.
- ``source="foreback"``: a (P, P, 2C) input, the store's ``features/wide_fore`` and
  ``features/wide_back`` concatenated on channels (ForePool / BackPool applied by the
  extractor to the full-resolution maps, the paper's pooling placement); ForeNet
  attends over the fore grid and ForePools it again to ``pool_size``, BackNet
  BackPools the back grid.  The attention then sits after the extractor's ForePool
  and before the head's (the paper's "attention before ForePool" cannot be had
  without the full-resolution maps, which the store does not keep).

Reading / choices (not fixed by the paper): attention is
``keras.layers.MultiHeadAttention`` (``heads`` x ``key_dim``) with a residual
connection and LayerNormalization (the usual transformer block, after SAGAN's
residual self-attention cited as [45-46]); BackPool is normalised by ``n - 1``
(``BackPool2D(normalize=True)``) so both branches have the scale of a mean;
the fusion concatenates the branches (C channels each), a 1x1 Conv2D to
``fuse_channels`` with BatchNormalization + ReLU balances them; then the MLSP 3FC
block (Dense X/1024/256 with BN and dropout) and the output layer.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers.pooling import BackPool2D, ForePool2D
from .blocks import DEFAULT_DROPOUT, Seeds, fc3, final

__all__ = ["build_mnet", "ChannelSlice", "MNET_SOURCES"]

MNET_SOURCES = ("area", "foreback")


@keras.saving.register_keras_serializable(package="mlsp")
class ChannelSlice(layers.Layer):
    """``x[..., start:stop]`` as a serialisable layer (safe-mode loading)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def _self_attention(x, heads, key_dim, seeds, name="fore_attention"):
    """Residual multi-head self-attention over the P*P positions of a (P, P, C) grid."""
    p, q, c = (int(v) for v in x.shape[1:])
    seq = layers.Reshape((p * q, c), name=f"{name}_tokens")(x)
    att = layers.MultiHeadAttention(num_heads=int(heads), key_dim=int(key_dim),
                                    kernel_initializer=seeds.kernel(), name=name)(seq, seq)
    seq = layers.Add(name=f"{name}_residual")([seq, att])
    seq = layers.LayerNormalization(name=f"{name}_norm")(seq)
    return layers.Reshape((p, q, c), name=f"{name}_grid")(seq)


def build_mnet(channels, wide_size=5, output="mos", n_bins=10, source="area", pool_size=2,
               heads=4, key_dim=64, fuse_channels=512, width=None,
               dropout=DEFAULT_DROPOUT, seed=None) -> keras.Model:
    """MNet head (M+MNet sec. 3.1, Fig. 6) on stored (P, P, C) features; see the module doc.

    ``channels``: C of one branch (for ``source="foreback"`` the input has 2C).
    ``width``: X of the 3FC block (default 2048).  Output layer named "output".
    """
    if source not in MNET_SOURCES:
        raise ValueError(f"mnet source must be one of {MNET_SOURCES}, got {source!r}")
    c, p = int(channels), int(wide_size)
    seeds = Seeds(seed)
    inp = keras.Input((p, p, 2 * c if source == "foreback" else c), dtype="float32",
                      name="features")
    if source == "foreback":
        fore_in = ChannelSlice(0, c, name="fore_features")(inp)
        back_in = ChannelSlice(c, 2 * c, name="back_features")(inp)
    else:
        fore_in = back_in = inp
    # ForeNet: self-attention placed before the ForePool layer (sec. 3.1.2)
    fore = _self_attention(fore_in, heads, key_dim, seeds)
    fore = ForePool2D(pool_size, name="forepool")(fore)
    # BackNet: BackPool (Eq. 2), normalised by n - 1
    back = BackPool2D(pool_size, normalize=True, name="backpool")(back_in)
    # 1x1 convolution balancing the two branches (sec. 3.1.3)
    x = layers.Concatenate(name="branches")([fore, back])
    x = layers.Conv2D(int(fuse_channels), 1, use_bias=False, kernel_initializer=seeds.kernel(),
                      name="fuse_1x1")(x)
    x = layers.BatchNormalization(name="fuse_1x1_bn")(x)
    x = layers.Activation("relu", name="fuse_1x1_relu")(x)
    x = layers.Flatten(name="fuse_flatten")(x)
    x = fc3(x, width or 2048, dropout, seeds)
    return keras.Model(inp, final(x, output, n_bins, seeds), name="mnet")
