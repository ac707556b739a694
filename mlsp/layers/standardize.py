"""A fixed per-channel standardization in front of a head, stored as weights of the model.

Keras' own ``Normalization(mean=..., variance=...)`` keeps its statistics as captured
constant tensors; ONNX export (tf2onnx) turns those captures into extra graph inputs that
a user cannot feed, so the exported scorer fails.  Weights export as constants of the graph
and are saved in ``model.keras`` like any other layer's.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["Standardize"]


@keras.saving.register_keras_serializable(package="mlsp")
class Standardize(keras.layers.Layer):
    """``(x - mean) * scale`` over the last axis; ``mean`` and ``scale`` (1 / std) are
    non-trainable weights set once from the training rows (:meth:`set_moments`)."""

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.mean = self.add_weight(shape=(c,), initializer="zeros", trainable=False,
                                    name="mean")
        self.scale = self.add_weight(shape=(c,), initializer="ones", trainable=False,
                                     name="scale")

    def set_moments(self, mean, variance):
        """Mean and variance per channel (variance > 0: near-constant ones are set to 1)."""
        self.mean.assign(np.asarray(mean, "float32"))
        self.scale.assign((1.0 / np.sqrt(np.asarray(variance, "float64"))).astype("float32"))

    def call(self, x):
        return ops.multiply(ops.subtract(x, ops.cast(self.mean, x.dtype)),
                            ops.cast(self.scale, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape
