"""Training with the extensions from M+MNet, MTP-NasNet and the multi-patch paper.

:func:`mlsp.training.trainer.train_head` hands over to :func:`train_extended` when any
of these is asked for (the plain MLSP path stays in trainer.py):

- ``head="mnet"`` (M+MNet sec. 3.1, :mod:`mlsp.heads.mnet`) or ``"multitask"``
  (MTP-NasNet sec. 3.1, :mod:`mlsp.heads.multitask`), or ``"cells_3fc"`` (a neutral
  head for any (cells..., C) feature kind, used by the pooling ablation);
- ``features=`` another stored kind: ``wide_fore``, ``wide_back``, ``spp``, or
  ``wide_foreback`` (fore and back concatenated on channels, for ``mnet``);
- ``loss="emd" | "re_emd"`` (M+MNet Eq. 3-4; implies distribution output) or ``"mse"``;
- ``objective="mp_avg" | "mp_min" | "mp_ada"`` (Sheng et al. Eq. 3-8,
  :mod:`mlsp.training.objectives`);
- ``sample_weights="variance"`` (MTP-NasNet sec. 3.3, :func:`variance_weights`);
- ``precision=`` (M+MNet sec. 3.3, :mod:`mlsp.training.precision`).

Everything else (alignment, split, schedule, scoring by the mean over augmentations,
files written) is as in ``train_head``; the model saved is the single-output test-time
head, so ``mlsp evaluate`` / ``predict`` work unchanged for narrow / wide features.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import h5py
import keras
import numpy as np

from .. import __version__
from ..stores.features import IDENTITY_KEYS, FeatureStore, StoreError
from .data import FeatureSequence, StoreFeatures, predict_averaged
from .objectives import OBJECTIVES, AllAugmentationsSequence, MultiPatchModel
from .precision import (PRECISIONS, DelayedEntryRule, OverflowMonitor, copy_optimizer_state,
                        make_optimizer, policy_scope)
from .schedule import MLSPSchedule

__all__ = ["train_extended", "variance_weights", "KindFeatures", "FEATURE_KINDS", "LOSSES",
           "SAMPLE_WEIGHTS", "needs_extended", "build_cells_3fc"]

FEATURE_KINDS = ("narrow", "wide", "wide_fore", "wide_back", "spp", "wide_foreback")
LOSSES = ("mse", "emd", "re_emd")
SAMPLE_WEIGHTS = (None, "none", "variance")


def needs_extended(head="single_3fc", objective="mlsp", loss=None, precision="float32",
                   sample_weights=None, features=None) -> bool:
    """True when ``train_head`` must hand over to :func:`train_extended`."""
    return (head in ("mnet", "multitask", "cells_3fc") or objective not in (None, "mlsp")
            or loss not in (None, "mse", "emd") or precision not in (None, "float32")
            or sample_weights not in (None, "none") or features not in (None, "narrow", "wide"))


# -- MTP-NasNet sec. 3.3 --------------------------------------------------------------------
def variance_weights(distribution, bin_scores, train_mask=None) -> np.ndarray:
    """Per-image reliability weights from the rating distributions' variance (MTP-NasNet 3.3).

    The paper states the rule (larger variance -> less credible -> smaller weight) but
    gives no formula.  We use a smoothed inverse variance, normalised to mean 1 over the
    training images (so the loss scale and learning rate keep their meaning):

        var_i = sum_k p_ik (s_k - mu_i)^2,   mu_i = sum_k p_ik s_k   (s_k: bin scores)
        w_i   = (1 / (var_i + v)) / mean_train(1 / (var_j + v)),   v = mean_train(var_j)

    v keeps the weights bounded (a zero-variance image gets at most (1 + var_max / v)
    times the weight of the least reliable one).  Example: variances (1, 3): v = 2,
    1/(var+v) = (1/3, 1/5), mean 4/15, w = (1.25, 0.75).
    """
    p = np.asarray(distribution, np.float64)
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    s = np.asarray(bin_scores, np.float64)
    mu = p @ s
    var = np.sum(p * (s[None, :] - mu[:, None]) ** 2, axis=1)
    m = np.ones(len(var), bool) if train_mask is None else np.asarray(train_mask, bool)
    v = float(var[m].mean()) or 1.0
    raw = 1.0 / (var + v)
    return (raw / raw[m].mean()).astype(np.float32)


# -- feature kinds beyond narrow / wide -----------------------------------------------------
class KindFeatures:
    """The StoreFeatures interface for ``features/<kind>`` of any stored kind (wide_fore,
    wide_back, spp) or ``wide_foreback`` (the two concatenated on channels); read into RAM."""

    def __init__(self, store_path, levels=None, kind="wide_fore", progress=False, **_):
        self.path, self.kind = Path(store_path), kind
        parts = ["wide_fore", "wide_back"] if kind == "wide_foreback" else [kind]
        with FeatureStore.open(self.path) as store:
            for k in parts:
                if not store.has(k):
                    raise StoreError(f"{self.path}: has no features/{k}")
            self.levels, self.channel_index = store.select_levels(levels)
            self.ids, self.config = store.ids, store.config
        with h5py.File(self.path, "r") as h5:
            arrays = [h5[f"features/{k}"][...][..., self.channel_index] for k in parts]
        self.data = np.concatenate(arrays, axis=-1) if len(arrays) > 1 else arrays[0]
        self.n_images, self.n_aug = int(self.data.shape[0]), int(self.data.shape[1])
        self.item_shape = tuple(int(v) for v in self.data.shape[2:])
        self.in_memory = True

    def get(self, rows, aug=None):
        rows = np.asarray(rows, np.int64)
        if aug is None:
            return self.data[rows].astype(np.float32)
        if np.ndim(aug) == 0:
            aug = np.full(rows.shape, int(aug), np.int64)
        return self.data[rows, np.asarray(aug)].astype(np.float32)

    def mean_over_augmentations(self, rows, block=256):
        return self.get(rows).mean(axis=1)

    def close(self):
        pass


def _open_features(store_path, levels, kind, memory_limit, progress):
    if kind in ("narrow", "wide"):
        return StoreFeatures(store_path, levels, kind, memory_limit=memory_limit,
                             progress=progress)
    return KindFeatures(store_path, levels, kind)


class _WeightedSequence(FeatureSequence):
    """FeatureSequence that also yields per-sample weights (of the image each sample is)."""

    def __init__(self, *args, sample_weights=None, **kw):
        super().__init__(*args, **kw)
        self.sample_weights = np.asarray(sample_weights, np.float32)

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        items, _ = self.plan()
        it = items[index * self.batch_size:(index + 1) * self.batch_size]
        return x, y, self.sample_weights[it]


class _PhasedSchedule(MLSPSchedule):
    """MLSPSchedule that survives a restart of ``fit`` (the precision switch): its state is
    kept across calls and the best weights are only restored at the very end."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._started, self.pausing, self.stopped = False, False, False

    def on_train_begin(self, logs=None):
        if not self._started:
            super().on_train_begin(logs)
            self._started = True

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.stopped = bool(self.model.stop_training)

    def on_train_end(self, logs=None):
        if not self.pausing:
            super().on_train_end(logs)


def build_cells_3fc(item_shape, output="mos", n_bins=10, width=512, cell_units=128,
                    dropout=(0.25, 0.25, 0.5), seed=None) -> keras.Model:
    """A neutral head for any (cells..., C) feature kind (grid P x P or SPP's 26 cells):
    a per-cell Dense(cell_units) + BN + ReLU (a 1x1 convolution), flatten, 3FC, output.
    Used to compare pooling kinds with the same head (``mlsp ablate pooling``)."""
    from ..heads.models import _dense, _final, _Seeds, fc3

    seeds = _Seeds(seed)
    inp = keras.Input(tuple(item_shape), dtype="float32", name="features")
    cells = int(np.prod(item_shape[:-1]))
    x = keras.layers.Reshape((cells, int(item_shape[-1])), name="cells")(inp)
    x = _dense(int(cell_units), seeds, "cell_1x1", activation="relu")(x)
    x = keras.layers.BatchNormalization(name="cell_1x1_bn")(x)
    x = keras.layers.Flatten(name="cells_flat")(x)
    x = fc3(x, width, dropout, seeds)
    return keras.Model(inp, _final(x, output, n_bins, seeds), name="cells_3fc")


def _with_float32_output(model):
    inp = keras.Input(model.input_shape[1:], dtype="float32", name="features")
    out = keras.layers.Activation("linear", dtype="float32", name="output_float32")(model(inp))
    return keras.Model(inp, out, name=model.name)


# -- training ---------------------------------------------------------------------------------
def train_extended(store_path, labels, head="single_3fc", levels=None, output="mos",
                   epochs=100, batch_size=128, lr=1e-4, augment="random", seed=0,
                   out_dir="mlsp-model", progress=True, val_fraction=0.05, test_ids=None,
                   test_fraction=0.0, width=None, dropout=(0.25, 0.25, 0.5), step_epochs=20,
                   patience=5, min_lr=1e-6, stop_patience=5, baseline=True,
                   baseline_max_rows=20000, memory_limit=4 * 1024**3, workers=None, plots=True,
                   name=None, normalize_inputs=False, objective="mlsp", loss=None,
                   precision="float32", sample_weights=None, features=None,
                   binary_margin=0.0, **unknown):
    """``train_head`` with the extensions of this module's doc; same return value."""
    from ..heads import build_head
    from ..heads.losses import emd_loss, re_emd_loss
    from ..heads.multitask import (MultiTaskModel, build_multitask_net, pack_targets,
                                   tag_vocabulary)
    from . import trainer as T

    objective = objective or "mlsp"
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if sample_weights not in SAMPLE_WEIGHTS:
        raise ValueError(f"sample_weights must be 'variance' or None, got {sample_weights!r}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss in ("emd", "re_emd") or head == "multitask":
        output = "distribution"
    loss = loss or ("mse" if output == "mos" else "emd")
    if (loss == "mse") != (output == "mos"):
        raise ValueError(f"loss {loss!r} does not fit output {output!r}")
    if head == "multitask" and objective != "mlsp":
        raise ValueError("the multitask head trains with objective='mlsp' only")
    if features is None:
        features = "wide" if head in ("pool_3fc", "mnet") else "narrow"
    if features not in FEATURE_KINDS:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    if head in ("pool_3fc", "mnet") and features in ("narrow", "spp"):
        raise ValueError(f"head {head} needs a (P, P, C) feature grid, not {features!r}")
    if head not in ("pool_3fc", "mnet", "cells_3fc") and features != "narrow":
        raise ValueError(f"head {head} takes narrow features; use cells_3fc for {features!r}")

    start = time.monotonic()
    keras.utils.set_random_seed(int(seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(store_path)
    with FeatureStore.open(store_path) as store:
        lab, al = T._resolve_labels(labels, store, val_fraction, test_ids, test_fraction, seed)
        config = store.config
        wide_size = int(config.get("pool_wide", 0) or 0)
    report = al.report()
    if progress:
        print(report)
    rows = al.store_index
    split = np.asarray(lab.split, dtype=object)
    train_m, val_m, test_m = (split == s for s in ("train", "val", "test"))
    if train_m.sum() < 2:
        raise ValueError(f"only {int(train_m.sum())} training images after alignment/split")
    if unknown.get("distribute"):
        raise ValueError("distribute=True is not supported together with the extensions")
    if augment == "auto":
        resolver = unknown.get("augment_resolver")
        augment = resolver(augment, int(train_m.sum())) if resolver else \
            ("all" if int(train_m.sum()) < 20_000 else "random")

    feats = _open_features(store_path, levels, features, memory_limit, progress)
    item_shape = feats.item_shape
    channels = item_shape[-1] // (2 if features == "wide_foreback" else 1)
    level_names = [lv.name for lv in feats.levels]
    level_channels = [lv.channels for lv in feats.levels]
    lo, hi = lab.score_range
    thr = T.accuracy_threshold((lo, hi))
    mean = float(lab.mos[train_m].mean())
    std = float(lab.mos[train_m].std()) or 1.0
    if output == "mos":
        n_bins, scores = None, None
        y = T.standardize(lab.mos, mean, std).astype(np.float32)[:, None]
    else:
        if lab.distribution is None:
            raise ValueError(f"loss {loss!r} / head {head!r} needs rating distributions in the "
                             "labels (e.g. AVA.txt, or p1..pK columns)")
        n_bins = lab.n_bins
        scores = T.bin_scores((lo, hi), n_bins)
        y = lab.distribution.astype(np.float32)
    weights = None
    if sample_weights == "variance":
        if lab.distribution is None:
            raise ValueError("sample_weights='variance' needs rating distributions in the labels")
        weights = variance_weights(lab.distribution, T.bin_scores((lo, hi), lab.n_bins), train_m)
    vocab = np.zeros(0, np.int64)
    if head == "multitask":
        vocab = tag_vocabulary(None if lab.tags is None else lab.tags[train_m])
        y = pack_targets(lab.distribution, lab.mos, thr, binary_margin, lab.tags,
                         vocab if len(vocab) else None)

    def build(policy):
        """(training model, test-time model) under ``policy``."""
        with policy_scope(policy):
            if head == "multitask":
                net = build_multitask_net(channels, n_bins, len(vocab), width, dropout, seed)
                model = MultiTaskModel(net, n_bins, len(vocab))
                return model, model.inference
            if head == "cells_3fc":
                inner = build_cells_3fc(item_shape, output, n_bins or 10, width or 512,
                                        dropout=dropout, seed=seed)
            elif head == "mnet":
                from ..heads.mnet import build_mnet

                inner = build_mnet(channels, wide_size, output, n_bins or 10,
                                   source="foreback" if features == "wide_foreback" else "area",
                                   width=width, dropout=dropout, seed=seed)
            else:
                inner = build_head(head, channels, level_channels=level_channels,
                                   wide_size=wide_size, output=output, n_bins=n_bins or 10,
                                   width=width, dropout=dropout, seed=seed)
            if normalize_inputs:
                inner = T._with_input_normalization(inner, *T._feature_moments(feats, rows[train_m]))
            if precision != "float32":
                inner = _with_float32_output(inner)
            if objective == "mlsp":
                return inner, inner
            return MultiPatchModel(inner, objective, loss, bin_scores=scores,
                                   mos_std=std if output == "distribution" else 1.0), inner

    def loss_fn():
        if head == "multitask" or objective != "mlsp":
            return None  # the wrapper's compute_loss
        return {"mse": "mse", "emd": emd_loss(2), "re_emd": re_emd_loss(2)}[loss]

    if workers is None:
        workers = 1 if feats.in_memory else 2
    tr_idx, va_idx = np.flatnonzero(train_m), np.flatnonzero(val_m)
    w_tr = None if weights is None else weights[tr_idx]
    w_va = None if weights is None else weights[va_idx]
    if objective == "mlsp":
        if weights is None:
            train_seq = FeatureSequence(feats, rows[tr_idx], y[tr_idx], batch_size, augment,
                                        True, seed, workers=workers)
        else:
            train_seq = _WeightedSequence(feats, rows[tr_idx], y[tr_idx], batch_size, augment,
                                          True, seed, workers=workers, sample_weights=w_tr)
        val_seq = None
        if va_idx.size:
            val_seq = (FeatureSequence(feats, rows[va_idx], y[va_idx], batch_size, "all", False,
                                       seed, workers=workers) if weights is None else
                       _WeightedSequence(feats, rows[va_idx], y[va_idx], batch_size, "all",
                                         False, seed, workers=workers, sample_weights=w_va))
    else:  # multi-patch: all A augmentations of an image in one sample
        per = max(1, batch_size // feats.n_aug)
        train_seq = AllAugmentationsSequence(feats, rows[tr_idx], y[tr_idx], per, True, seed, w_tr)
        val_seq = (AllAugmentationsSequence(feats, rows[va_idx], y[va_idx], per, False, seed, w_va)
                   if va_idx.size else None)

    sched = _PhasedSchedule(initial_lr=lr, step_epochs=step_epochs, patience=patience,
                            min_lr=min(min_lr, lr), stop_patience=stop_patience,
                            monitor="val_loss" if val_seq is not None else "loss",
                            verbose=int(progress))
    policy = "float32" if precision in ("float32", "auto") else precision
    train_model, model = build(policy)
    opt = make_optimizer(policy, lr, monitored=precision == "auto")
    train_model.compile(optimizer=opt, loss=loss_fn())
    callbacks = [sched]
    monitor = None
    if precision == "auto":
        monitor = OverflowMonitor(DelayedEntryRule(), verbose=int(progress))
        callbacks.append(monitor)
        sched.pausing = True
    hist = train_model.fit(train_seq, validation_data=val_seq, epochs=int(epochs),
                           callbacks=callbacks, verbose=2 if progress else 0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    switch_epoch = None
    done = len(history.get("loss", []))
    if monitor is not None:
        sched.pausing = False
        history["mixed_precision"] = [0.0] * done
        if monitor.switch and done < int(epochs) and not sched.stopped:
            switch_epoch = done  # 0-based index of the first mixed-precision epoch
            new_train, new_model = build("mixed_float16")
            new_train(train_seq[0][0])  # build the variables
            new_train.set_weights(train_model.get_weights())
            new_opt = make_optimizer("mixed_float16", float(sched.rule.lr))
            new_opt.build(new_train.trainable_variables)
            copy_optimizer_state(train_model.optimizer, new_opt, new_train.trainable_variables)
            new_train.compile(optimizer=new_opt, loss=loss_fn())
            hist2 = new_train.fit(train_seq, validation_data=val_seq, epochs=int(epochs),
                                  initial_epoch=done, callbacks=[sched],
                                  verbose=2 if progress else 0)
            for k, vals in hist2.history.items():
                history.setdefault(k, [math.nan] * done)
                history[k] = history[k][:done] + [float(v) for v in vals]
            n2 = len(hist2.history.get("loss", []))
            for k in ("grad_absmax", "grad_overflow", "theta"):
                if k in history:
                    history[k] = history[k][:done] + [math.nan] * n2
            history["mixed_precision"] = [0.0] * done + [1.0] * n2
            train_model, model = new_train, new_model
        else:
            sched.on_train_end()
    history.pop("learning_rate", None)

    n_ep = len(history.get("loss", []))
    sidecar = {
        "format": T.SIDECAR_FORMAT, "version": 1, "name": name or out.name,
        "head": head, "output": output, "n_bins": n_bins,
        "bin_scores": None if scores is None else scores.tolist(),
        "pooling": features, "wide_size": wide_size if features != "narrow" else 0,
        "levels": level_names, "level_channels": level_channels, "channels": int(channels),
        "features": {"weights": config.get("weights"),
                     **{k: config.get(k) for k in IDENTITY_KEYS}},
        "store": str(store_path.resolve()),
        "target": {"mean": mean, "std": std, "standardized": output == "mos"},
        "score_range": [lo, hi], "accuracy_threshold": thr,
        "train": {"epochs_run": n_ep, "epochs": int(epochs), "best_epoch": sched.best_epoch,
                  "batch_size": int(batch_size), "lr": float(lr), "augment": augment,
                  "seed": int(seed), "width": width, "dropout": list(dropout),
                  "step_epochs": step_epochs, "patience": patience, "min_lr": min_lr,
                  "stop_patience": stop_patience, "normalize_inputs": bool(normalize_inputs),
                  "n_train": int(train_m.sum()), "n_val": int(val_m.sum()),
                  "n_test": int(test_m.sum()), "labels_source": lab.source,
                  "objective": objective, "loss": loss, "precision": precision,
                  "precision_switch_epoch": switch_epoch, "sample_weights": sample_weights,
                  "binary_margin": float(binary_margin),
                  "tags": [int(t) for t in vocab]},
        "mlsp_version": __version__, "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }
    raw = predict_averaged(model, feats, rows, batch_size)
    mos_pred, dist_pred = T.outputs_to_scores(raw, sidecar)
    metrics = {"alignment": report, "constant": {}, "baseline_ridge": {}}
    parts = {}
    for part, m in (("train", train_m), ("val", val_m), ("test", test_m)):
        dt = lab.distribution[m] if (lab.distribution is not None and dist_pred is not None) else None
        res = T._metrics(lab.mos[m], mos_pred[m], thr, dt, None if dt is None else dist_pred[m])
        metrics[part] = res
        metrics["constant"][part] = T._metrics(lab.mos[m], np.full(int(m.sum()), mean), thr)
        if res is not None:
            parts[part] = (lab.mos[m], mos_pred[m], res)
    if baseline:
        from ..heads import fit_baseline

        metrics["baseline_ridge"] = T._ridge(None, store_path, levels, rows, lab,
                                             (train_m, val_m, test_m), thr, baseline_max_rows,
                                             seed, memory_limit, progress, fit_baseline)
    feats.close()

    files = []
    model.save(out / T.MODEL_FILE)
    T._write_json(out / T.SIDECAR, sidecar)
    T._write_json(out / "metrics.json", metrics)
    files += [out / T.MODEL_FILE, out / T.SIDECAR, out / "metrics.json"]
    with open(out / "history.csv", "w", newline="") as f:
        keys = list(history)
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(n_ep):
            w.writerow([e + 1, *(history[k][e] if e < len(history[k]) else "" for k in keys)])
    files.append(out / "history.csv")
    T._write_predictions(out / "predictions.csv", lab.ids, split, lab.mos, mos_pred, dist_pred)
    files.append(out / "predictions.csv")
    if plots:
        p1 = T.plot_scatter(out / "scatter.png", {k: parts.get(k) for k in ("val", "test")},
                            (lo, hi), f"{head} ({objective}, {loss}) on {store_path.name}")
        p2 = T.plot_history(out / "learning_curves.png", history)
        files += [p for p in (p1, p2) if p]
    result = T.TrainResult(out_dir=out, model=model, sidecar=sidecar, history=history,
                           metrics=metrics,
                           predictions={"ids": lab.ids, "split": split, "mos_true": lab.mos,
                                        "mos_pred": mos_pred, "dist_pred": dist_pred},
                           alignment=report, seconds=time.monotonic() - start, files=files)
    if progress:
        print(result.summary())
    return result
