"""Scoring photos for a person: which model, which runtime, and answers she can use
(a rank, and the percentile of each score among the model's own training photos).

The shipped models carry their ONNX scorer (``model.onnx``: the 8 MLSP crops, the
backbone, the head and the average of Hosu et al. 2019, sec. 3.1, in one graph), so
scoring with them needs onnxruntime only: no Keras, no TensorFlow start-up.  Any other
model folder, or ``runtime="keras"``, goes through :func:`mlsp.inference.trained_head.predict_images`.
Importing this module imports neither Keras nor a backend.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .. import zoo
from ..vocabulary import PREDICT_RUNTIMES as RUNTIMES

__all__ = ["RUNTIMES", "split_model_args", "uses_onnxruntime", "needs_backend", "score",
           "rank_rows", "top_rows"]

def split_model_args(args, default: str = zoo.DEFAULT_MODEL):
    """``(model, photos)`` from ``mlsp predict``'s arguments: the first is the model when
    it is a model folder, or a listed name that is not also a file or folder here;
    otherwise every argument is a photo and the model is ``default``."""
    args = [str(a) for a in args]
    if args and (zoo.is_model_folder(args[0])
                 or (args[0] in zoo.entries() and not Path(args[0]).exists())):
        return args[0], args[1:]
    return default, args


def uses_onnxruntime(folder, runtime: str = "auto") -> bool:
    """True when ``folder``'s own ``model.onnx`` will score (onnxruntime installed)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    from .onnx import shipped_onnx

    return (runtime != "keras" and shipped_onnx(folder) is not None
            and importlib.util.find_spec("onnxruntime") is not None)


def needs_backend(inputs=(), store=None, runtime="auto", **_) -> bool:
    """Whether ``mlsp predict`` with these options imports Keras (the CLI imports it, quietly,
    before the command only then)."""
    if store:
        return True
    try:
        folder = zoo.resolve(split_model_args(inputs)[0], download=False)
    except (zoo.ZooError, OSError):
        return False  # the command itself reports it, without a backend
    return not uses_onnxruntime(folder, runtime)


def score(model, photos, runtime: str = "auto", weights=None, progress: bool = False,
          skipped=None):
    """``(rows, folder)``: one dict per photo (id, path, score or None, error) scored by
    ``model`` (a listed name or a model folder); ``skipped``: a Counter that receives what
    folder walks skipped (sidecars, text)."""
    folder = zoo.resolve(model)
    if uses_onnxruntime(folder, runtime):
        from .onnx import score_onnx_file, shipped_onnx
        from .scoring import expand_inputs

        rows = score_onnx_file(shipped_onnx(folder), expand_inputs(photos, skipped), progress,
                               model_folder=folder)
    else:
        from .trained_head import predict_images

        rows = predict_images(folder, photos, weights=weights, progress=progress,
                              runtime="onnx" if runtime == "onnx" else "keras",
                              skipped=skipped)
    return rows, folder


def rank_rows(rows, reference=None) -> list[dict]:
    """The rows best first, each with ``rank`` (1 = best; ties share the rank) and
    ``percentile`` (share of ``reference`` scored lower; None without one); rows without
    a score last, with rank None."""
    scored = sorted((r for r in rows if r.get("score") is not None),
                    key=lambda r: -r["score"])
    failed = [r for r in rows if r.get("score") is None]
    pct = zoo.percentiles([r["score"] for r in scored], reference) if reference else \
        [None] * len(scored)
    out, previous, rank = [], None, 0
    for i, (r, p) in enumerate(zip(scored, pct)):
        if r["score"] != previous:
            rank, previous = i + 1, r["score"]
        out.append({"rank": rank, **r, "percentile": p})
    return out + [{"rank": None, **r, "percentile": None} for r in failed]


def top_rows(ranked, k: int | None) -> list[dict]:
    """The ``k`` best scored rows (every row, failures last, when ``k`` is None)."""
    if k is None:
        return ranked
    return [r for r in ranked if r["rank"] is not None][:k]
