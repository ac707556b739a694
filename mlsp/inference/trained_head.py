"""A trained head: the object that training returns, ``mlsp.load`` reads, and that scores
images, scores a store and evaluates on labels.

As in training (Hosu et al. 2019, sec. 3.1), an image's score is the average of the
predictions over all its augmentations, computed with exactly the backbone, weights and
augmentation settings recorded in the model's sidecar (:mod:`.model_format`); scoring
itself is :mod:`.scoring`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..stores.features import FeatureStore
from ..stores.reader import StoreFeatures
from . import scoring
from .model_format import MODEL_FILE, check_compatible, model_folder, read_model, write_model
from .scoring import accuracy_threshold, outputs_to_scores, predict_averaged

__all__ = ["TrainedHead", "load", "outputs_to_scores", "accuracy_threshold", "predict_images",
           "predict_store", "evaluate_trained", "predict_averaged"]


class TrainedHead:
    """A Keras head plus its sidecar (what features it reads, how outputs become scores).

    ``TrainedHead.load(folder)`` / ``mlsp.load(folder)`` read one; :meth:`save` writes
    ``model.keras`` + ``model.json``; :meth:`predict` scores image files,
    :meth:`predict_store` stored images, :meth:`evaluate` gives metrics on labels.
    """

    def __init__(self, model, sidecar: dict, path=None):
        self.model, self.sidecar = model, sidecar
        self.path = None if path is None else Path(path)
        self.training = None  # the TrainResult (or CVResult) when trained, None when loaded
        self._scratch = None  # a temporary folder holding an unsaved head's files

    @property
    def metrics(self):
        """Metrics of the training run that made this head: per split (``mlsp.train``), or
        the cross-validation summary (``folds=K``); None when loaded."""
        if self.training is None:
            return None
        found = getattr(self.training, "metrics", None)
        return found if found is not None else self.training.summary()

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
        deviation (:mod:`mlsp.inference.uncertainty`)."""
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

    def folder(self) -> Path:
        """A folder holding this head's ``model.keras`` + ``model.json``: where it was saved
        or loaded from, else a temporary one written once (what the ONNX exporter reads)."""
        if self.path is not None and (self.path / MODEL_FILE).is_file():
            return self.path
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="mlsp-head-"))
            write_model(self._scratch, self.model, self.sidecar)
        return self._scratch

    def predict(self, images, weights=None, progress: bool = False, mlsp_model=None,
                runtime: str = "keras") -> list:
        """Score image files / folders; one dict per image (see :func:`predict_images`).
        ``runtime="onnx"``: the same scores from the head's ONNX export (onnxruntime)."""
        return scoring.score_images(self, images, weights=weights, progress=progress,
                                    mlsp_model=mlsp_model, runtime=runtime)

    def export(self, path, tta: str = "crops", weights=None, opset: int | None = None) -> Path:
        """Write this head with its backbone as one ONNX file (image in, score out; see
        :func:`mlsp.inference.onnx.export_onnx`); the path written."""
        import shutil

        from .onnx import existing_export, export_onnx

        found = existing_export(self.folder(), tta) if weights is None and opset is None else None
        if found is not None:  # ``predict(runtime="onnx")`` already exported this head
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return Path(shutil.copyfile(found, path))
        return export_onnx(self.folder(), path, weights=weights, tta=tta, opset=opset)

    def predict_store(self, store, ids=None, batch_size: int = 128,
                      progress: bool = False) -> list:
        """Score a store's images (all, or ``ids``); see :func:`predict_store`."""
        return scoring.score_store(self, store, ids=ids, batch_size=batch_size,
                                   progress=progress)

    def evaluate(self, store, labels, split: str | None = None, batch_size: int = 128,
                 progress: bool = False) -> dict:
        """Metrics on the labelled images of ``store`` (all, or one ``split``): a dict with
        ``metrics`` (SRCC, PLCC, accuracy, MAE, RMSE, EMD), ``alignment``, ``split``."""
        return _evaluate(self, store, labels, split, batch_size, progress)[0]


def _evaluate(head, store, labels, split, batch_size, progress):
    """(result dict, the labels evaluated, predicted MOS, predicted distributions or None,
    the per-photo uncertainty columns)."""
    from ..evaluation.metrics import evaluate_predictions
    from ..labels import aligned_labels

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
    from ..evaluation.plots import plot_scatter
    from ..evaluation.reports import write_json, write_predictions
    from ..outputs import check_folder_writable

    if out_dir is not None:  # before the evaluation, not after it
        check_folder_writable(out_dir, "evaluation folder")
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


def predict_images(model, paths_or_folders, weights=None, progress: bool = True,
                   mlsp_model=None, runtime: str = "keras", skipped=None) -> list[dict]:
    """Score image files with a trained head or its folder (:func:`.scoring.score_images`);
    ``skipped``: a Counter that receives what folder walks skipped (sidecars, text)."""
    return scoring.score_images(_as_head(model), paths_or_folders, weights=weights,
                                progress=progress, mlsp_model=mlsp_model, runtime=runtime,
                                skipped=skipped)


def predict_store(model, store_path, ids=None, batch_size: int = 128,
                  progress: bool = True) -> list[dict]:
    """Score a store's images with a trained head or its folder (:func:`.scoring.score_store`)."""
    return scoring.score_store(_as_head(model), store_path, ids=ids, batch_size=batch_size,
                               progress=progress)
