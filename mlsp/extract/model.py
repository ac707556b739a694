"""The MLSP feature model: a backbone, every tapped block pooled, concatenated.

Hosu et al. 2019, sec. 3.1 and Fig. 1-2: each block's activations are resized
by area averaging to 1x1 (narrow, b = 16,928 channels for InceptionResNetV2)
and to 5x5 (wide), then concatenated along the channel axis.  Both are
computed in one forward pass.  Preprocessing (x / 127.5 - 1) runs inside the
model, so raw RGB pixels go in and pooled features come out.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from .backbones import PREPROCESSING, ResolvedWeights, build_backbone, get_backbone, resolve_weights
from .pooling import AreaPooling2D


@dataclass(frozen=True)
class Level:
    name: str
    channels: int
    offset: int


class MLSPModel:
    """Raw RGB batches (B, H, W, 3) of any H, W in; narrow (B, C) and wide (B, P, P, C) out."""

    def __init__(self, backbone="inception_resnet_v2", alpha=1.0, weights="imagenet",
                 wide_size=5, seed=0):
        self.backbone = get_backbone(backbone)
        self.alpha = float(alpha)
        self.wide_size = int(wide_size)
        self.weights: ResolvedWeights = (
            weights if isinstance(weights, ResolvedWeights)
            else resolve_weights(self.backbone, self.alpha, weights)
        )
        self.seed = int(seed)
        base = build_backbone(self.backbone, self.alpha, self.weights, seed=self.seed)
        names = self.backbone.select_taps(base, self.alpha)
        taps = [base.get_layer(n).output for n in names]
        channels = [int(t.shape[-1]) for t in taps]
        expected = self.backbone.expected_taps(self.alpha)
        if (len(names), sum(channels)) != tuple(expected):
            raise RuntimeError(
                f"{self.backbone.name}: tapped {len(names)} blocks / {sum(channels)} channels, "
                f"expected {expected[0]} / {expected[1]} (Keras changed the architecture?)"
            )
        offsets = np.concatenate([[0], np.cumsum(channels)[:-1]]).astype(int)
        self.levels = [Level(n, c, int(o)) for n, c, o in zip(names, channels, offsets)]
        self.channels = int(sum(channels))

        tap_model = keras.Model(base.inputs, taps, name=f"{self.backbone.name}_taps")
        pixels = keras.Input((None, None, 3), dtype="float32", name="rgb")
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(pixels)
        maps = tap_model(x)
        narrow = [AreaPooling2D((1, 1))(m) for m in maps]
        outputs = {
            "narrow": keras.layers.Reshape((self.channels,))(
                keras.layers.Concatenate(axis=-1)(narrow)
            )
        }
        if self.wide_size:
            wide = [AreaPooling2D((self.wide_size,) * 2)(m) for m in maps]
            outputs["wide"] = keras.layers.Concatenate(axis=-1)(wide)
        self.model = keras.Model(pixels, outputs, name="mlsp")
        self._predict = _compile_predict(self.model)

    @property
    def min_side(self) -> int:
        return self.backbone.min_side

    @property
    def preprocessing(self) -> str:
        return PREPROCESSING

    def __call__(self, batch: np.ndarray) -> dict:
        """Features of a uint8 (or float) RGB batch, as float32 numpy arrays."""
        return self._predict(np.asarray(batch))


def _compile_predict(model):
    """A forward pass that traces once for every input size.

    On TensorFlow, a ``tf.function`` with an input signature of unknown batch,
    height and width is traced once; XLA stays off (``jit_compile=False``), as
    XLA would compile again for every new image size.  Other backends run the
    model eagerly (JAX's ``jit`` would also compile per shape).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # TensorFlow-only speed-up behind the portable interface

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
            jit_compile=False,
        )
        def forward(x):
            return model(tf.cast(x, tf.float32), training=False)

        def run(batch):
            if batch.dtype != np.uint8:
                return {k: keras.ops.convert_to_numpy(v)
                        for k, v in model(batch.astype("float32"), training=False).items()}
            return {k: v.numpy() for k, v in forward(batch).items()}

        return run

    def run(batch):
        out = model(batch.astype("float32"), training=False)
        return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}

    return run
