"""The MLSP feature model: a backbone, every tapped block pooled, concatenated.

Hosu et al. 2019, sec. 3.1 and Fig. 1-2: each block's activations are resized
by area averaging to 1x1 (narrow, b = 16,928 channels for InceptionResNetV2)
and to 5x5 (wide), then concatenated along the channel axis.  Both are
computed in one forward pass.  Preprocessing (x / 127.5 - 1) runs inside the
model, so raw RGB pixels go in and pooled features come out.

Optional extra poolings of the same taps, in the same pass (``pooling``):
"fore" / "back" = M+MNet ForePool / BackPool (He et al., sec. 3.1.1, Eq. 1-2) to
wide_size x wide_size ("wide_fore", "wide_back"); "spp" = MTP-NasNet spatial
pyramid pooling 1x1 + 3x3 + 4x4 (Sun and Zhou, sec. 3.2) to (26, C) ("spp").
"""
from __future__ import annotations

import keras
import numpy as np

from ..stores.features import Level
from ..vocabulary import normalize_pooling
from .backbones import PREPROCESSING, ResolvedWeights, build_backbone, get_backbone, resolve_weights
from .pooling import AreaPooling2D, BackPool2D, ForeBackPool2D, ForePool2D, SpatialPyramidPooling

#: SPP grids (MTP-NasNet sec. 3.2) and the cells they give.
SPP_LEVELS = (1, 3, 4)
SPP_CELLS = sum(v * v for v in SPP_LEVELS)


class MLSPModel:
    """Raw RGB batches (B, H, W, 3) of any H, W in; narrow (B, C) and wide (B, P, P, C) out.

    ``pooling`` adds "wide_fore" / "wide_back" (B, P, P, C) and "spp" (B, 26, C).
    """

    def __init__(self, backbone="inception_resnet_v2", alpha=1.0, weights="imagenet",
                 wide_size=5, seed=0, pooling=("area",)):
        self.backbone = get_backbone(backbone)
        self.alpha = float(alpha)
        self.wide_size = int(wide_size)
        self.pooling = normalize_pooling(pooling)
        if not self.wide_size and {"fore", "back"} & set(self.pooling):
            raise ValueError("fore/back pooling needs a wide size > 0 (it pools to P x P)")
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
        size = (self.wide_size,) * 2
        if "fore" in self.pooling and "back" in self.pooling:  # one softmax for both
            fore, back = zip(*[ForeBackPool2D(size)(m) for m in maps])
            outputs["wide_fore"] = keras.layers.Concatenate(axis=-1)(list(fore))
            outputs["wide_back"] = keras.layers.Concatenate(axis=-1)(list(back))
        else:
            for kind, layer in (("fore", ForePool2D), ("back", BackPool2D)):
                if kind in self.pooling:
                    pooled = [layer(size)(m) for m in maps]
                    outputs[f"wide_{kind}"] = keras.layers.Concatenate(axis=-1)(pooled)
        if "spp" in self.pooling:
            spp = [SpatialPyramidPooling(SPP_LEVELS)(m) for m in maps]
            outputs["spp"] = keras.layers.Concatenate(axis=-1)(spp)
        self.model = keras.Model(pixels, outputs, name="mlsp")
        self._predict = _compile_predict(self.model)

    @property
    def feature_shapes(self) -> dict:
        """Per-row shape (one image, one augmentation) of every output, by name."""
        p, c = self.wide_size, self.channels
        shapes = {"narrow": (c,)}
        if p:
            shapes["wide"] = (p, p, c)
        for kind in ("fore", "back"):
            if kind in self.pooling:
                shapes[f"wide_{kind}"] = (p, p, c)
        if "spp" in self.pooling:
            shapes["spp"] = (SPP_CELLS, c)
        return shapes

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
    XLA would compile again for every new image size.  On JAX, ``jax.jit`` of the
    stateless model compiles once per input shape (JAX has no shape-polymorphic
    convolutions); compiled shapes are kept in JAX's persistent compilation cache
    (``$MLSP_JAX_CACHE`` or ``~/.cache/mlsp/jax``) so a resumed or repeated job does
    not pay again.  With many distinct photo sizes, TensorFlow is the fast backend
    for extraction (see README, Speed).  Other backends (torch) run eagerly.
    """
    if keras.backend.backend() == "tensorflow":
        import os

        import tensorflow as tf  # TensorFlow-only speed-up behind the portable interface

        # on a GPU, cuDNN would benchmark its algorithms again for every new image size
        os.environ.setdefault("TF_CUDNN_USE_AUTOTUNE", "0")

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

    if keras.backend.backend() == "jax":
        return _jax_predict(model)

    def run(batch):
        out = model(batch.astype("float32"), training=False)
        return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}

    return run


def _jax_predict(model):
    import os

    import jax

    if not jax.config.jax_compilation_cache_dir:
        cache = os.environ.get("MLSP_JAX_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "mlsp", "jax")
        try:
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        except Exception:  # an older JAX without the persistent cache: compile per run
            pass
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable, frozen, x):
        out, _ = model.stateless_call(trainable, frozen, x.astype("float32"), training=False)
        return out

    def run(batch):
        out = forward(trainable, frozen, batch)
        return {k: np.asarray(v) for k, v in out.items()}

    return run
