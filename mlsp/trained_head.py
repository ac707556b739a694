"""A trained head: the object that training returns, ``mlsp.load`` reads, and that scores
images, scores a store and evaluates on labels.

As in training (Hosu et al. 2019, sec. 3.1), an image's score is the average of the
predictions over all its augmentations, computed with exactly the backbone, weights and
augmentation settings recorded in the model's sidecar (:mod:`mlsp.model_format`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .model_format import (check_compatible, extract_options, model_folder, read_model,
                           write_model)
from .stores.features import DONE, FAILED, FeatureStore, StoreError
from .training.data import StoreFeatures, feature_parts, predict_averaged

__all__ = ["TrainedHead", "load", "outputs_to_scores", "accuracy_threshold", "predict_images",
           "predict_store", "evaluate_trained", "find_weights", "expand_inputs"]


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
    from .evaluation.metrics import distribution_mean

    return distribution_mean(raw, sidecar["bin_scores"])


class TrainedHead:
    """A Keras head plus its sidecar (what features it reads, how outputs become scores).

    ``TrainedHead.load(folder)`` / ``mlsp.load(folder)`` read one; :meth:`save` writes
    ``model.keras`` + ``model.json``; :meth:`predict` scores image files,
    :meth:`predict_store` stored images, :meth:`evaluate` gives metrics on labels.
    """

    def __init__(self, model, sidecar: dict, path=None):
        self.model, self.sidecar = model, sidecar
        self.path = None if path is None else Path(path)
        self.training = None  # the TrainResult (history, metrics, predictions) when trained

    @property
    def metrics(self):
        """Metrics per split of the training run that made this head (None when loaded)."""
        return None if self.training is None else self.training.metrics

    def __repr__(self):
        s = self.sidecar
        return (f"TrainedHead({s.get('name')!r}: {s['head']} on {s['pooling']} features of "
                f"{s['features'].get('backbone')}, output {s['output']})")

    @property
    def name(self) -> str:
        return self.sidecar.get("name", "")

    @property
    def head(self) -> str:
        return self.sidecar["head"]

    @classmethod
    def load(cls, path) -> "TrainedHead":
        """Read a trained head from its folder (or its ``model.keras``)."""
        model, sidecar = read_model(path)
        return cls(model, sidecar, model_folder(path)[0])

    def save(self, folder) -> list:
        """Write ``model.keras`` and ``model.json`` into ``folder``; the files written."""
        files = write_model(folder, self.model, self.sidecar)
        self.path = Path(folder)
        return files

    def check_compatible(self, store) -> None:
        """StoreError unless ``store`` (FeatureStore, path or config) has this head's features."""
        check_compatible(self.sidecar, store)

    def score_rows(self, features: StoreFeatures, rows, batch_size=128):
        """(mos, distribution or None) per store row, averaged over all stored augmentations."""
        return outputs_to_scores(predict_averaged(self.model, features, rows, batch_size),
                                 self.sidecar)

    def score_rows_uncertain(self, features: StoreFeatures, rows, batch_size=128):
        """(mos, distribution or None, {"spread", "score_std"}) per store row: a fold
        ensemble's spread between its fold models, a distribution's predicted standard
        deviation (:mod:`mlsp.uncertainty`)."""
        from .uncertainty import ensemble_scores, uncertainty_columns

        folds = self.fold_model()
        if folds is None:
            mos, dist = self.score_rows(features, rows, batch_size)
            return mos, dist, uncertainty_columns(None, dist, self.sidecar)
        mos, dist, per_fold = ensemble_scores(
            predict_averaged(folds, features, rows, batch_size), self.sidecar)
        return mos, dist, uncertainty_columns(per_fold, dist, self.sidecar)

    def fold_model(self):
        """The fold models' outputs side by side (fold ensembles), else None; built once."""
        if not hasattr(self, "_folds"):
            from .uncertainty import fold_outputs_model

            self._folds = fold_outputs_model(self.model, self.sidecar)
        return self._folds

    def predict(self, images, weights=None, progress: bool = False, mlsp_model=None) -> list:
        """Score image files / folders; one dict per image (see :func:`predict_images`)."""
        return predict_images(self, images, weights=weights, progress=progress,
                              mlsp_model=mlsp_model)

    def predict_store(self, store, ids=None, batch_size: int = 128,
                      progress: bool = False) -> list:
        """Score a store's images (all, or ``ids``); see :func:`predict_store`."""
        return predict_store(self, store, ids=ids, batch_size=batch_size, progress=progress)

    def evaluate(self, store, labels, split: str | None = None, batch_size: int = 128,
                 progress: bool = False) -> dict:
        """Metrics on the labelled images of ``store`` (all, or one ``split``): a dict with
        ``metrics`` (SRCC, PLCC, accuracy, MAE, RMSE, EMD), ``alignment``, ``split``."""
        return _evaluate(self, store, labels, split, batch_size, progress)[0]


def _evaluate(head, store, labels, split, batch_size, progress):
    """(result dict, the labels evaluated, predicted MOS, predicted distributions or None,
    the per-photo uncertainty columns)."""
    from .evaluation.metrics import evaluate_predictions
    from .labels import aligned_labels

    with FeatureStore.open(store) as fs:
        head.check_compatible(fs)
        lab, al = aligned_labels(labels, fs)
    rows = al.store_index
    if split is not None:
        if lab.split is None:
            raise ValueError(f"{lab.source or 'labels'}: no split column, so no {split!r} "
                             "split (add a split column, or pass the test ids with "
                             "--test-list)")
        keep = lab.split_mask(split)
        if not keep.any():
            raise ValueError(f"{lab.source or 'labels'}: no extracted image in split "
                             f"{split!r}")
        lab, rows = lab.subset(keep), rows[keep]
    feats = StoreFeatures(store, head.sidecar["levels"], head.sidecar["pooling"],
                          progress=progress)
    try:
        mos_pred, dist_pred, extra = head.score_rows_uncertain(feats, rows, batch_size)
    finally:
        feats.close()
    use_dist = dist_pred is not None and lab.distribution is not None \
        and lab.distribution.shape == dist_pred.shape
    metrics = evaluate_predictions(lab.mos, mos_pred,
                                   threshold=accuracy_threshold(lab.score_range),
                                   dist_true=lab.distribution if use_dist else None,
                                   dist_pred=dist_pred if use_dist else None)
    result = {"model": str(head.path or head.name), "store": str(store),
              "alignment": al.report(), "split": split or "all", "metrics": metrics}
    return result, lab, mos_pred, dist_pred, extra


def load(path) -> TrainedHead:
    """A trained head from its folder (``mlsp.load``)."""
    return TrainedHead.load(path)


def _as_head(model) -> TrainedHead:
    return model if isinstance(model, TrainedHead) else TrainedHead.load(model)


def evaluate_trained(model_path, store_path, labels, out_dir=None, batch_size=128,
                     split: str | None = None, progress: bool = True) -> dict:
    """Metrics of a trained model on the labelled images of a store (all, or one split);
    with ``out_dir``: evaluation.json, predictions.csv and scatter.png there."""
    from .evaluation.plots import plot_scatter
    from .evaluation.reports import write_json, write_predictions

    head = _as_head(model_path)
    res, lab, mos_pred, dist_pred, extra = _evaluate(head, store_path, labels, split,
                                                     batch_size, progress)
    res["model"] = str(model_path) if not isinstance(model_path, TrainedHead) else res["model"]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "evaluation.json", res)
        sp = lab.split if lab.split is not None else np.full(len(lab), "", dtype=object)
        write_predictions(out / "predictions.csv", lab.ids, sp, lab.mos, mos_pred, dist_pred,
                          extra)
        plot_scatter(out / "scatter.png", {split or "all": (lab.mos, mos_pred, res["metrics"])},
                     lab.score_range, f"{head.name} on {Path(store_path).name}")
    return res


# -- scoring image files and stores (was mlsp.training.predict) ---------------------------
def expand_inputs(paths_or_folders) -> list:
    """ImageItems for files and (recursively) folders, in the order given."""
    from .images.sources import ImageItem, from_folder

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


def find_weights(features: dict, hint=None, model_dir=None):
    """The weights file whose SHA-256 is the recorded one (:func:`mlsp.extract.weights.
    find_weights`, the one lookup for predict, evaluate, export and the Python API)."""
    from .extract.weights import find_weights as lookup

    return lookup(features, hint, model_dir)


def _row(id_, path, mos, dist, error=None, **uncertainty):
    out = {"id": id_, "path": path, "score": None if mos is None else float(mos)}
    out.update({k: float(v) for k, v in uncertainty.items()})
    if dist is not None:
        out["distribution"] = [float(v) for v in dist]
    if error:
        out["error"] = error
    return out


def predict_images(model_path, paths_or_folders, weights=None, progress: bool = True,
                   mlsp_model=None, runtime: str = "keras") -> list[dict]:
    """Score image files: features extracted in memory with the recorded backbone and
    weights, predictions averaged over all augmentations (MLSP sec. 3.1).

    ``model_path``: a TrainedHead or its folder.  Returns one dict per image: id, path,
    score (None on failure), distribution (distribution heads), error (on failure).
    ``runtime="onnx"``: the same scores from the model's ONNX export run by onnxruntime
    (``pip install 'mlsp[onnx]'``; needs the model's folder).
    """
    if runtime == "onnx":
        from .export.onnx import predict_onnx

        folder = model_path.path if isinstance(model_path, TrainedHead) else model_path
        return predict_onnx(folder, expand_inputs(paths_or_folders), weights=weights,
                            progress=progress)
    if runtime != "keras":
        raise ValueError(f"runtime must be 'keras' or 'onnx', got {runtime!r}")
    from tqdm.auto import tqdm

    from .extract.extractor import store_config
    from .extract.model import MLSPModel
    from .extract.worker import activation_bytes_per_pixel, default_max_memory, prepare, run_model

    head = _as_head(model_path)
    model, sidecar = head.model, head.sidecar
    feats = sidecar["features"]
    opts = extract_options(feats)
    if mlsp_model is None:
        w = find_weights(feats, weights, head.path)
        mlsp_model = MLSPModel(opts.backbone, opts.alpha, w, opts.wide_size, opts.seed,
                               pooling=opts.pooling)
    check_compatible(sidecar, store_config(mlsp_model, opts))
    index = _level_index(mlsp_model.levels, sidecar)
    parts = feature_parts(sidecar["pooling"])
    items = expand_inputs(paths_or_folders)
    # the extractor's memory rule: crops within the activation budget, passes capped by it
    per_pixel = activation_bytes_per_pixel(mlsp_model)
    max_pixels = max(1, min(opts.max_batch_pixels,
                            int((opts.max_memory or default_max_memory()) // per_pixel)))
    out = []
    for it in tqdm(items, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            batch, _, _, _ = prepare(str(it.path), opts, mlsp_model.min_side, per_pixel)
            pooled = run_model(mlsp_model, batch, max_pixels)
            # the store keeps float16: round the same way for identical scores; a composite
            # kind (wide_foreback) is its parts' selected channels side by side, as in training
            x = np.concatenate([pooled[part].astype(np.float16).astype(np.float32)[..., index]
                                for part in parts], axis=-1)
            mos, dist, extra = _score_crops(head, x)
            out.append(_row(it.id, str(it.path), mos[0], None if dist is None else dist[0],
                            **{k: v[0] for k, v in extra.items()}))
        except Exception as err:  # one unreadable file must not stop the others
            msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
            out.append(_row(it.id, str(it.path), None, None, msg))
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


def _level_index(levels, sidecar) -> np.ndarray:
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


def predict_store(model_path, store_path, ids=None, batch_size: int = 128,
                  progress: bool = True) -> list[dict]:
    """Score the extracted images of a store (all, or those in ``ids``: ids or file names),
    averaging the predictions over the stored augmentations.  Failed / pending images get
    score None."""
    head = _as_head(model_path)
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
