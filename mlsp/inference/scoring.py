"""Scoring with a trained head: stored features (averaged over the stored augmentations,
Hosu et al. 2019 sec. 3.1) and image files (features computed in memory by the extraction
featurizer with exactly the recorded backbone, weights and crops), model outputs turned into
scores.  ``head``: a :class:`~mlsp.inference.trained_head.TrainedHead` (model, sidecar,
path); this module never builds one.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import one_line
from ..feature_kinds import feature_parts
from ..stores.features import DONE, FAILED, FeatureStore, StoreError
from ..stores.reader import StoreFeatures, test_augmentations

__all__ = ["accuracy_threshold", "outputs_to_scores", "predict_averaged", "score_images",
           "score_store", "expand_inputs", "find_weights", "level_index", "RUNTIMES"]

RUNTIMES = ("keras", "onnx")


def accuracy_threshold(score_range) -> float:
    """Binary-accuracy threshold: 5 on AVA's 1-10 scale (MLSP sec. 4), else the midpoint."""
    lo, hi = (float(v) for v in score_range)
    return 5.0 if (lo, hi) == (1.0, 10.0) else (lo + hi) / 2.0


def outputs_to_scores(raw: np.ndarray, sidecar: dict):
    """Model outputs (already averaged over augmentations) -> (mos, distribution or None):
    the z-scored MOS un-standardised, or a distribution's expectation over its bin scores."""
    raw = np.asarray(raw, np.float64)
    if sidecar["output"] == "mos":
        t = sidecar["target"]
        return raw.reshape(-1) * t["std"] + t["mean"], None
    from ..evaluation.metrics import distribution_mean

    return distribution_mean(raw, sidecar["bin_scores"])


def predict_averaged(model, features: StoreFeatures, rows, batch_size: int = 128) -> np.ndarray:
    """Per-image model outputs averaged over all stored augmentations (MLSP sec. 3.1).

    Returns (n, outputs) float64: every augmentation of every row is scored,
    then the A predictions of an image are averaged (Corner Grid rows excluded).
    """
    import keras

    rows = np.asarray(rows, np.int64)
    keep = test_augmentations(features)
    a = len(keep)
    per_batch = max(1, batch_size // a)
    outs = []
    for s in range(0, rows.size, per_batch):
        x = features.get(rows[s:s + per_batch])  # (b, A, ...)
        if a != x.shape[1]:
            x = x[:, keep]
        b = x.shape[0]
        y = model.predict_on_batch(x.reshape((b * a,) + x.shape[2:]))
        y = keras.ops.convert_to_numpy(y).reshape(b, a, -1)
        outs.append(y.astype(np.float64).mean(axis=1))
    if not outs:
        return np.zeros((0, int(model.output.shape[-1])), np.float64)
    return np.concatenate(outs)


def expand_inputs(paths_or_folders, skipped=None) -> list:
    """ImageItems for files and (recursively) folders, in the order given.  What a folder
    walk skips (sidecars, text) is counted in ``skipped`` (a Counter, reason -> count) when one is given, else logged (INFO); items that cannot be stored or
    opened carry their ``error`` (see :func:`mlsp.images.sources.from_folder`)."""
    import logging
    from collections import Counter

    from ..images.sources import ImageItem, describe_skipped, from_folder, storable_item

    if isinstance(paths_or_folders, (str, os.PathLike)):
        paths_or_folders = [paths_or_folders]
    own = skipped is None
    items, skipped = [], Counter() if own else skipped
    for p in paths_or_folders:
        p = Path(p)
        if p.is_dir():
            items += from_folder(p, skipped=skipped)
        elif p.exists() or p.is_symlink():  # a FIFO or a device fails when read, by name
            items.append(ImageItem(p.stem, str(p)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if own and skipped:
        logging.getLogger(__name__).info(describe_skipped(skipped))  # silent library
    return [storable_item(it) for it in items]


def find_weights(features: dict, hint=None, model_dir=None):
    """The weights file whose SHA-256 is the recorded one (:func:`mlsp.extract.weights.
    find_weights`, the one lookup for predict, evaluate, export and the Python API)."""
    from ..extract.weights import find_weights as lookup

    return lookup(features, hint, model_dir)


def _row(id_, path, mos, dist, error=None, **uncertainty):
    out = {"id": id_, "path": path, "score": None if mos is None else float(mos)}
    out.update({k: float(v) for k, v in uncertainty.items()})
    if dist is not None:
        out["distribution"] = [float(v) for v in dist]
    if error:
        out["error"] = error
    return out


def score_images(head, paths_or_folders, weights=None, progress: bool = True,
                 mlsp_model=None, runtime: str = "keras", skipped=None) -> list[dict]:
    """Score image files: features computed in memory by the extraction featurizer
    (:class:`mlsp.extract.featurizer.Featurizer`, the recorded backbone, weights and crops),
    predictions averaged over the augmentations (MLSP sec. 3.1).

    Returns one dict per image: id, path, score (None on failure), distribution
    (distribution heads), error (on failure).  ``runtime="onnx"``: the same scores from
    the head's ONNX export run by onnxruntime (``pip install 'mlsp[onnx]'``).
    """
    from ..vocabulary import check_choice

    check_choice("runtime", runtime, RUNTIMES)
    items = expand_inputs(paths_or_folders, skipped)
    if runtime == "onnx":
        from .onnx import predict_onnx

        return predict_onnx(head.folder(), items, weights=weights, progress=progress)
    from tqdm.auto import tqdm

    from ..extract.featurizer import Featurizer, options_from_features

    sidecar = head.sidecar
    feats = sidecar["features"]
    opts = options_from_features(feats)
    if mlsp_model is None:
        featurizer = Featurizer(opts, weights=find_weights(feats, weights, head.path))
    else:
        featurizer = Featurizer(opts, model=mlsp_model)
    head.check_compatible(featurizer.config())
    index = level_index(featurizer.levels, sidecar)
    parts = feature_parts(sidecar["pooling"])
    out = []
    results = iter(featurizer.results([it.path for it in items if not it.error]))
    for it in tqdm(items, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        if it.error:  # not a regular file, an unstorable name: named, not read
            out.append(_row(it.id, str(it.path), None, None, it.error))
            continue
        res = next(results)
        if not res.ok:  # one unreadable file must not stop the others
            out.append(_row(it.id, str(it.path), None, None, one_line(res.error)))
            continue
        # features are float16 as in a store (identical scores); a composite kind
        # (wide_foreback) is its parts' selected channels side by side, as in training
        x = np.concatenate([res.features[part].astype(np.float32)[..., index]
                            for part in parts], axis=-1)
        mos, dist, extra = _score_crops(head, x)
        out.append(_row(it.id, str(it.path), mos[0], None if dist is None else dist[0],
                        **{k: v[0] for k, v in extra.items()}))
    return out


def _score_crops(head, x):
    """One image's crops -> (mos, dist, uncertainty columns), each of length 1."""
    from .uncertainty import ensemble_scores, uncertainty_columns

    folds = head.fold_model()
    model = head.model if folds is None else folds
    raw = np.asarray(model.predict_on_batch(x)).reshape(len(x), -1).mean(0)
    if folds is None:
        mos, dist = outputs_to_scores(raw[None], head.sidecar)
        return mos, dist, uncertainty_columns(None, dist, head.sidecar)
    mos, dist, per_fold = ensemble_scores(raw[None], head.sidecar)
    return mos, dist, uncertainty_columns(per_fold, dist, head.sidecar)


def level_index(levels, sidecar) -> np.ndarray:
    """Channel indices of the sidecar's levels in a backbone's concatenated features."""
    by_name = {lv.name: lv for lv in levels}
    parts = []
    for name in sidecar["levels"]:
        if name not in by_name:
            raise StoreError(f"backbone has no level {name!r} recorded in the model")
        lv = by_name[name]
        parts.append(np.arange(lv.offset, lv.offset + lv.channels))
    return np.concatenate(parts)


def _store_positions(store_path, all_ids, wanted) -> np.ndarray:
    """Store rows of ``wanted`` names: an id as stored (ids may contain '/'), else a file
    name whose path without extension, or whose stem, is an id."""
    pos = {s: i for i, s in enumerate(all_ids)}
    sel, missing = [], []
    for name in wanted:
        name = str(name)
        for key in (name, str(Path(name).with_suffix("")), Path(name).stem):
            if key in pos:
                sel.append(pos[key])
                break
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"{store_path}: no image with id {missing[0]!r}"
                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return np.array(sel, np.int64)


def score_store(head, store_path, ids=None, batch_size: int = 128,
                progress: bool = True) -> list[dict]:
    """Score the extracted images of a store (all, or those in ``ids``: ids or file names),
    averaging the predictions over the stored augmentations.  Failed / pending images get
    score None."""
    with FeatureStore.open(store_path) as store:
        head.check_compatible(store)
        all_ids, paths, status, errors = store.ids, store.paths, store.status, store.errors
    sel = np.arange(len(all_ids)) if ids is None else _store_positions(store_path, all_ids, ids)
    done = sel[status[sel] == DONE]
    feats = StoreFeatures(store_path, head.sidecar["levels"], head.sidecar["pooling"],
                          progress=progress)
    try:
        order = np.argsort(done, kind="stable")
        mos, dist, extra = head.score_rows_uncertain(feats, done[order], batch_size)
    finally:
        feats.close()
    by_row = {int(r): k for k, r in enumerate(done[order])}
    out = []
    for r in sel.tolist():
        if r in by_row:
            k = by_row[r]
            out.append(_row(all_ids[r], paths[r], mos[k], None if dist is None else dist[k],
                            **{c: v[k] for c, v in extra.items()}))
        else:
            why = errors[r] if status[r] == FAILED else "not extracted yet (pending)"
            out.append(_row(all_ids[r], paths[r], None, None, why or "failed"))
    return out
