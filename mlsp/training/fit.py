"""The fit loop: build the head for a resolved config, train it with Adam and the MLSP
schedule (Hosu et al. 2019, sec. 3.3; :mod:`.schedule`), feeding stored augmentations
(sec. 3.1; :mod:`.data`) or all of them as patches (:mod:`.objectives`), in float32, mixed
precision or M+MNet's delayed entry (Eq. 5; :mod:`.precision`), on one device or
data-parallel (:mod:`.distribute`).  One line per epoch for people; the feeder's counters
go to the history (and on screen with ``verbose``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

from ..inference.scoring import predict_averaged
from ..stores.reader import StoreFeatures
from .data import FeatureSequence, FeedTimer
from .distribute import data_parallel, model_devices
from .objectives import AllAugmentationsSequence, MultiPatchModel
from .precision import (DelayedEntryRule, OverflowMonitor, copy_optimizer_state, make_optimizer,
                        policy_scope, with_float32_output)
from .schedule import PhasedSchedule

__all__ = ["FitOutcome", "fit_head", "fit_ridge", "feature_moments", "EpochLog", "ValSRCC", "SHOWN_KEYS"]

#: History columns printed every epoch; the rest (feeder counters, precision monitor) are
#: printed only with ``verbose``.
SHOWN_KEYS = ("loss", "val_loss", "val_srcc", "lr")


@dataclass
class FitOutcome:
    model: keras.Model          # the single-device test-time head
    history: dict
    best_epoch: int
    batch_size: int             # rounded up to a multiple of the replicas
    dist: dict                  # data-parallel facts (devices, replicas, ...)
    switch_epoch: int | None    # first mixed-precision epoch of precision="auto"


class ValSRCC(keras.callbacks.Callback):
    """``val_srcc`` in the logs: Spearman correlation of the validation images' scores
    (averaged over their stored augmentations, MLSP sec. 3.1) with their MOS, computed on
    the epoch's weights (before the schedule may reload the best ones)."""

    def __init__(self, holder, feats, rows, mos, bin_scores=None, batch_size=128):
        super().__init__()
        self.holder, self.feats, self.rows, self.mos = holder, feats, rows, mos
        self.bin_scores, self.batch_size = bin_scores, batch_size

    def on_epoch_end(self, epoch, logs=None):
        from scipy.stats import spearmanr

        from ..evaluation.metrics import distribution_mean

        raw = predict_averaged(self.holder["model"], self.feats, self.rows, self.batch_size)
        pred = raw[:, 0] if self.bin_scores is None else \
            distribution_mean(raw, self.bin_scores)[0]
        ok = pred.size >= 2 and np.ptp(pred) > 0 and np.ptp(self.mos) > 0
        if logs is not None:
            logs["val_srcc"] = float(spearmanr(pred, self.mos)[0]) if ok else math.nan


class EpochLog(keras.callbacks.Callback):
    """One readable line an epoch: epoch, loss, val loss, val SRCC, learning rate, time;
    with ``verbose`` also every other logged quantity (feeder counters, ...)."""

    def __init__(self, epochs, verbose=False, echo=print):
        super().__init__()
        self.epochs, self.verbose, self.echo = int(epochs), verbose, echo
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        w = len(str(self.epochs))
        parts = [f"epoch {epoch + 1:{w}d}/{self.epochs}"]
        for key, label, spec in (("loss", "loss", ".4f"), ("val_loss", "val loss", ".4f"),
                                 ("val_srcc", "val SRCC", ".3f"), ("lr", "lr", ".1e")):
            v = logs.get(key)
            if v is not None:
                parts.append(f"{label} {'-' if not math.isfinite(float(v)) else format(v, spec)}")
        parts.append(f"{time.monotonic() - self._t0:.1f} s")
        if self.verbose:
            parts += [f"{k} {float(v):.4g}" for k, v in logs.items()
                      if k not in SHOWN_KEYS and k != "learning_rate"]
        self.echo("  ".join(parts))


#: A channel whose training variance is below this share of the median channel's is only
#: centred, not scaled (variance 1, as scikit-learn's StandardScaler does for constant
#: features): dead ReLU channels are all but constant on a few hundred images, and dividing
#: by their tiny spread would blow up the rare image where they fire.
NEAR_CONSTANT = 1e-4


def feature_moments(feats: StoreFeatures, rows, block: int = 256):
    """Per-channel mean and variance of the stored features of ``rows`` (all augmentations);
    near-constant channels get variance 1 (:data:`NEAR_CONSTANT`)."""
    total, sq, count = 0.0, 0.0, 0
    for a in range(0, len(rows), block):
        x = feats.get(rows[a:a + block]).astype(np.float64)
        x = x.reshape(-1, x.shape[-1])
        total, sq, count = total + x.sum(0), sq + (x * x).sum(0), count + x.shape[0]
    mean = total / count
    var = np.maximum(sq / count - mean * mean, 0.0)
    floor = NEAR_CONSTANT * max(float(np.median(var)), 1e-12)
    return mean, np.where(var > floor, var, 1.0)


def with_input_normalization(head: keras.Model, mean, variance) -> keras.Model:
    """``head`` behind a fixed (non-trainable) per-channel standardisation layer."""
    from ..layers.standardize import Standardize

    inp = keras.Input(head.input_shape[1:], dtype="float32", name="features")
    norm = Standardize(name="standardize")
    out = head(norm(inp))
    norm.set_moments(mean, variance)
    return keras.Model(inp, out, name=head.name)


def build_models(spec, policy, config, item_shape, level_channels, wide_size, targets,
                 moments=None, float32_output=False):
    """(training model, test-time model) under the dtype ``policy``: the head (behind a
    fixed standardisation when ``moments`` are given, with a float32 output for mixed
    precision), wrapped for the multi-patch objectives; the multitask head's training
    model carries the uncertainty-weighted loss."""
    with policy_scope(policy):
        inner = spec.build(item_shape, config.output, targets.n_bins or 10,
                           features=config.features, level_channels=level_channels,
                           wide_size=wide_size, width=config.width, dropout=config.dropout,
                           pool_kernels=config.pool_kernels,
                           seed=config.seed, n_tags=len(targets.vocab))
        if spec.trains_itself:
            return inner, inner.inference
        if moments is not None:
            inner = with_input_normalization(inner, *moments)
        if float32_output:
            inner = with_float32_output(inner)
        if config.objective == "mlsp":
            return inner, inner
        mos_std = targets.std if config.output == "distribution" else 1.0
        return MultiPatchModel(inner, config.objective, config.loss,
                               bin_scores=targets.bin_scores, mos_std=mos_std), inner


def loss_fn(spec, objective, loss):
    """The compiled loss; None where the training model computes its own."""
    from ..heads.losses import emd_loss, re_emd_loss

    if spec.trains_itself or objective != "mlsp":
        return None
    return {"mse": "mse", "emd": emd_loss(2), "re_emd": re_emd_loss(2)}[loss]


def switch_to_mixed(train_model, build, loss, sched, train_seq, val_seq, callbacks, epochs,
                    done, history):
    """Delayed entry (M+MNet Eq. 5): rebuild in mixed_float16, copy the weights and Adam's
    state, train the remaining epochs; extends ``history``; the new models."""
    new_train, new_model = build("mixed_float16")
    new_train(train_seq[0][0])  # build the variables
    new_train.set_weights(train_model.get_weights())
    new_opt = make_optimizer("mixed_float16", float(sched.rule.lr))
    new_opt.build(new_train.trainable_variables)
    copy_optimizer_state(train_model.optimizer, new_opt, new_train.trainable_variables)
    new_train.compile(optimizer=new_opt, loss=loss)
    hist = new_train.fit(train_seq, validation_data=val_seq, epochs=int(epochs),
                         initial_epoch=done, callbacks=callbacks, verbose=0)
    for k, vals in hist.history.items():
        history.setdefault(k, [math.nan] * done)
        history[k] = history[k][:done] + [float(v) for v in vals]
    n2 = len(hist.history.get("loss", []))
    for k in ("grad_absmax", "grad_overflow", "theta"):
        if k in history:
            history[k] = history[k][:done] + [math.nan] * n2
    history["mixed_precision"] = [0.0] * done + [1.0] * n2
    return new_train, new_model


def undistributed(model: keras.Model) -> keras.Model:
    """A copy of a model trained under a distribution, with its variables on one device."""
    plain = keras.models.clone_model(model)
    plain.set_weights([keras.ops.convert_to_numpy(w) for w in model.get_weights()])
    return plain


def _sequences(config, feats, rows, targets, tr_idx, va_idx, batch_size, augment, workers, reps):
    def sequence(idx, train):
        if not idx.size:
            return None
        w = None if targets.weights is None else targets.weights[idx]
        y = targets.y[idx]
        if config.objective == "mlsp":  # one stored augmentation a sample
            return FeatureSequence(feats, rows[idx], y, batch_size, augment if train else "all",
                                   train, config.seed, workers=workers, multiple_of=reps,
                                   sample_weights=w)
        per = max(1, batch_size // feats.n_aug) if reps == 1 else \
            max(reps, batch_size // feats.n_aug // reps * reps)
        return AllAugmentationsSequence(feats, rows[idx], y, per, train, config.seed, w,
                                        workers=workers, multiple_of=reps)

    return sequence(tr_idx, True), sequence(va_idx, False)


def fit_head(spec, config, feats, rows, targets, tr_idx, va_idx, val_mos, wide_size, augment,
             moments=None, progress=True, verbose=False, val_srcc=True) -> FitOutcome:
    """Train the head ``spec`` for a resolved ``config`` on store ``rows`` (training
    ``tr_idx``, validation ``va_idx`` of them) and return the trained test-time model."""
    level_channels = [lv.channels for lv in feats.levels]
    workers = config.workers if config.workers is not None else (1 if feats.in_memory else 2)
    switch_epoch = None
    with data_parallel(config.distribute) as dist:
        reps = dist["replicas"]
        batch_size = -(-int(config.batch_size) // reps) * reps

        def build(policy):
            return build_models(spec, policy, config, feats.item_shape, level_channels,
                                wide_size, targets, moments, config.precision != "float32")

        train_seq, val_seq = _sequences(config, feats, rows, targets, tr_idx, va_idx,
                                        batch_size, augment, workers, reps)
        policy = "float32" if config.precision in ("float32", "auto") else config.precision
        train_model, model = build(policy)
        lr = config.lr
        train_model.compile(optimizer=make_optimizer(policy, lr,
                                                     monitored=config.precision == "auto"),
                            loss=loss_fn(spec, config.objective, config.loss))
        sched = PhasedSchedule(initial_lr=lr, step_epochs=config.step_epochs,
                               patience=config.patience, min_lr=min(config.min_lr, lr),
                               stop_patience=config.stop_patience,
                               monitor="val_loss" if val_seq is not None else "loss",
                               verbose=int(progress))
        holder = {"model": model}
        callbacks = [FeedTimer(train_seq)]
        if val_srcc and val_seq is not None:
            scores = None if config.output == "mos" else np.asarray(targets.bin_scores)
            callbacks.append(ValSRCC(holder, feats, rows[va_idx], val_mos, scores, batch_size))
        callbacks.append(sched)
        if progress:
            callbacks.append(EpochLog(config.epochs, verbose))
        monitor = None
        if config.precision == "auto":
            monitor = OverflowMonitor(DelayedEntryRule(), verbose=int(progress))
            sched.pausing = True
        hist = train_model.fit(train_seq, validation_data=val_seq, epochs=int(config.epochs),
                               callbacks=callbacks + ([monitor] if monitor else []), verbose=0)
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        if monitor is not None:
            done = len(history.get("loss", []))
            sched.pausing = False
            history["mixed_precision"] = [0.0] * done
            if monitor.switch and done < int(config.epochs) and not sched.stopped:
                switch_epoch = done  # 0-based index of the first mixed-precision epoch

                def rebuild(policy):
                    pair = build(policy)
                    holder["model"] = pair[1]
                    return pair

                train_model, model = switch_to_mixed(
                    train_model, rebuild, loss_fn(spec, config.objective, config.loss), sched,
                    train_seq, val_seq, callbacks, config.epochs, done, history)
            else:
                sched.on_train_end()
        dist["model_devices"] = model_devices(model) if config.distribute else 1
    if config.distribute:  # a plain single-device copy for scoring and saving
        model = undistributed(model)
    history.pop("learning_rate", None)
    return FitOutcome(model, history, sched.best_epoch, batch_size, dict(dist), switch_epoch)


def fit_ridge(spec, config, feats, rows, targets, tr_idx) -> FitOutcome:
    """The ``ridge`` head in closed form: standardized narrow features averaged over the
    stored augmentations, RidgeCV on the z-scored MOS with its penalty chosen by
    leave-one-out over the training images (:func:`mlsp.heads.baseline.fit_baseline`, the
    same fit as the ridge reference of every report), written into the weights of a
    Standardize + Dense model so it saves, loads, predicts and exports like any head.
    Averaging the outputs over augmentations equals predicting on averaged features, as
    the model is linear.  Above ``baseline_max_rows`` (20,000) training images it fits on
    that many drawn at random, as the reference does: AVA's 235,000 x 16,928 averaged
    features would take 16 GB."""
    from ..heads.baseline import fit_baseline

    tr_idx = np.asarray(tr_idx, np.int64)
    if tr_idx.size > config.baseline_max_rows:  # bounded memory, the reference's own rows
        tr_idx = np.sort(np.random.default_rng(config.seed).choice(
            tr_idx, config.baseline_max_rows, replace=False))
    x = feats.mean_over_augmentations(rows[tr_idx])
    weights = None if targets.weights is None else targets.weights[tr_idx]
    pipe = fit_baseline(x, targets.y[tr_idx, 0], kind="ridge", sample_weight=weights)
    scaler, ridge = pipe.named_steps["scale"], pipe.named_steps["ridge"]
    model = spec.build((x.shape[1],), "mos", seed=config.seed)
    model.get_layer("standardize").set_moments(scaler.mean_, np.square(scaler.scale_))
    model.get_layer("output").set_weights([np.asarray(ridge.coef_, "float32").reshape(-1, 1),
                                           np.asarray([ridge.intercept_], "float32")])
    history = {"ridge_alpha": [float(ridge.alpha_)]}
    return FitOutcome(model, history, None, int(config.batch_size), {}, None)
