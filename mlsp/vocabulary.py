"""mlsp's vocabulary: every choice a user makes by name, and its check, in one Keras-free
module.  The library validates with it and the command line builds its choices from it.

Backbones (MLSP Table 1 and the MobileNets), the stored augmentations (MLSP sec. 3.1's 8
crops; M+MNet sec. 3.4's Corner Grid), pooling kinds and the feature datasets they give
(MLSP sec. 3.1 area pooling; M+MNet Eq. 1-2 ForePool / BackPool; MTP-NasNet's SPP),
head outputs, losses (MSE; EMD / Re-EMD, M+MNet Eq. 3-4), objectives (Sheng et al. 2018,
Eq. 3-8), precisions (M+MNet Eq. 5), sample weights (MTP-NasNet sec. 3.3), the feed
modes, TTA modes of the ONNX export and prediction runtimes.  Heads are listed by their
registry (:data:`mlsp.heads.registry.HEAD_NAMES`), the only head list.
"""
from __future__ import annotations

from .errors import OptionError
from .feature_kinds import FEATURE_KINDS, GRID_KINDS, KIND_POOLING, feature_parts

__all__ = ["BACKBONES", "AUGMENTATIONS", "POOLING_KINDS", "KIND_POOLING", "FEATURE_KINDS",
           "GRID_KINDS", "WIDE_POOLING", "OUTPUTS", "LOSSES", "OBJECTIVES", "PRECISIONS",
           "SAMPLE_WEIGHTS", "FEED_MODES", "TTA_MODES", "RUNTIMES", "PREDICT_RUNTIMES", "ENGINES", "canonical",
           "check_choice", "normalize_pooling", "check_pooling", "feature_parts"]

#: keras.applications backbones with their tapped blocks (mlsp.extract.backbones builds them).
BACKBONES = ("inception_resnet_v2", "inception_v3", "mobilenet_v2", "mobilenet")
#: Stored augmentations: 8 corner crops x flips (MLSP), those + Corner Grid (M+MNet), whole.
AUGMENTATIONS = ("crops", "crops+grid", "whole")
#: Extractor pooling kinds, canonical order; "area" (narrow + wide) is always computed.
POOLING_KINDS = ("area", "fore", "back", "spp")
#: Pooling kinds that pool to the wide P x P grid (so they need ``wide_size > 0``).
WIDE_POOLING = ("fore", "back")
OUTPUTS = ("mos", "distribution")
LOSSES = ("mse", "emd", "re_emd")
OBJECTIVES = ("mlsp", "mp_avg", "mp_min", "mp_ada")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
SAMPLE_WEIGHTS = ("none", "variance")
#: Stored augmentations fed per epoch: one random (MLSP sec. 3.1), all, or by set size.
FEED_MODES = ("auto", "random", "all")
TTA_MODES = ("crops", "whole")
RUNTIMES = ("keras", "onnx")
#: ``mlsp predict``: auto = a model's own model.onnx through onnxruntime when both are
#: there (the shipped models: no TensorFlow start-up), else Keras.
PREDICT_RUNTIMES = ("auto",) + RUNTIMES
ENGINES = ("local", "ray")


def canonical(name) -> str:
    """``single-3fc`` and ``single_3fc`` name the same value."""
    return str(name).strip().replace("-", "_")


def check_choice(option: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else an OptionError naming the option."""
    if value not in choices:
        raise OptionError(f"{option} must be one of {', '.join(map(str, choices))}; got "
                          f"{value!r}")
    return value


def normalize_pooling(pooling) -> tuple:
    """Pooling kinds as a canonical tuple: "area" first and always, no repeats.

    ``pooling``: an iterable of kinds or a comma-separated string ("area,fore,spp").
    """
    if pooling is None:
        pooling = ("area",)
    if isinstance(pooling, str):
        pooling = [p for p in pooling.split(",")]
    kinds = {str(p).strip().lower() for p in pooling} - {""}
    unknown = sorted(kinds - set(POOLING_KINDS))
    if unknown:
        raise OptionError(f"unknown pooling kind(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(POOLING_KINDS)}")
    return tuple(k for k in POOLING_KINDS if k in kinds or k == "area")


def check_pooling(pooling, wide_size) -> tuple:
    """:func:`normalize_pooling`, and the one rule tying kinds to sizes: ForePool and
    BackPool pool to the wide grid (M+MNet Eq. 1-2), so they need ``wide_size > 0``."""
    kinds = normalize_pooling(pooling)
    if set(WIDE_POOLING) & set(kinds) and not int(wide_size or 0):
        raise OptionError("pooling fore/back pool to the wide size; wide_size cannot be 0")
    return kinds
