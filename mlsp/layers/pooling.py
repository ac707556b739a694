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


# -- M+MNet ForePool / BackPool and MTP-NasNet spatial pyramid pooling ---------------------------

def adaptive_window(n_in: int, n_out: int) -> tuple[int, int]:
    """Stride and kernel ``(s, k)`` of M+MNet's adaptive pooling along one axis (sec. 3.1.1).

    ``s = floor(n_in / n_out)``, ``k = n_in - (n_out - 1) * s``, padding 0; window ``i``
    is ``[i*s, i*s + k)``.  If ``n_in < n_out``, ``s = 0`` and ``k = n_in``: every window
    is the whole axis (the paper leaves this case open; the formula gives it as is).
    """
    s = n_in // n_out
    return s, n_in - (n_out - 1) * s


def window_membership_numpy(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) 0/1 matrix ``M[i, j] = [i*s <= j < i*s + k]`` (tests and docs)."""
    s, k = adaptive_window(n_in, n_out)
    i = np.arange(n_out)[:, None]
    j = np.arange(n_in)[None, :]
    return ((j >= i * s) & (j < i * s + k)).astype(np.float64)


def _window_membership(n_in, n_out: int, dtype="float32"):
    """``window_membership_numpy`` in ``keras.ops``; ``n_in`` may be a dynamic scalar."""
    n_in_f = ops.cast(n_in, dtype)
    s = ops.floor(n_in_f / float(n_out))
    k = n_in_f - float(n_out - 1) * s
    i = ops.expand_dims(ops.cast(ops.arange(n_out), dtype), 1)
    j = ops.expand_dims(ops.cast(ops.arange(n_in), dtype), 0)
    inside = ops.logical_and(ops.greater_equal(j, i * s), ops.less(j, i * s + k))
    return ops.cast(inside, dtype)


def _window_sum(x, my, mx):
    y = ops.einsum("ih,bhwc->biwc", my, x)
    return ops.einsum("jw,biwc->bijc", mx, y)


#: Weight of the window mean mixed into ForePool's numerator and denominator (see fore_pool).
SOFTMAX_EPS = 1e-30


def fore_pool(x, size: tuple[int, int], with_window_sum: bool = False):
    """ForePool (M+MNet Eq. 1) of (B, H, W, C) maps to (B, size[0], size[1], C).

    Each window (adaptive stride/kernel, :func:`adaptive_window`) gives
    ``sum_i t_i x_i`` with ``t = softmax`` of its activations, per channel; windows are
    products of row and column intervals, so with 0/1 membership matrices ``My``, ``Mx``
    and ``E = exp(x - m)`` (``m``: per-channel maximum over the whole map, for overflow)::

        out = (My (E*X) Mx^T + eps * My X Mx^T) / (My E Mx^T + eps * n),  n = k_h * k_w

    ``eps = SOFTMAX_EPS`` (1e-30) guards underflow.  For a window whose maximum lies
    ``g`` below the map maximum, the window mean's relative weight is at most
    ``n * eps * e^g``: < 1e-6 while ``n e^g < 1e24`` (e.g. n = 400, g <= 49), so exact
    Eq. 1 in practice; if every ``E`` of a window underflows to 0 (float32, g > ~87)
    the output is the window mean instead of 0/0 (NaN).  Computed in float32,
    returned in ``x.dtype``.
    ``with_window_sum`` also returns ``My X Mx^T`` (for BackPool).
    """
    shape = ops.shape(x)
    xf = ops.cast(x, "float32")
    my = _window_membership(shape[1], size[0])
    mx = _window_membership(shape[2], size[1])
    e = ops.exp(xf - ops.max(xf, axis=(1, 2), keepdims=True))
    total = _window_sum(xf, my, mx)
    count = ops.sum(my, axis=1)[:, None] * ops.sum(mx, axis=1)[None, :]  # k_h * k_w
    num = _window_sum(e * xf, my, mx) + SOFTMAX_EPS * total
    den = _window_sum(e, my, mx) + SOFTMAX_EPS * count[None, :, :, None]
    out = ops.cast(num / den, x.dtype)
    return (out, ops.cast(total, x.dtype)) if with_window_sum else out


def _pair(size):
    if isinstance(size, int):
        size = (size, size)
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"pool size must be positive, got {size}")
    return size


class _AdaptivePool2D(keras.layers.Layer):
    """Shared by the M+MNet poolings: an output ``size``, adaptive windows (sec. 3.1.1)."""

    def __init__(self, size=(5, 5), **kwargs):
        super().__init__(**kwargs)
        self.size = _pair(size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="mlsp")
class ForePool2D(_AdaptivePool2D):
    """ForePool (He et al., M+MNet, sec. 3.1.1, Eq. 1): softmax-weighted window sums.

    Adaptive stride ``s = floor(h_in / h_out)`` and kernel ``k = h_in - (h_out - 1) s`` per
    axis, padding 0, so any (B, H, W, C) map gives (B, h_out, w_out, C); when
    ``h_in < h_out`` every window spans the whole axis.  Details: :func:`fore_pool`.
    """

    def call(self, x):
        return fore_pool(x, self.size)


@keras.saving.register_keras_serializable(package="mlsp")
class BackPool2D(_AdaptivePool2D):
    """BackPool (M+MNet Eq. 2): ``sum_i (1 - t_i) x_i`` over each adaptive window, ``t`` as Eq. 1.

    Literal, as the paper writes it: the weights sum to ``n - 1`` (``n = k_h k_w``), not 1,
    so the output is ``window_sum(x) - ForePool(x)`` and its scale grows with the window
    (i.e. with the input size).  ``normalize=True`` divides by ``n - 1`` (``n = 1``: 0).
    """

    def __init__(self, size=(5, 5), normalize=False, **kwargs):
        super().__init__(size, **kwargs)
        self.normalize = bool(normalize)

    def call(self, x):
        fore, total = fore_pool(x, self.size, with_window_sum=True)
        back = total - fore
        if self.normalize:
            shape = ops.shape(x)
            n = (ops.sum(_window_membership(shape[1], self.size[0]), axis=1)[:, None]
                 * ops.sum(_window_membership(shape[2], self.size[1]), axis=1)[None, :])
            back = back / ops.cast(ops.maximum(n - 1.0, 1.0), back.dtype)[None, :, :, None]
        return back

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="mlsp")
class ForeBackPool2D(_AdaptivePool2D):
    """ForePool and BackPool (M+MNet Eq. 1-2) of the same map in one pass: ``[fore, back]``.

    Shares the softmax of :func:`fore_pool`; ``back = window_sum - fore``, unnormalised
    as in :class:`BackPool2D` (the M+MNet ForeNet / BackNet pair, sec. 3.1).
    """

    def call(self, x):
        fore, total = fore_pool(x, self.size, with_window_sum=True)
        return [fore, total - fore]

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return [shape, shape]


@keras.saving.register_keras_serializable(package="mlsp")
class SpatialPyramidPooling(keras.layers.Layer):
    """Spatial pyramid pooling (MTP-NasNet, Sun and Zhou, sec. 3.2: 1x1, 3x3, 4x4 grids).

    Each grid pools (B, H, W, C) by area averaging (:func:`area_resize`, so any H, W,
    also smaller than the grid); the cells are flattened and concatenated to
    (B, sum(L*L), C) = (B, 26, C) for ``levels=(1, 3, 4)``.  Cell order: level by level
    as given, within a level row-major (cell ``(r, c)`` of grid L at ``offset_L + r*L + c``),
    so for (1, 3, 4): 0 = global mean, 1..9 = 3x3, 10..25 = 4x4.
    """

    def __init__(self, levels=(1, 3, 4), mode="avg", **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or min(self.levels) < 1:
            raise ValueError(f"pyramid levels must be positive, got {levels}")
        if mode != "avg":
            raise ValueError(f"pyramid pooling mode {mode!r} not supported (only 'avg')")
        self.mode = mode

    @property
    def cells(self) -> int:
        return sum(v * v for v in self.levels)

    def call(self, x):
        channels = x.shape[-1] if x.shape[-1] is not None else ops.shape(x)[-1]
        parts = []
        for v in self.levels:
            pooled = (ops.mean(x, axis=(1, 2), keepdims=True) if v == 1
                      else area_resize(x, (v, v)))
            parts.append(ops.reshape(pooled, (-1, v * v, channels)))
        return ops.concatenate(parts, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cells, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "levels": self.levels, "mode": self.mode}
