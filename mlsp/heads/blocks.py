"""Building blocks shared by every head: seeded initialisers, the MLSP 3FC block
(Hosu et al. 2019, Fig. 3 / Fig. 4b), the output layer, conv + BN + ReLU and the
Pool-3FC inception module (Fig. 6).  Backend-agnostic Keras 3 (``keras.layers`` only).

One home, so that the heads' modules (:mod:`.models`, :mod:`.mnet`, :mod:`.multitask`,
:mod:`.cells`) import these blocks and never each other.
"""
from __future__ import annotations

import keras
from keras import layers

__all__ = ["Seeds", "dense", "fc3", "final", "conv_bn_relu", "pool_module", "FC_SIZES",
           "POOL_KERNELS", "DEFAULT_DROPOUT"]

FC_SIZES = (1024, 256)          # layers 2 and 3 of the 3FC block (Fig. 3)
POOL_KERNELS = 1024             # kernels per column of the Pool-3FC inception module
DEFAULT_DROPOUT = (0.25, 0.25, 0.5)  # the 3FC block's dropout rates (Fig. 3)


class Seeds:
    """Distinct, reproducible seeds for every initializer / dropout layer (None: random)."""

    def __init__(self, seed):
        self.seed, self.k = seed, 0

    def __call__(self):
        if self.seed is None:
            return None
        self.k += 1
        return int(self.seed) * 1000 + self.k

    def kernel(self):
        return keras.initializers.GlorotUniform(seed=self())


def dense(units, seeds, name, activation=None):
    """A Dense layer with a seeded Glorot-uniform kernel."""
    return layers.Dense(units, activation=activation, kernel_initializer=seeds.kernel(), name=name)


def fc3(x, width, dropout, seeds, prefix="fc"):
    """The 3FC block of MLSP Fig. 3 / Fig. 4b: for X, 1024, 256 units,
    Dense + ReLU, then BatchNormalization, then Dropout (0.25, 0.25, 0.5)."""
    if len(dropout) != 3:
        raise ValueError(f"dropout needs 3 rates, got {dropout}")
    for i, (units, rate) in enumerate(zip((int(width), *FC_SIZES), dropout), 1):
        x = dense(units, seeds, f"{prefix}{i}", activation="relu")(x)
        x = layers.BatchNormalization(name=f"{prefix}{i}_bn")(x)
        x = layers.Dropout(float(rate), seed=seeds(), name=f"{prefix}{i}_dropout")(x)
    return x


def final(x, output, n_bins, seeds, name="output"):
    """The output layer: linear (B, 1) MOS, or a (B, n_bins) softmax distribution."""
    if output == "mos":
        return dense(1, seeds, name)(x)
    return dense(n_bins, seeds, name, activation="softmax")(x)


def conv_bn_relu(x, filters, kernel, seeds, name):
    """Conv2D ('same', no bias) + BatchNormalization + ReLU."""
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                      kernel_initializer=seeds.kernel(), name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def pool_module(x, seeds, kernels=POOL_KERNELS):
    """Modified Inception module of Pool-3FC (MLSP sec. 3.2.2, Fig. 6): three
    columns of ``kernels`` channels each, concatenated (3 x 1024 = 3072).

    (a) 1x1 conv; (b) the "3x3" column in the factorised Inception-v3 form:
    1x1 conv (kernels/2) feeding two *parallel* branches, 1x3 conv and 3x1
    conv (kernels/2 each), concatenated -- the reading that gives 1024 kernels
    for the column, as the paper's "1024 per column" requires (the sequential
    1x3 -> 3x1 reading would give 512); (c) 3x3 average pooling (stride 1,
    'same') then 1x1 conv.  Every conv: padding 'same', BatchNormalization,
    ReLU (no bias, as BN supplies the shift).
    """
    half = kernels // 2
    a = conv_bn_relu(x, kernels, 1, seeds, "pool_a_1x1")
    b = conv_bn_relu(x, half, 1, seeds, "pool_b_1x1")
    b1 = conv_bn_relu(b, half, (1, 3), seeds, "pool_b_1x3")
    b2 = conv_bn_relu(b, kernels - half, (3, 1), seeds, "pool_b_3x1")
    b = layers.Concatenate(name="pool_b_concat")([b1, b2])
    c = layers.AveragePooling2D(3, strides=1, padding="same", name="pool_c_avg")(x)
    c = conv_bn_relu(c, kernels, 1, seeds, "pool_c_1x1")
    return layers.Concatenate(name="pool_concat")([a, b, c])
