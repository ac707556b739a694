"""A neutral head for any (cells..., C) feature kind, to compare pooling kinds with one head
(``mlsp ablate pooling``; M+MNet Table 4, MTP-NasNet's SPP)."""
from __future__ import annotations

import keras
import numpy as np

from .blocks import DEFAULT_DROPOUT, Seeds, dense, fc3, final

__all__ = ["build_cells_3fc"]


def build_cells_3fc(item_shape, output="mos", n_bins=10, width=512, cell_units=128,
                    dropout=DEFAULT_DROPOUT, seed=None) -> keras.Model:
    """A neutral head for any (cells..., C) feature kind (grid P x P or SPP's 26 cells):
    a per-cell Dense(cell_units) + BN + ReLU (a 1x1 convolution), flatten, 3FC, output.
    Used to compare pooling kinds with the same head (``mlsp ablate pooling``)."""
    seeds = Seeds(seed)
    inp = keras.Input(tuple(item_shape), dtype="float32", name="features")
    cells = int(np.prod(item_shape[:-1]))
    x = keras.layers.Reshape((cells, int(item_shape[-1])), name="cells")(inp)
    x = dense(int(cell_units), seeds, "cell_1x1", activation="relu")(x)
    x = keras.layers.BatchNormalization(name="cell_1x1_bn")(x)
    x = keras.layers.Flatten(name="cells_flat")(x)
    x = fc3(x, width, dropout, seeds)
    return keras.Model(inp, final(x, output, n_bins, seeds), name="cells_3fc")
