"""Scoring with a trained head: from image files (features computed in memory) or a store.

As in training (Hosu et al. 2019, sec. 3.1), an image's score is the average
of the predictions over all its augmentations, computed with exactly the
backbone, weights and augmentation settings recorded in the model's sidecar.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..extract.weights import find_weights  # the one lookup of the recorded weights (issue 12)
from ..stores.features import FeatureStore, StoreError
from .data import StoreFeatures, feature_parts
from .trainer import check_compatible, load_trained, outputs_to_scores, score_rows

__all__ = ["predict_images", "predict_store", "find_weights", "expand_inputs"]


def expand_inputs(paths_or_folders) -> list:
    """ImageItems for files and (recursively) folders, in the order given."""
    from ..images.sources import ImageItem, from_folder

    if isinstance(paths_or_folders, (str, os.PathLike)):
        paths_or_folders = [paths_or_folders]
    items = []
    for p in paths_or_folders:
        p = Path(p)
        if p.is_dir():
            items += from_folder(p)
        elif p.is_file():
            items.append(ImageItem(p.stem, str(p)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return items


def _options(features: dict):
    from ..extract.extractor import ExtractOptions

    return ExtractOptions(
        backbone=features["backbone"], alpha=float(features["alpha"]),
        # Corner Grid rows ("crops+grid") train a head; scores average the plain crops
        augmentation={"crops+grid": "crops"}.get(features.get("augmentation_mode", "crops"),
                                                 features.get("augmentation_mode", "crops")),
        pooling=tuple(features.get("pooling_kinds") or ("area",)),
        crop_fraction=float(features.get("crop_fraction", 0.875)),
        wide_size=int(features.get("pool_wide", 0) or 0),
        max_side=int(features.get("max_side") or 0) or None,
        seed=max(0, int(features.get("weights_seed", 0) or 0)),
    )


def _row(id_, path, mos, dist, error=None):
    out = {"id": id_, "path": path, "score": None if mos is None else float(mos)}
    if dist is not None:
        out["distribution"] = [float(v) for v in dist]
    if error:
        out["error"] = error
    return out


def predict_images(model_path, paths_or_folders, weights=None, progress: bool = True,
                   mlsp_model=None, runtime: str = "keras") -> list[dict]:
    """Score image files: features extracted in memory with the recorded backbone and
    weights, predictions averaged over all augmentations (MLSP sec. 3.1).

    Returns one dict per image: id, path, score (None on failure), distribution
    (distribution heads), error (on failure).  ``runtime="onnx"``: the same scores from
    the model's ONNX export run by onnxruntime (``pip install 'mlsp[onnx]'``).
    """
    if runtime == "onnx":
        from ..export.onnx import predict_onnx

        return predict_onnx(model_path, expand_inputs(paths_or_folders), weights=weights,
                            progress=progress)
    if runtime != "keras":
        raise ValueError(f"runtime must be 'keras' or 'onnx', got {runtime!r}")
    from tqdm.auto import tqdm

    from ..extract.extractor import prepare, run_model, store_config
    from ..extract.model import MLSPModel

    model, sidecar = load_trained(model_path)
    feats = sidecar["features"]
    opts = _options(feats)
    if mlsp_model is None:
        w = find_weights(feats, weights, Path(model_path) if Path(model_path).is_dir()
                         else Path(model_path).parent)
        mlsp_model = MLSPModel(opts.backbone, opts.alpha, w, opts.wide_size, opts.seed,
                                pooling=opts.pooling)
    check_compatible(sidecar, store_config(mlsp_model, opts))
    index = _level_index(mlsp_model.levels, sidecar)
    parts = feature_parts(sidecar["pooling"])
    items = expand_inputs(paths_or_folders)
    out = []
    for it in tqdm(items, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            batch, _, _, _ = prepare(str(it.path), opts, mlsp_model.min_side)
            pooled = run_model(mlsp_model, batch, opts.max_batch_pixels)
            # the store keeps float16: round the same way for identical scores; a composite
            # kind (wide_foreback) is its parts' selected channels side by side, as in training
            x = np.concatenate([pooled[part].astype(np.float16).astype(np.float32)[..., index]
                                for part in parts], axis=-1)
            raw = np.asarray(model.predict_on_batch(x)).reshape(len(x), -1).mean(axis=0)
            mos, dist = outputs_to_scores(raw[None], sidecar)
            out.append(_row(it.id, str(it.path), mos[0], None if dist is None else dist[0]))
        except Exception as err:  # one unreadable file must not stop the others
            msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
            out.append(_row(it.id, str(it.path), None, None, msg))
    return out


def _level_index(levels, sidecar) -> np.ndarray:
    by_name = {lv.name: lv for lv in levels}
    parts = []
    for name in sidecar["levels"]:
        if name not in by_name:
            raise StoreError(f"backbone has no level {name!r} recorded in the model")
        lv = by_name[name]
        parts.append(np.arange(lv.offset, lv.offset + lv.channels))
    return np.concatenate(parts)


def predict_store(model_path, store_path, ids=None, batch_size: int = 128,
                  progress: bool = True) -> list[dict]:
    """Score the extracted images of a store (all, or those in ``ids``), averaging the
    predictions over the stored augmentations.  Failed / pending images get score None."""
    model, sidecar = load_trained(model_path)
    with FeatureStore.open(store_path) as store:
        check_compatible(sidecar, store)
        all_ids, paths, status, errors = store.ids, store.paths, store.status, store.errors
    sel = np.arange(len(all_ids))
    if ids is not None:
        pos = {s: i for i, s in enumerate(all_ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise KeyError(f"{store_path}: no image with id {missing[0]!r}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        sel = np.array([pos[i] for i in ids], np.int64)
    done = sel[status[sel] == 1]
    feats = StoreFeatures(store_path, sidecar["levels"], sidecar["pooling"], progress=progress)
    try:
        order = np.argsort(done, kind="stable")
        mos, dist = score_rows(model, sidecar, feats, done[order], batch_size)
    finally:
        feats.close()
    by_row = {int(r): k for k, r in enumerate(done[order])}
    out = []
    for r in sel.tolist():
        if r in by_row:
            k = by_row[r]
            out.append(_row(all_ids[r], paths[r], mos[k], None if dist is None else dist[k]))
        else:
            why = errors[r] if status[r] == -1 else "not extracted yet (pending)"
            out.append(_row(all_ids[r], paths[r], None, None, why or "failed"))
    return out
