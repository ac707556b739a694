"""Do ``model.keras`` and ``model.json`` belong together, and does the sidecar make sense?

A ``model.keras`` from another training copied under a ``model.json`` loads, runs and gives
plausible scores that are wrong (the sidecar's target scaling, levels and bin scores are
another model's).  At save time :func:`fingerprint` records, in the sidecar, a SHA-256 of
the model's weights (every variable's shape, dtype and bytes, in order) with the output
shape; at load time :func:`check_belongs` recomputes it and refuses a mismatch in one line.
Model folders written before this check (no ``model_fingerprint`` in ``model.json``) load
without it.  :func:`check_sidecar` refuses sidecar fields that cannot mean anything (an
unknown head or feature kind, a non-numeric target scaling) before they reach the code that
uses them.  Keras is only touched through the model object passed in.
"""
from __future__ import annotations

import hashlib
import math
import numbers

import numpy as np

from ..errors import ModelFileError

__all__ = ["fingerprint", "check_belongs", "check_sidecar", "FINGERPRINT_KEY"]

FINGERPRINT_KEY = "model_fingerprint"


def fingerprint(model) -> dict:
    """``{"weights_sha256", "n_weights", "output_shape"}`` of a Keras model."""
    digest = hashlib.sha256()
    weights = model.weights
    for w in weights:
        a = np.ascontiguousarray(np.asarray(w))
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    return {"weights_sha256": digest.hexdigest(), "n_weights": len(weights),
            "output_shape": [[None if d is None else int(d) for d in o.shape] for o in outputs]}


def check_belongs(model, sidecar: dict, model_file, side_file) -> None:
    """Refuse a ``model.keras`` whose weights are not those recorded in ``model.json``."""
    want = sidecar.get(FINGERPRINT_KEY)
    if not want:
        return  # a folder written before fingerprints were recorded: nothing to compare
    got = fingerprint(model)
    if got["weights_sha256"] != want.get("weights_sha256"):
        what = ("its output shape is " + str(got["output_shape"]) + ", the sidecar's "
                + str(want.get("output_shape"))) if got["output_shape"] != want.get(
            "output_shape") else (f"its weights hash to {got['weights_sha256'][:12]}, the "
                                  f"sidecar recorded {str(want.get('weights_sha256'))[:12]}")
        raise ModelFileError(f"{model_file} does not belong to {side_file}: {what}; the two "
                             f"files come from different trainings (copy both from the same "
                             f"training folder)")


def _finite(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def check_sidecar(sidecar: dict, side_file) -> None:
    """One-line ModelFileError for a sidecar field that cannot be used, naming it."""
    from ..feature_kinds import FEATURE_KINDS
    from ..heads.registry import HEAD_NAMES, canonical

    def bad(field, cause):
        raise ModelFileError(f"{side_file}: field {field!r} {cause}")

    if canonical(sidecar.get("head", "")) not in HEAD_NAMES:
        bad("head", f"is {sidecar.get('head')!r}, not a head this mlsp knows "
                    f"({', '.join(HEAD_NAMES)})")
    if sidecar.get("output") not in ("mos", "distribution"):
        bad("output", f"is {sidecar.get('output')!r}, not 'mos' or 'distribution'")
    if sidecar.get("pooling", "narrow") not in FEATURE_KINDS:
        bad("pooling", f"is {sidecar.get('pooling')!r}, not one of {', '.join(FEATURE_KINDS)}")
    feats = sidecar.get("features")
    if not isinstance(feats, dict) or not isinstance(feats.get("backbone"), str):
        bad("features", "has no backbone name")
    if not _finite(feats.get("alpha")) or feats["alpha"] <= 0:
        bad("features.alpha", f"is {feats.get('alpha')!r}, not a positive number")
    levels, channels = sidecar.get("levels"), sidecar.get("level_channels")
    if (not isinstance(levels, list) or not levels
            or not all(isinstance(v, str) for v in levels)):
        bad("levels", "is not a list of level names")
    if (not isinstance(channels, list) or len(channels) != len(levels)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                       for c in channels)):
        bad("level_channels", "is not a positive whole number per level")
    target = sidecar.get("target")
    if sidecar["output"] == "mos":
        if not isinstance(target, dict):
            bad("target", "is missing: the MOS scaling to undo")
        for key in ("mean", "std"):
            if not _finite(target.get(key)):
                bad(f"target.{key}", f"is {target.get(key)!r}, not a finite number")
        if target["std"] <= 0:
            bad("target.std", f"is {target['std']!r}, not positive")
    else:
        bins = sidecar.get("bin_scores")
        if not isinstance(bins, list) or len(bins) < 2 or not all(_finite(v) for v in bins):
            bad("bin_scores", "is not a list of finite numbers (one per bin)")
    rng = sidecar.get("score_range")
    if rng is not None and (not isinstance(rng, list) or len(rng) != 2
                            or not all(_finite(v) for v in rng)):
        bad("score_range", f"is {rng!r}, not [low, high]")
