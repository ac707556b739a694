"""Training a head on stored MLSP features (Hosu et al. 2019, sec. 3.3).

:func:`train` aligns labels with a feature store (by id), splits train / val (/ test),
prepares the targets (:mod:`.targets`), trains with Adam and the MLSP schedule drawing
one random stored augmentation per image and epoch (sec. 3.1; :mod:`.fit`), scores every
image by averaging over all stored augmentations (sec. 3.1) and measures it (with a
constant predictor and a ridge baseline for reference).  It keeps everything in memory;
:func:`train_head` also writes the model, its sidecar, the history, metrics, predictions
and plots (:mod:`.report`).  Every option and default: :class:`.config.TrainConfig`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluation.reports import fmt
from ..heads.registry import AUTO_HEAD, get_head
from ..inference.model_format import MODEL_FILE, make_sidecar
from ..inference.trained_head import TrainedHead, accuracy_threshold
from ..labels.split import align_and_split
from ..stores.features import FeatureStore
from ..stores.reader import StoreFeatures
from .config import AUTO_ALL_BELOW, TrainConfig, resolve_augment
from .fit import feature_moments, fit_head, fit_ridge
from .targets import prepare_targets

__all__ = ["TrainResult", "train", "train_head", "TrainConfig", "AUTO_ALL_BELOW",
           "resolve_augment"]


@dataclass
class TrainResult:
    """What a training run gives: the trained head (``.trained``), its Keras model and
    sidecar, the per-epoch history, metrics per split, every image's prediction."""

    out_dir: Path | None
    model: object
    sidecar: dict
    history: dict
    metrics: dict
    predictions: dict  # ids, split, mos_true, mos_pred, dist_pred (or None)
    alignment: str
    seconds: float
    files: list = field(default_factory=list)
    trained: TrainedHead | None = None

    def summary(self) -> str:
        head = self.sidecar["head"]
        where = f"{head} model saved to {self.out_dir / MODEL_FILE}" \
            if self.out_dir is not None else f"trained {head}"
        if self.history.get("loss"):
            lines = [f"{where} ({len(self.history['loss'])} epochs, best epoch "
                     f"{self.sidecar['train']['best_epoch'] + 1}, {self.seconds:.0f} s)"]
        else:  # a closed-form head (ridge)
            lines = [f"{where} (closed form, penalty {self.sidecar['train']['ridge_alpha']:g}"
                     f", {self.seconds:.0f} s)"]
        for part in ("val", "test"):
            m = self.metrics.get(part)
            if not m:
                continue
            base = self.metrics.get("baseline_ridge", {}).get(part) or {}
            const = self.metrics.get("constant", {}).get(part) or {}
            ref = "" if head == "ridge" else f" | ridge SRCC {fmt(base.get('srcc'))}"
            lines.append(f"{part:4s} n={m['n']}: SRCC {fmt(m['srcc'])} PLCC {fmt(m['plcc'])} "
                         f"acc {fmt(m['accuracy'])} RMSE {fmt(m['rmse'])}{ref} | constant "
                         f"RMSE {fmt(const.get('rmse'))}" + (
                             " (held out, then refit on train + val)"
                             if head == "ridge" and part == "val" else ""))
        if self.metrics.get("selection"):
            lines.insert(1, self.metrics["selection"]["line"])
        verdict = self.metrics.get("verdict")
        if verdict:
            lines.append(verdict)
        return "\n".join(lines)


def _metrics(mos_true, mos_pred, threshold, dist_true=None, dist_pred=None):
    from ..evaluation.metrics import evaluate_predictions

    if len(mos_true) == 0:
        return None
    return evaluate_predictions(mos_true, mos_pred, threshold=threshold,
                                dist_true=dist_true, dist_pred=dist_pred)


def _config(config, options) -> TrainConfig:
    base = config if config is not None else TrainConfig()
    return TrainConfig.from_options(**{**base.as_dict(), **options}).resolved()


def train(store, labels, config: TrainConfig | None = None, *, progress: bool = False,
          verbose: bool = False, **options) -> TrainResult:
    """Train a head on the features of ``store`` (a path or FeatureStore) for ``labels``
    (a :class:`mlsp.labels.Labels` or a label file); nothing is written, nothing printed
    unless ``progress`` (one line an epoch; ``verbose``: with the feeder's counters).

    Options: ``config`` and / or keyword options of :class:`.config.TrainConfig` (head,
    levels, output, features, objective, loss, precision, epochs, batch_size, lr, ...).
    Labels are matched to store rows by id; unmatched / failed images are left out.
    Without a split in the labels ``val_fraction`` of the images validate (auto: 10% on
    small sets, 5% as in sec. 3.3 from 20,000 images; :func:`.config.regime`);
    ``test_ids`` / ``test_fraction`` set a test part.  Bad options raise
    :class:`mlsp.errors.OptionError` before anything is read.
    """
    cfg = _config(config, options)
    if cfg.head == AUTO_HEAD:  # nested selection on the training part, then the winner
        from .selection import train_selected

        return train_selected(store, labels, cfg, progress=progress, verbose=verbose)
    spec = get_head(cfg.head)
    import keras

    start = time.monotonic()
    keras.utils.set_random_seed(int(cfg.seed))
    store_path = Path(store.path if isinstance(store, FeatureStore) else store)
    with FeatureStore.open(store_path) as fs:
        lab, al = align_and_split(labels, fs, cfg.val_fraction, cfg.seed, cfg.test_ids,
                                  cfg.test_fraction)
        store_config = fs.config
        wide_size = int(store_config.get("pool_wide", 0) or 0)
    report = al.report()
    if progress:
        print(report)
    rows = al.store_index
    split = np.asarray(lab.split, dtype=object)
    masks = tuple(split == s for s in ("train", "val", "test"))
    train_m, val_m, test_m = masks
    if train_m.sum() < 2:
        raise ValueError(f"only {int(train_m.sum())} training images after alignment/split")
    cfg = cfg.for_size(int(train_m.sum()))  # "auto" lr / input standardization
    thr = accuracy_threshold(lab.score_range)
    targets = prepare_targets(lab, cfg, train_m, thr)
    feats = StoreFeatures(store_path, cfg.levels, cfg.features, memory_limit=cfg.memory_limit,
                          progress=progress)
    try:
        if spec.closed_form:
            augment = "mean"  # features averaged over the stored augmentations
            fit = fit_ridge(spec, cfg, feats, rows, targets, np.flatnonzero(train_m))
        else:
            augment = resolve_augment(cfg.augment, int(train_m.sum()))
            moments = feature_moments(feats, rows[train_m]) if cfg.normalize_inputs else None
            fit = fit_head(spec, cfg, feats, rows, targets, np.flatnonzero(train_m),
                           np.flatnonzero(val_m), lab.mos[val_m], wide_size, augment, moments,
                           progress=progress, verbose=verbose)
        record = _training_record(cfg, fit, augment, feats, lab, masks, targets)
        sidecar = make_sidecar(
            name=cfg.name or cfg.head, head=cfg.head, output=cfg.output, n_bins=targets.n_bins,
            bin_scores=targets.bin_scores, pooling=cfg.features, wide_size=wide_size,
            levels=[lv.name for lv in feats.levels],
            level_channels=[lv.channels for lv in feats.levels], store_config=store_config,
            store_path=store_path, mean=targets.mean, std=targets.std,
            score_range=list(lab.score_range), threshold=thr, train=record)
        trained = TrainedHead(fit.model, sidecar)
        mos_pred, dist_pred = trained.score_rows(feats, rows, fit.batch_size)
        if spec.closed_form and val_m.any():  # val scored above, held out; then refit on all
            fit, mos_pred = _refit_closed_form(spec, cfg, feats, rows, targets, masks, trained,
                                               mos_pred, fit.batch_size)
            sidecar["train"].update(n_fit=int((train_m | val_m).sum()),
                                    ridge_alpha=fit.history["ridge_alpha"][0])
        metrics = {"alignment": report, "constant": {}, "baseline_ridge": {}}
        for part, m in zip(("train", "val", "test"), masks):
            dt = lab.distribution[m] if (lab.distribution is not None and dist_pred is not None) \
                else None
            metrics[part] = _metrics(lab.mos[m], mos_pred[m], thr, dt,
                                     None if dt is None else dist_pred[m])
            metrics["constant"][part] = _metrics(lab.mos[m], np.full(int(m.sum()), targets.mean),
                                                 thr)
        if cfg.baseline:
            metrics["baseline_ridge"] = _ridge(feats if cfg.features == "narrow" else None,
                                               store_path, cfg, rows, lab, masks, thr, progress)
        metrics["verdict"] = "" if spec.closed_form else ridge_verdict(metrics)
    finally:
        feats.close()
    result = TrainResult(out_dir=None, model=fit.model, sidecar=sidecar, history=fit.history,
                         metrics=metrics,
                         predictions={"ids": lab.ids, "split": split, "mos_true": lab.mos,
                                      "mos_pred": mos_pred, "dist_pred": dist_pred},
                         alignment=report, seconds=time.monotonic() - start, trained=trained)
    trained.training = result
    return result


def _refit_closed_form(spec, cfg, feats, rows, targets, masks, trained, mos_pred, batch):
    """A closed-form head (ridge) has no schedule to validate, so its validation images are
    first held out (the reported 'val' figure is a held-out one), then the saved model is
    refit on training + validation images; test rows are scored by the refit model."""
    train_m, val_m, test_m = masks
    fit = fit_ridge(spec, cfg, feats, rows, targets, np.flatnonzero(train_m | val_m))
    trained.model = fit.model
    refit_pred, _ = trained.score_rows(feats, rows, batch)
    return fit, np.where(val_m, mos_pred, refit_pred)


def ridge_verdict(metrics: dict) -> str:
    """One line when the head does not beat the ridge reference on validation (else "")."""
    head = (metrics.get("val") or {}).get("srcc")
    ridge = ((metrics.get("baseline_ridge") or {}).get("val") or {}).get("srcc")
    if head is None or ridge is None or not (np.isfinite(head) and np.isfinite(ridge)):
        return ""
    if head > ridge:
        return ""
    return (f"note: the head does not beat the ridge baseline on validation (SRCC {head:.3f} "
            f"vs {ridge:.3f}); with few images, compare them with --folds 5")


def _training_record(cfg, fit, augment, feats, lab, masks, targets) -> dict:
    """The sidecar's ``train`` part: the settings and facts of the run."""
    dist = fit.dist
    train_m, val_m, test_m = masks
    return {
        "epochs_run": len(fit.history.get("loss", [])), "epochs": int(cfg.epochs),
        "best_epoch": fit.best_epoch, "batch_size": int(fit.batch_size),
        "lr": float(cfg.lr), "augment": augment, "seed": int(cfg.seed), "width": cfg.width,
        "pool_kernels": cfg.pool_kernels,
        "dropout": list(cfg.dropout), "step_epochs": cfg.step_epochs,
        "patience": cfg.patience, "min_lr": cfg.min_lr, "stop_patience": cfg.stop_patience,
        "normalize_inputs": bool(cfg.normalize_inputs),
        "regime": "small set" if int(train_m.sum()) < AUTO_ALL_BELOW else "paper",
        "feed": "memory" if feats.in_memory else "store",
        "distribute": {k: (v if k != "devices" else [str(d) for d in v])
                       for k, v in dist.items()} if cfg.distribute else None,
        "n_train": int(train_m.sum()), "n_val": int(val_m.sum()),
        "n_test": int(test_m.sum()), "labels_source": lab.source,
        "objective": cfg.objective, "loss": cfg.loss, "precision": cfg.precision,
        "precision_switch_epoch": fit.switch_epoch, "sample_weights": cfg.sample_weights,
        "binary_margin": float(cfg.binary_margin), "tags": [int(t) for t in targets.vocab],
        "ridge_alpha": (fit.history.get("ridge_alpha") or [None])[0]}


def _ridge(feats, store_path, cfg, rows, lab, masks, thr, progress):
    """Ridge regression on narrow features averaged over augmentations (the reference).

    Fair to the ridge: it is fit on the training images for the train / val figures, then
    refit on training + validation images (all the head's own fitting and schedule saw)
    for the test figures; RidgeCV picks its penalty by leave-one-out on its fit rows.
    """
    from ..heads.baseline import fit_baseline

    own = feats is None
    if own:
        feats = StoreFeatures(store_path, cfg.levels, "narrow", memory_limit=cfg.memory_limit,
                              progress=progress)

    def fit(mask):
        idx = np.flatnonzero(mask)
        if idx.size > cfg.baseline_max_rows:
            idx = np.sort(np.random.default_rng(cfg.seed).choice(idx, cfg.baseline_max_rows,
                                                                 replace=False))
        return fit_baseline(feats.mean_over_augmentations(rows[idx]), lab.mos[idx],
                            kind="ridge"), int(idx.size)

    def score(pipe, mask):
        idx = np.flatnonzero(mask)
        return _metrics(lab.mos[idx], pipe.predict(feats.mean_over_augmentations(rows[idx])),
                        thr) if idx.size else None

    try:
        train_m, val_m, test_m = masks
        pipe, n_fit = fit(train_m)
        out = {"fit_rows": n_fit, "train": score(pipe, train_m), "val": score(pipe, val_m)}
        if test_m.any():
            if val_m.any():
                pipe, n_fit = fit(train_m | val_m)
            out["test"], out["test_fit_rows"] = score(pipe, test_m), n_fit
        else:
            out["test"] = None
        return out
    finally:
        if own:
            feats.close()


def train_head(store_path, labels, head: str = TrainConfig.head, out_dir="mlsp-model",
               progress: bool = True, plots: bool = True, name: str | None = None,
               verbose: bool = False, **options) -> TrainResult:
    """:func:`train`, then write everything to ``out_dir`` (made only when there is
    something to write): model.keras, model.json, metrics.json, history.csv,
    predictions.csv and, with ``plots``, scatter.png and learning_curves.png.  With
    ``progress`` it prints the alignment, one line an epoch and a summary.
    Options: those of :class:`.config.TrainConfig`.
    """
    from ..outputs import check_folder_writable
    from .report import write_training_report

    out = check_folder_writable(out_dir, "training output folder", make=False)  # before training
    result = train(store_path, labels, head=head, name=name or out.name, progress=progress,
                   verbose=verbose, **options)
    result.out_dir = out
    result.files = write_training_report(out, result, Path(store_path).name, plots)
    result.trained.path = out
    if progress:
        print(result.summary())
    return result
