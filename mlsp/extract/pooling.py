"""Spatial pooling of activation maps to a fixed size, written with ``keras.ops``.

MLSP (Hosu et al. 2019, sec. 3.1, Fig. 2) pools every tapped block "by resizing
feature blocks using area interpolation (the same as INTER_AREA in OpenCV)":
narrow features are 1x1 (global average pooling), wide features 5x5.

Area resizing is separable.  Along one axis, with ``n_in`` source cells and
``n_out`` output cells, output cell ``i`` covers the source interval
``[i*s, (i+1)*s)`` with ``s = n_in / n_out``; its value is the average of the
source cells weighted by how much of each one the interval covers::

    W[i, j] = max(0, min((i+1)*s, j+1) - max(i*s, j)) / s

and ``out = Wy @ X @ Wx^T``.  Every row of ``W`` sums to 1.  When the axis
shrinks (s >= 1) this is OpenCV's INTER_AREA decimation; when it grows
(s < 1) an output cell covers at most two source cells and the same formula
gives OpenCV's INTER_AREA up-scaling weights (``fx = (dx+1) - (sx+1)/s``).  So
the result equals ``cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)`` to
float rounding whenever both axes shrink or both grow.

When one axis grows and the other shrinks, OpenCV leaves its area path and
uses a 2-tap interpolation on *both* axes, which on the shrinking axis skips
source cells.  We keep the true box average on each axis instead (every source
cell contributes, narrow features stay the exact mean of the wide ones), so
results differ from a single OpenCV call there by design; they equal OpenCV's
INTER_AREA applied one axis at a time (first the shrinking axis, then the
growing one), which is how the tests check it.  This only happens for tapped maps
narrower than the pool size on one side, e.g. a deep 3x12 map pooled to 5x5.

Keras' own ``interpolation="area"`` exists only on TensorFlow; this layer runs
on every Keras backend and on inputs whose spatial size is unknown until run
time (the weights are computed from the dynamic shape).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


def area_weights_numpy(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) area-resize weight matrix, in float64 (for tests and docs)."""
    s = n_in / n_out
    i = np.arange(n_out, dtype=np.float64)[:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.minimum((i + 1) * s, j + 1) - np.maximum(i * s, j)
    return np.maximum(overlap, 0.0) / s


def _area_weights(n_in, n_out: int, dtype="float32"):
    """``area_weights_numpy`` in ``keras.ops``; ``n_in`` may be a dynamic scalar."""
    n_in_f = ops.cast(n_in, dtype)
    s = n_in_f / float(n_out)
    i = ops.expand_dims(ops.cast(ops.arange(n_out), dtype), 1)
    j = ops.expand_dims(ops.cast(ops.arange(n_in), dtype), 0)
    overlap = ops.minimum((i + 1.0) * s, j + 1.0) - ops.maximum(i * s, j)
    return ops.maximum(overlap, 0.0) / s


def area_resize(x, size: tuple[int, int]):
    """Area-resize a batch of maps ``x`` (B, H, W, C) to (B, size[0], size[1], C)."""
    shape = ops.shape(x)
    wy = ops.cast(_area_weights(shape[1], size[0]), x.dtype)
    wx = ops.cast(_area_weights(shape[2], size[1]), x.dtype)
    y = ops.einsum("ih,bhwc->biwc", wy, x)
    return ops.einsum("jw,biwc->bijc", wx, y)


@keras.saving.register_keras_serializable(package="mlsp")
class AreaPooling2D(keras.layers.Layer):
    """Pool (B, H, W, C) maps of any size to (B, h, w, C) by area averaging.

    ``size=(1, 1)`` is global average pooling (MLSP narrow features); ``(5, 5)``
    gives MLSP wide features.  Works for maps smaller than ``size`` too (area
    up-sampling), so every tapped block pools to the same shape.
    """

    def __init__(self, size=(5, 5), **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, int):
            size = (size, size)
        self.size = (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ValueError(f"pool size must be positive, got {self.size}")

    def call(self, x):
        if self.size == (1, 1):
            return ops.mean(x, axis=(1, 2), keepdims=True)
        return area_resize(x, self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}
