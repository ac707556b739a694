"""Pretrained backbones, the blocks MLSP taps in each, and where their weights come from.

MLSP (Hosu et al. 2019, sec. 3.1) takes the output of *every* block of an
Inception-type network: 43 blocks and 16,928 channels for InceptionResNetV2,
11 blocks and 10,048 channels for InceptionV3.  M+MNet (He et al. 2025) uses
MobileNetV2; here its blocks are the output of each inverted-residual block
(the residual ``add`` where there is one, else the projection) plus the final
1x1 convolution: 18 taps.  MobileNet (v1) taps the 13 pointwise convolutions.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import keras

from ..errors import WeightsError

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: How every supported backbone scales pixels (its ``preprocess_input``, mode "tf").
PREPROCESSING = "x / 127.5 - 1 on RGB in [0, 255] (keras.applications preprocess_input, mode 'tf')"


class WeightsUnavailableError(WeightsError):
    """The requested weights cannot be had (offline and not cached, or a missing file)."""


@dataclass(frozen=True)
class Backbone:
    """What mlsp needs to know of one keras.applications backbone."""

    name: str
    constructor: Callable
    preprocess_input: Callable
    min_side: int  # smallest input side the network accepts
    select_taps: Callable  # (keras.Model, alpha) -> list of layer names, model order
    expected_taps: Callable  # alpha -> (count, total channels), from the papers / architecture
    imagenet_file: Callable  # alpha -> (file name, url, md5 or None)
    alphas: tuple = (1.0,)
    #: The share of the summed activations (worker.activation_bytes_per_pixel) that a
    #: forward pass's peak memory was measured to reach, with a margin; 1.0 = unmeasured,
    #: the safe bound.  See PEAK_MEASURED.
    peak_share: float = 1.0


#: Peak resident-memory growth of one forward pass, measured on CPU
#: (``benchmarks/bench_iv3_speed.py --parts large``), as a share of the summed activations:
#: MobileNetV2-0.35 0.8-1.1 (TensorFlow, 500-2000 px inputs); Inception-v3 under
#: TensorFlow 0.039 (24 MP: 1.54 GB over 24 Mpx x 1,655.5 B) to 0.043 (12 MP: 0.86 GB;
#: results/iv3_speed.json "large_full_resolution"), under JAX 0.064 (24 MP: 2.55 GB) to
#: 0.091 (12 MP: 1.81 GB; results/iv3_speed_jax_{12,24}mp.json: XLA holds more at once).
#: Inception-v3's many branch, batch-norm and activation outputs are summed by the rule
#: but never alive at once.  Its ``peak_share`` 0.2 keeps 2.2x the largest measured peak
#: (JAX, 12 MP) and 4.6x TensorFlow's, and lies above the liveness bound of its graph (32
#: floats a pixel = 0.077); PyTorch is unmeasured.  The others keep 1.0 until measured.
PEAK_MEASURED = {"mobilenet_v2": (0.8, 1.1), "inception_v3": (0.039, 0.091)}


def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _taps_inception_resnet_v2(model, alpha):
    return [layer.name for layer in model.layers if "mixed" in layer.name]


def _taps_inception_v3(model, alpha):
    return [layer.name for layer in model.layers if re.fullmatch(r"mixed\d+", layer.name)]


def _taps_mobilenet_v2(model, alpha):
    names = {layer.name for layer in model.layers}
    taps = ["expanded_conv_project_BN"]
    for k in range(1, 17):
        taps.append(f"block_{k}_add" if f"block_{k}_add" in names else f"block_{k}_project_BN")
    return taps + ["out_relu"]


def _taps_mobilenet(model, alpha):
    return [f"conv_pw_{k}_relu" for k in range(1, 14)]


_MBV2_FILTERS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
_MBV1_FILTERS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]


def _expected_mobilenet_v2(alpha):
    last = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    return 18, sum(_make_divisible(int(f * alpha)) for f in _MBV2_FILTERS) + last


def _mbv2_file(alpha):
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224_no_top.h5"
    return fname, _KERAS_APPS + "mobilenet_v2/" + fname, None


def _mbv1_file(alpha):
    text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[float(alpha)]
    fname = f"mobilenet_{text}_224_tf_no_top.h5"
    return fname, _KERAS_APPS + "mobilenet/" + fname, None


BACKBONES = {
    "inception_resnet_v2": Backbone(
        "inception_resnet_v2",
        keras.applications.InceptionResNetV2,
        keras.applications.inception_resnet_v2.preprocess_input,
        75,
        _taps_inception_resnet_v2,
        lambda alpha: (43, 16928),
        lambda alpha: (
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_APPS + "inception_resnet_v2/"
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "d19885ff4a710c122648d3b5c3b684e4",
        ),
    ),
    "inception_v3": Backbone(
        "inception_v3",
        keras.applications.InceptionV3,
        keras.applications.inception_v3.preprocess_input,
        75,
        _taps_inception_v3,
        lambda alpha: (11, 10048),
        lambda alpha: (
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_APPS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "bcbd6486424b2319ff4ef7d526e38f63",
        ),
        peak_share=0.2,
    ),
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
        32,
        _taps_mobilenet_v2,
        _expected_mobilenet_v2,
        _mbv2_file,
        alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    ),
    "mobilenet": Backbone(
        "mobilenet",
        keras.applications.MobileNet,
        keras.applications.mobilenet.preprocess_input,
        32,
        _taps_mobilenet,
        lambda alpha: (13, sum(int(f * alpha) for f in _MBV1_FILTERS)),
        _mbv1_file,
        alphas=(0.25, 0.5, 0.75, 1.0),
    ),
}


def get_backbone(name: str) -> Backbone:
    key = name.lower().replace("-", "_")
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[key]


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


@dataclass(frozen=True)
class ResolvedWeights:
    name: str  # "imagenet", "none" or the file name given
    path: str | None  # a local file to load, or None for random weights
    sha256: str  # "" for random weights


def resolve_weights(backbone: Backbone, alpha: float, weights: str) -> ResolvedWeights:
    """Turn ``imagenet`` / ``bundled`` / ``none`` / a path into a local file.

    ``imagenet`` uses Keras' cache (downloading when online); ``bundled`` is the
    small MobileNetV2-0.35 ImageNet file shipped in ``mlsp/data``.
    """
    if weights is None or str(weights).lower() in ("none", "random"):
        return ResolvedWeights("none", None, "")
    if str(weights).lower() == "bundled":
        from ..data import BUNDLED_WEIGHTS

        path = BUNDLED_WEIGHTS.get((backbone.name, float(alpha)))
        if path is None:
            have = ", ".join(f"{b} alpha {a}" for b, a in BUNDLED_WEIGHTS)
            raise WeightsUnavailableError(f"no bundled weights for {backbone.name} alpha {alpha} "
                                          f"(bundled: {have})")
        return ResolvedWeights("bundled:" + path.name, str(path), sha256_file(path))
    if str(weights).lower() != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"{path}: weights file not found")
        return ResolvedWeights(path.name, str(path), sha256_file(path))
    fname, url, md5 = backbone.imagenet_file(alpha)
    cached = keras_cache_dir() / fname
    if not cached.is_file():
        host = urlparse(url).hostname
        try:
            socket.create_connection((host, 443), timeout=3).close()
        except OSError as err:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone.name} (alpha {alpha}) are not cached at {cached} "
                f"and {host} cannot be reached ({err}); download {url} into {cached.parent}/, "
                f"or pass --weights PATH (a Keras weights file), or --weights none"
            ) from None
        got = keras.utils.get_file(fname, url, cache_subdir="models", file_hash=md5)
        cached = Path(got)
    return ResolvedWeights("imagenet", str(cached), sha256_file(cached))


def build_backbone(backbone: Backbone, alpha: float, weights: ResolvedWeights, seed: int = 0):
    """The keras.applications model without its top, for inputs of any size."""
    if float(alpha) not in backbone.alphas:
        raise ValueError(f"{backbone.name} has no alpha {alpha}; choose one of {backbone.alphas}")
    kwargs = {"alpha": alpha} if len(backbone.alphas) > 1 else {}
    if weights.path is None:
        keras.utils.set_random_seed(seed)
    model = backbone.constructor(
        include_top=False, weights=None, input_shape=(None, None, 3), **kwargs
    )
    if weights.path is not None:
        try:
            model.load_weights(weights.path)
        except Exception as err:  # a file for another model or alpha, or not weights at all
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsUnavailableError(
                f"{weights.path}: cannot load as {backbone.name} (alpha {alpha}) weights: {first}"
            ) from None
    return model
