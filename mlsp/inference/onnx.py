"""A trained model as one ONNX graph: image in, MOS (and distribution) out (issue 11).

The graph holds everything ``mlsp predict`` does after decoding: the 8 MLSP test
crops (4 corners at ``crop_fraction`` of height and width, each also mirrored;
Hosu et al. 2019, sec. 3.1), the preprocessing (x / 127.5 - 1), the backbone,
every tapped block pooled as in the store, the store's float16 rounding, the
head, the average over the crops and the head's output turned into a MOS
(``tta="crops"``, the default; the scores equal the Keras path's).  ``tta="whole"``
runs the whole image once instead: about 6x less backbone work (1 pass over
H x W instead of 8 over 0.875 H x 0.875 W), but not the average the model was
validated with.

Input ``image``: uint8 RGB, shape (height, width, 3), any height and width (as
decoded, EXIF-rotated).  Outputs ``mos`` (shape (1,)) and, for distribution heads,
``distribution`` (shape (1, K)).  Keras 3's own exporter (tf2onnx on the
TensorFlow backend) writes the file; no converter of our own.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFileError, one_line
from ..outputs import OutputError, atomic_path, check_writable
from ..vocabulary import TTA_MODES, check_choice

__all__ = ["export_onnx", "predict_onnx", "score_onnx_file", "cached_export", "TTA_MODES",
           "OnnxUnavailableError"]



class OnnxUnavailableError(BackendUnavailableError):
    """The ONNX tools are missing, or the backend cannot export."""


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise OnnxUnavailableError(f"ONNX export/runtime needs {module} ({err}); fix: "
                                   f"pip install 'mlsp[onnx]'") from None


def _scorer(model_path, weights=None, tta="crops"):
    """(keras.Model taking one uint8 image, sidecar, resolved weights)."""
    import keras

    from ..extract.featurizer import Featurizer, options_from_features
    from ..extract.weights import find_weights
    from ..feature_kinds import feature_parts
    from .model_format import read_model as load_trained
    from .scoring import level_index

    check_choice("tta", tta, TTA_MODES)
    head, sidecar = load_trained(model_path)
    feats = sidecar["features"]
    model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    resolved = find_weights(feats, weights, model_dir)
    mode = feats.get("augmentation_mode", "crops")
    if tta == "crops" and mode not in ("crops", "crops+grid"):
        tta = "whole"  # a model trained on whole images: its average is the one pass
    features = Featurizer(options_from_features(feats), weights=resolved).model
    index = level_index(features.levels, sidecar).astype("int32")
    scorer = _scorer_class()(features.model, head, index, feature_parts(sidecar["pooling"]),
                        float(feats.get("crop_fraction", 0.875)), tta, sidecar)
    scorer(keras.ops.zeros((features.min_side * 2, features.min_side * 2, 3), "uint8"))
    return scorer, sidecar, resolved


def _scorer_class():
    import keras

    class MLSPScorer(keras.Model):
        """One uint8 (H, W, 3) image -> {"mos": (1,), "distribution": (1, K)}."""

        def __init__(self, features, head, index, parts, fraction, tta, sidecar):
            super().__init__(name="mlsp_scorer")
            self.features, self.head = features, head
            self.index, self.parts = index, tuple(parts)
            self.fraction, self.tta = fraction, tta
            self.mos_output = sidecar["output"] == "mos"
            t = sidecar.get("target") or {}
            self.mean, self.std = float(t.get("mean", 0.0)), float(t.get("std", 1.0))
            self.bins = (None if self.mos_output
                         else np.asarray(sidecar["bin_scores"], "float32"))

        def _crops(self, image):
            ops = keras.ops
            if self.tta == "whole":
                return image[None]
            shape = ops.shape(image)
            h, w = ops.cast(shape[0], "float64"), ops.cast(shape[1], "float64")
            ch = ops.cast(ops.floor(self.fraction * h), "int32")
            cw = ops.cast(ops.floor(self.fraction * w), "int32")
            dh, dw = ops.cast(h, "int32") - ch, ops.cast(w, "int32") - cw
            zero = ops.zeros((), "int32")
            out = []
            for top, left in ((zero, zero), (zero, dw), (dh, zero), (dh, dw)):  # MLSP order
                crop = ops.slice(image, ops.stack([top, left, zero]),
                                 ops.stack([ch, cw, ops.convert_to_tensor(3, "int32")]))
                out += [crop, ops.flip(crop, axis=1)]
            return ops.stack(out)

        def call(self, image):
            ops = keras.ops
            batch = ops.cast(self._crops(image), "float32")
            pooled = self.features(batch)
            # the store keeps float16: round the same way, then take the model's levels
            x = ops.concatenate([ops.take(ops.cast(ops.cast(pooled[p], "float16"), "float32"),
                                          self.index, axis=-1) for p in self.parts], axis=-1)
            raw = ops.mean(ops.reshape(self.head(x), (ops.shape(x)[0], -1)), axis=0,
                           keepdims=True)
            if self.mos_output:
                return {"mos": raw[:, 0] * self.std + self.mean}
            dist = raw / ops.maximum(ops.sum(raw, axis=1, keepdims=True), 1e-12)
            return {"mos": ops.sum(dist * self.bins, axis=1), "distribution": dist}

    return MLSPScorer


def export_onnx(model_path, out, weights=None, tta: str = "crops", opset: int | None = None):
    """Write ``model_path`` (a training output folder) as one ONNX file ``out``.

    Backbone weights are found as for prediction (:func:`mlsp.extract.weights.find_weights`).
    Returns the path written.  The file's metadata records the model, the weights'
    SHA-256, the crops mode and the size rules a caller must apply to tiny images.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise OnnxUnavailableError(
            f"ONNX export keeps a free image height and width on the TensorFlow backend only "
            f"(KERAS_BACKEND={keras.backend.backend()}); fix: run it with "
            f"KERAS_BACKEND=tensorflow")
    _need("tf2onnx")
    onnx = _need("onnx")
    out = check_writable(out, "ONNX export")  # before the conversion, not after it
    with _quiet():  # TensorFlow's notices while it builds the graph
        scorer, sidecar, resolved = _scorer(model_path, weights, tta)
    with atomic_path(out, "ONNX export") as tmp:
        _write_graph(onnx, keras, scorer, sidecar, resolved, model_path, tmp, opset)
    return out


def _write_graph(onnx, keras, scorer, sidecar, resolved, model_path, tmp, opset):
    """The scorer's ONNX graph with mlsp's metadata, written to ``tmp``."""
    spec = keras.InputSpec(shape=(None, None, 3), dtype="uint8", name="image")
    with _quiet():
        scorer.export(str(tmp), format="onnx", input_signature=[spec], opset_version=opset,
                      verbose=False)
    graph = onnx.load(str(tmp))
    feats = sidecar["features"]
    meta = {"mlsp_model": _fingerprint(model_path), "weights": resolved.name,
            "weights_sha256": resolved.sha256, "tta": scorer.tta,
            "input": "uint8 RGB (height, width, 3), any size",
            "max_side": int(feats.get("max_side") or 0), "min_side": int(feats.get("min_side") or 0),
            "crop_fraction": float(feats.get("crop_fraction", 0.875)),
            "output": sidecar["output"], "score_range": sidecar.get("score_range")}
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(graph, str(tmp))


@contextlib.contextmanager
def _quiet():
    """tf2onnx and TensorFlow's graph optimizer print progress and notices on stdout and on
    file descriptor 2; none of it is for an mlsp user (Python errors still propagate)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _fingerprint(model_path) -> str:
    """SHA-256 of the model file and its sidecar: an export belongs to exactly one model."""
    folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    from .model_format import MODEL_FILE, SIDECAR

    digest = hashlib.sha256()
    for name in (MODEL_FILE, SIDECAR):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


#: A model folder's own ONNX scorer, shipped with it (mlsp/data/models/*/): the 8 MLSP
#: crops, the backbone and the head in one graph (benchmarks/make_models.py writes it).
SHIPPED_ONNX = "model.onnx"


def shipped_onnx(folder) -> Path | None:
    """The folder's own ONNX scorer (:data:`SHIPPED_ONNX`) when it has one, else None."""
    path = Path(folder) / SHIPPED_ONNX
    return path if path.is_file() else None


def export_places(model_path) -> list:
    """Where a model's ONNX export may live: beside the model, then the user's cache
    (``$XDG_CACHE_HOME/mlsp/onnx/<fingerprint>``, else ``~/.cache/...``), for a model
    folder that is read-only."""
    folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [folder, cache / "mlsp" / "onnx" / _fingerprint(model_path)]


def _cache_places(model_path, tta) -> list:
    return [place / f"model.{tta}.onnx" for place in export_places(model_path)]


def existing_export(model_path, tta):
    """The model's cached ONNX file of ``tta`` (:func:`cached_export`) when one exists and
    belongs to exactly this model, else None."""
    onnx = _need("onnx")
    for path in _cache_places(model_path, tta):
        if path.is_file():
            graph = onnx.load(str(path), load_external_data=False)
            props = {p.key: json.loads(p.value) for p in graph.metadata_props}
            if props.get("mlsp_model") == _fingerprint(model_path):
                return path
    return None


def cached_export(model_path, weights, tta) -> Path:
    """The model's ONNX file, exported once (next to the model, or in the user's cache when
    that folder cannot be written) and exported again when the model changes."""
    found = existing_export(model_path, tta)
    if found is not None:
        return found
    refusals = []
    for path in _cache_places(model_path, tta):
        try:
            check_writable(path, "ONNX export")
        except OutputError as err:
            refusals.append(str(err))
            continue
        return export_onnx(model_path, path, weights=weights, tta=tta)
    raise OutputError(f"cannot write the ONNX export beside the model nor in the cache: "
                      f"{refusals[0]}; set XDG_CACHE_HOME to a writable folder")


def predict_onnx(model_path, items, weights=None, tta="crops", progress=True) -> list[dict]:
    """Score ImageItems with onnxruntime: the same rows as ``predict_images``."""
    _need("onnxruntime")
    return score_onnx_file(cached_export(model_path, weights, tta), items, progress)


def score_onnx_file(path, items, progress=True, model_folder=None) -> list[dict]:
    """Score ImageItems with an exported ONNX file; needs onnxruntime only (no Keras, no
    onnx).  ``model_folder``: refuse the file unless it was exported from that model."""
    ort = _need("onnxruntime")
    from tqdm.auto import tqdm

    from ..extract.augment import fit_scale, rescale
    from ..images.decode import decode_image

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    if model_folder is not None and meta.get("mlsp_model") != _fingerprint(model_folder):
        raise ModelFileError(f"{path}: exported from another version of the model in "
                         f"{model_folder}; export it again (mlsp export)")
    names = [o.name for o in session.get_outputs()]
    rows = []
    for it in tqdm(items, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        row = {"id": it.id, "path": str(it.path), "score": None}
        if it.error:
            rows.append({**row, "error": it.error})
            continue
        try:
            image = decode_image(str(it.path))
            scale = fit_scale(*image.shape[:2], meta["min_side"], meta["max_side"] or None,
                              "crops" if meta["tta"] == "crops" else "whole",
                              meta["crop_fraction"])
            out = dict(zip(names, session.run(None, {session.get_inputs()[0].name:
                                                      rescale(image, scale)})))
            row["score"] = float(out["mos"].reshape(-1)[0])
            if "distribution" in out:
                row["distribution"] = [float(v) for v in out["distribution"].reshape(-1)]
        except Exception as err:  # one unreadable file must not stop the others
            row["error"] = one_line(err)
        rows.append(row)
    return rows
