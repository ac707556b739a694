"""Training a head on stored MLSP features (Hosu et al. 2019, sec. 3.3).

``train_head`` aligns labels with a feature store (by id), splits train / val
(/ test), standardises the MOS, trains with Adam and the MLSP schedule
(:mod:`mlsp.training.schedule`) drawing one random stored augmentation per
image and epoch (sec. 3.1), scores every image by averaging over all stored
augmentations (sec. 3.1), and writes the model, a JSON sidecar describing the
features it expects, the history, metrics (with a constant predictor and a
ridge baseline for reference), predictions and plots.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .. import __version__
from ..stores.features import IDENTITY_KEYS, FeatureStore, StoreError, config_mismatch
from .data import FeatureSequence, FeedTimer, StoreFeatures, predict_averaged
from .distribute import data_parallel, model_devices
from .extended import variance_weights
from .objectives import OBJECTIVES, AllAugmentationsSequence, MultiPatchModel
from .precision import (PRECISIONS, DelayedEntryRule, OverflowMonitor, copy_optimizer_state,
                        make_optimizer, policy_scope, with_float32_output)
from .schedule import PhasedSchedule
from ..evaluation.plots import _f, plot_history, plot_scatter  # noqa: F401 (_f re-exported)

__all__ = ["TrainResult", "train_head", "load_trained", "check_compatible", "score_rows",
           "evaluate_trained", "accuracy_threshold", "SIDECAR", "MODEL_FILE"]

MODEL_FILE, SIDECAR = "model.keras", "model.json"

#: ``augment="auto"`` feeds all stored augmentations per epoch ("all") below this many
#: training images, one random augmentation ("random", MLSP sec. 3.1) from it on.  The
#: paper's AVA regime (~235k training images, batch 128, one augmentation) has ~1,800
#: steps an epoch; "all" on 20,000 images gives 1,250, so below the threshold "all" keeps
#: epochs no longer than the paper's while small sets get enough steps to train at all
#: (benchmarks/RESULTS-training-defaults.md).
AUTO_ALL_BELOW = 20_000


def resolve_augment(augment: str, n_train: int) -> str:
    """The augmentation mode actually used for ``n_train`` training images."""
    if augment == "auto":
        return "all" if int(n_train) < AUTO_ALL_BELOW else "random"
    return augment
SIDECAR_FORMAT = "mlsp-head"


@dataclass
class TrainResult:
    out_dir: Path
    model: keras.Model
    sidecar: dict
    history: dict
    metrics: dict
    predictions: dict  # ids, split, mos_true, mos_pred, dist_pred (or None)
    alignment: str
    seconds: float
    files: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"model saved to {self.out_dir / MODEL_FILE} "
                 f"({len(self.history.get('loss', []))} epochs, best epoch "
                 f"{self.sidecar['train']['best_epoch'] + 1}, {self.seconds:.0f} s)"]
        for part in ("val", "test"):
            m = self.metrics.get(part)
            if not m:
                continue
            base = self.metrics.get("baseline_ridge", {}).get(part) or {}
            const = self.metrics.get("constant", {}).get(part) or {}
            lines.append(f"{part:4s} n={m['n']}: SRCC {_f(m['srcc'])} PLCC {_f(m['plcc'])} "
                         f"acc {_f(m['accuracy'])} RMSE {_f(m['rmse'])} | ridge SRCC "
                         f"{_f(base.get('srcc'))} | constant RMSE {_f(const.get('rmse'))}")
        return "\n".join(lines)


# -- targets ------------------------------------------------------------------------------
def accuracy_threshold(score_range) -> float:
    """Binary-accuracy threshold: 5 on AVA's 1-10 scale (MLSP sec. 4), else the midpoint."""
    lo, hi = (float(v) for v in score_range)
    return 5.0 if (lo, hi) == (1.0, 10.0) else (lo + hi) / 2.0


def bin_scores(score_range, n_bins) -> np.ndarray:
    """Scores of the K distribution bins, spread evenly over the rating scale."""
    lo, hi = (float(v) for v in score_range)
    return np.linspace(lo, hi, int(n_bins))


def _label_bin_scores(lab, n_bins) -> np.ndarray:
    """Bin scores of the labels' distributions: 1..K when the labels give no rating scale
    (p1..pK columns, the range only observed) or when the MOS is the expectation over
    1..K; else K scores spread evenly over the stated scale."""
    k = np.arange(1, int(n_bins) + 1, dtype=np.float64)
    if getattr(lab, "range_observed", False) or np.allclose(
            lab.distribution @ k, lab.mos, atol=0.05):
        return k
    return bin_scores(lab.score_range, n_bins)


def standardize(mos, mean, std):
    return (np.asarray(mos, np.float64) - mean) / std


def unstandardize(z, mean, std):
    return np.asarray(z, np.float64) * std + mean


def outputs_to_scores(raw: np.ndarray, sidecar: dict):
    """Model outputs (already averaged over augmentations) -> (mos, distribution or None)."""
    raw = np.asarray(raw, np.float64)
    if sidecar["output"] == "mos":
        t = sidecar["target"]
        return unstandardize(raw.reshape(-1), t["mean"], t["std"]), None
    dist = raw / np.clip(raw.sum(axis=1, keepdims=True), 1e-12, None)
    return dist @ np.asarray(sidecar["bin_scores"], np.float64), dist


# -- model files --------------------------------------------------------------------------
def load_trained(path):
    """``(model, sidecar)`` from a training output folder or its ``model.keras``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    model_file = path if path.is_file() else folder / MODEL_FILE
    side_file = folder / SIDECAR
    if not model_file.is_file() or not side_file.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (need {MODEL_FILE} and {SIDECAR})")
    sidecar = json.loads(side_file.read_text())
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{side_file}: not an mlsp model sidecar")
    # every head is built from serialisable layers / ops (multi_3fc slices with GetItem,
    # no Lambda), so models always load in safe mode: no code from the file is run.
    from .. import heads as _heads  # noqa: F401  (registers the mnet / pooling layers)

    model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
    return model, sidecar


def check_compatible(sidecar: dict, store) -> None:
    """Raise StoreError (one line, naming the store and the setting) when ``store``'s
    features are not the ones the model was trained on.  ``store``: a FeatureStore,
    a path, or a plain configuration dict (e.g. of an in-memory extraction)."""
    if isinstance(store, dict):
        name, config, levels, has_wide = "features", store, None, None
    else:
        own = not isinstance(store, FeatureStore)
        fs = FeatureStore.open(store) if own else store
        try:
            name, config = str(fs.path), fs.config
            levels = {lv.name: lv.channels for lv in fs.levels}
            has_wide = fs.has("wide")
        finally:
            if own:
                fs.close()
    wanted = sidecar["features"]
    diffs = []
    # extra pooling kinds and Corner Grid rows do not change the features a model reads:
    # what must agree is the set of plain augmentations and the presence of its kind
    relaxed = ("augmentation_mode", "augmentations", "pooling_kinds")
    for line in config_mismatch(config, wanted):
        key = line.split(":", 1)[0]
        if key in relaxed:
            continue
        diffs.append(f"{key}: store has {config.get(key)!r}, model was trained on "
                     f"{wanted.get(key)!r}")

    def plain(names):
        return [n for n in (names or []) if not str(n).endswith("+grid")]

    if wanted.get("augmentations") and plain(config.get("augmentations")) != plain(
            wanted.get("augmentations")):
        diffs.append(f"augmentations: store has {plain(config.get('augmentations'))}, model was "
                     f"trained on {plain(wanted.get('augmentations'))}")
    kind = sidecar.get("pooling", "narrow")
    kinds = set(config.get("pooling_kinds") or ["area"])
    needs = {"wide_fore": "fore", "wide_back": "back", "spp": "spp"}.get(kind)
    if needs and needs not in kinds:
        diffs.append(f"pooling: store has no {kind} features (pooling kinds {sorted(kinds)}), "
                     f"model needs them")
    if levels is not None:
        for lv, ch in zip(sidecar["levels"], sidecar["level_channels"]):
            if levels.get(lv) != ch:
                diffs.append(f"level {lv}: store has {levels.get(lv)} channels, model expects {ch}")
                break
        if sidecar["pooling"] == "wide" and not has_wide:
            diffs.append("pooling: store has no wide features, model needs them")
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise StoreError(f"{name}: not compatible with model '{sidecar.get('name', '?')}': "
                         f"{diffs[0]}{more}")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_json(path, obj):
    Path(path).write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


# -- scoring ------------------------------------------------------------------------------
def score_rows(model, sidecar, features: StoreFeatures, rows, batch_size=128):
    """(mos, distribution or None) per store row, averaged over all stored augmentations."""
    raw = predict_averaged(model, features, rows, batch_size)
    return outputs_to_scores(raw, sidecar)


def _metrics(mos_true, mos_pred, threshold, dist_true=None, dist_pred=None):
    from ..evaluation.metrics import evaluate_predictions

    if len(mos_true) == 0:
        return None
    return evaluate_predictions(mos_true, mos_pred, threshold=threshold,
                                dist_true=dist_true, dist_pred=dist_pred)


def _write_predictions(path, ids, split, mos_true, mos_pred, dist_pred):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        k = 0 if dist_pred is None else dist_pred.shape[1]
        w.writerow(["id", "split", "mos_true", "mos_pred", *(f"p{i + 1}" for i in range(k))])
        for i in range(len(ids)):
            row = [ids[i], split[i], f"{mos_true[i]:.6f}", f"{mos_pred[i]:.6f}"]
            if k:
                row += [f"{v:.6f}" for v in dist_pred[i]]
            w.writerow(row)


# -- training -----------------------------------------------------------------------------
def _resolve_labels(labels, store, val_fraction, test_ids, test_fraction, seed):
    from ..labels import align_with_store, load_labels

    if not hasattr(labels, "mos"):
        labels = load_labels(labels)
    al = align_with_store(labels, store)
    if len(al) == 0:
        raise ValueError(f"{store.path}: none of the {len(labels)} labelled images is extracted "
                         f"in the store ({al.report()})")
    lab = labels.subset(al.label_index)
    if test_ids is None and test_fraction and not np.any(lab.split_mask("test")):
        ids = np.array(sorted(lab.ids), dtype=object)
        k = int(round(test_fraction * len(ids)))
        test_ids = list(np.random.default_rng([seed, 7]).permutation(ids)[:k])
    lab = lab.with_split(val_fraction=val_fraction, seed=seed, test_ids=test_ids)
    return lab, al


def _check_options(head, output, objective, loss, precision, sample_weights, features,
                   distribute):
    """The resolved (output, objective, loss, precision, sample_weights, features), or a
    ValueError naming the option (and the other one, for combinations that cannot work)."""
    from ..heads import ALL_HEADS
    from .extended import FEATURE_KINDS, LOSSES, SAMPLE_WEIGHTS

    heads = ALL_HEADS + ("cells_3fc",)
    if head not in heads:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(heads)}")
    objective, precision = objective or "mlsp", precision or "float32"
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
    if output not in ("mos", "distribution"):
        raise ValueError(f"output must be 'mos' or 'distribution', got {output!r}")
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
    if distribute and precision == "auto":
        raise ValueError("distribute=True cannot be combined with precision='auto': the delayed "
                         "entry rebuilds the model mid-training; use precision='float32' or "
                         "'mixed_float16' with distribute, or train on one device")
    return (output, objective, loss, precision,
            None if sample_weights == "none" else sample_weights, features)


def _targets(lab, output, loss, head, train_m, binary_margin, thr):
    """(y, n_bins, bin scores or None, tag vocabulary, mean, std) for the labels."""
    mean = float(lab.mos[train_m].mean())
    std = float(lab.mos[train_m].std()) or 1.0
    vocab = np.zeros(0, np.int64)
    if output == "mos":
        return standardize(lab.mos, mean, std).astype(np.float32)[:, None], None, None, \
            vocab, mean, std
    if lab.distribution is None:
        raise ValueError(f"output='distribution' (loss {loss!r}, head {head!r}) needs rating "
                         "distributions in the labels (e.g. AVA.txt, or p1..pK columns)")
    n_bins = lab.n_bins
    y = lab.distribution.astype(np.float32)
    if head == "multitask":
        from ..heads.multitask import pack_targets, tag_vocabulary

        vocab = tag_vocabulary(None if lab.tags is None else lab.tags[train_m])
        y = pack_targets(lab.distribution, lab.mos, thr, binary_margin, lab.tags,
                         vocab if len(vocab) else None)
    return y, n_bins, _label_bin_scores(lab, n_bins), vocab, mean, std


def _build_models(policy, head, item_shape, features, level_channels, wide_size, output,
                  n_bins, width, dropout, seed, objective, loss, scores, std, n_tags,
                  moments=None, float32_output=False):
    """(training model, test-time model) under the dtype ``policy``: the head (behind a
    fixed standardisation when ``moments`` are given, with a float32 output for mixed
    precision), wrapped for the multi-patch objectives; the multitask head's training
    model carries the uncertainty-weighted loss."""
    from ..heads import build_head
    from .extended import build_cells_3fc

    with policy_scope(policy):
        if head == "multitask":
            from ..heads.multitask import MultiTaskModel, build_multitask_net

            net = build_multitask_net(item_shape[-1], n_bins, n_tags, width, dropout, seed)
            model = MultiTaskModel(net, n_bins, n_tags)
            return model, model.inference
        if head == "cells_3fc":
            inner = build_cells_3fc(item_shape, output, n_bins or 10, width or 512,
                                    dropout=dropout, seed=seed)
        elif head == "mnet":
            from ..heads.mnet import build_mnet

            foreback = features == "wide_foreback"
            inner = build_mnet(item_shape[-1] // (2 if foreback else 1), wide_size, output,
                               n_bins or 10, source="foreback" if foreback else "area",
                               width=width, dropout=dropout, seed=seed)
        else:
            inner = build_head(head, item_shape[-1], level_channels=level_channels,
                               wide_size=item_shape[0] if len(item_shape) == 3 else wide_size,
                               output=output, n_bins=n_bins or 10, width=width,
                               dropout=dropout, seed=seed)
        if moments is not None:
            inner = _with_input_normalization(inner, *moments)
        if float32_output:
            inner = with_float32_output(inner)
        if objective == "mlsp":
            return inner, inner
        return MultiPatchModel(inner, objective, loss, bin_scores=scores,
                               mos_std=std if output == "distribution" else 1.0), inner


def _loss_fn(head, objective, loss):
    """The compiled loss; None where the training model computes its own."""
    from ..heads.losses import emd_loss, re_emd_loss

    if head == "multitask" or objective != "mlsp":
        return None
    return {"mse": "mse", "emd": emd_loss(2), "re_emd": re_emd_loss(2)}[loss]


def _switch_to_mixed(train_model, build, loss, sched, train_seq, val_seq, callbacks, epochs,
                     done, progress, history):
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
                         initial_epoch=done, callbacks=callbacks, verbose=2 if progress else 0)
    for k, vals in hist.history.items():
        history.setdefault(k, [math.nan] * done)
        history[k] = history[k][:done] + [float(v) for v in vals]
    n2 = len(hist.history.get("loss", []))
    for k in ("grad_absmax", "grad_overflow", "theta"):
        if k in history:
            history[k] = history[k][:done] + [math.nan] * n2
    history["mixed_precision"] = [0.0] * done + [1.0] * n2
    return new_train, new_model


def train_head(store_path, labels, head: str = "single_3fc", levels=None, output: str = "mos",
               epochs: int = 100, batch_size: int = 128, lr: float = 1e-4, augment: str = "auto",
               seed: int = 0, out_dir="mlsp-model", progress: bool = True,
               val_fraction: float = 0.05, test_ids=None, test_fraction: float = 0.0,
               width: int | None = None, dropout=(0.25, 0.25, 0.5),
               step_epochs: int | None = 20, patience: int | None = 5, min_lr: float = 1e-6,
               stop_patience: int | None = 5, baseline: bool = True,
               baseline_max_rows: int = 20000, memory_limit: float = 4 * 1024**3,
               workers: int | None = None, plots: bool = True, name: str | None = None,
               normalize_inputs: bool = False, distribute: bool = False,
               objective: str = "mlsp", loss: str | None = None, precision: str = "float32",
               sample_weights: str | None = None, features: str | None = None,
               binary_margin: float = 0.0) -> TrainResult:
    """Train an MLSP head on a feature store and save everything to ``out_dir``.

    ``labels``: a :class:`mlsp.labels.Labels` or a label file.  Labels are matched to
    store rows by id; unmatched / failed images are reported and left out.  If the
    labels carry no split, 5% (``val_fraction``) of the images become the validation
    set (MLSP sec. 3.3); ``test_ids`` (or ``test_fraction``) set a test part.
    ``head``: one of :data:`mlsp.heads.ALL_HEADS` or ``cells_3fc``
    (:func:`mlsp.training.extended.build_cells_3fc`); ``pool_3fc`` / ``mnet`` train on
    wide features, ``multitask`` (MTP-NasNet) on narrow ones with distributions.
    ``features``: the stored kind to read (:data:`mlsp.training.data.FEATURE_KINDS`;
    default from the head): ``wide_fore`` / ``wide_back`` / ``wide_foreback`` /
    ``spp`` for ``cells_3fc`` (and the grids for ``pool_3fc`` / ``mnet``).
    ``output="mos"`` regresses the z-scored MOS with MSE (sec. 3.3);
    ``"distribution"`` predicts the rating distribution and scores by its expectation;
    ``loss``: ``mse`` (MOS), ``emd`` (the default for distributions) or ``re_emd``
    (M+MNet Eq. 3-4; either implies distributions).  ``objective``: ``mlsp`` (one
    stored augmentation a sample) or ``mp_avg`` / ``mp_min`` / ``mp_ada`` (all
    augmentations of an image as patches, Sheng et al. Eq. 3-8; ``batch_size // A``
    images a batch).  ``precision``: ``float32``, ``mixed_float16``, ``mixed_bfloat16``
    or ``auto`` (M+MNet's delayed entry, Eq. 5).  ``sample_weights="variance"``
    (MTP-NasNet sec. 3.3); ``binary_margin`` (multitask, sec. 4.3).
    ``augment``: ``random`` (one stored augmentation per image
    and epoch, sec. 3.1), ``all`` (every stored augmentation, every epoch) or ``auto``
    (``all`` below :data:`AUTO_ALL_BELOW` training images, else ``random``).
    ``distribute``: data-parallel over all local devices (:mod:`.distribute`); the
    batch size is rounded up to a multiple of the device count (not with
    ``precision="auto"``).  Features larger than ``memory_limit`` bytes are streamed
    from the store (bounded prefetch queue); the history records the feeder's time
    (``feed_s``, ``feed_share``, ``peak_batches``).  Schedule arguments: see
    :class:`mlsp.training.schedule.MLSPSchedule`.  ``normalize_inputs`` puts a fixed
    per-channel standardisation (training-set mean / variance) in front of the head
    (not in the paper; it matters on small sets, see benchmarks/compare_training_defaults.py).
    The model saved is the single-output test-time head.
    """
    from ..heads import fit_baseline

    output, objective, loss, precision, sample_weights, features = _check_options(
        head, output, objective, loss, precision, sample_weights, features, distribute)
    for opt, value in (("epochs", epochs), ("batch_size", batch_size),
                       ("width", 1 if width is None else width)):
        if int(value) < 1 or int(value) != value:
            raise ValueError(f"{opt} must be a positive whole number, got {value!r}")
    if not (float(lr) > 0 and math.isfinite(float(lr))):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    start = time.monotonic()
    keras.utils.set_random_seed(int(seed))
    out = Path(out_dir)  # made when there is something to write: a refused run leaves none
    store_path = Path(store_path)

    with FeatureStore.open(store_path) as store:
        lab, al = _resolve_labels(labels, store, val_fraction, test_ids, test_fraction, seed)
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
    lo, hi = lab.score_range
    thr = accuracy_threshold((lo, hi))
    y, n_bins, scores, vocab, mean, std = _targets(lab, output, loss, head, train_m,
                                                   binary_margin, thr)
    weights = None
    if sample_weights == "variance":
        if lab.distribution is None:
            raise ValueError("sample_weights='variance' needs rating distributions in the labels")
        weights = variance_weights(lab.distribution, _label_bin_scores(lab, lab.n_bins), train_m)

    feats = StoreFeatures(store_path, levels, features, memory_limit=memory_limit,
                          progress=progress)
    item_shape = feats.item_shape
    level_names = [lv.name for lv in feats.levels]
    level_channels = [lv.channels for lv in feats.levels]
    channels = sum(level_channels)
    augment = resolve_augment(augment, int(train_m.sum()))
    moments = _feature_moments(feats, rows[train_m]) if normalize_inputs else None
    if workers is None:
        workers = 1 if feats.in_memory else 2
    tr_idx, va_idx = np.flatnonzero(train_m), np.flatnonzero(val_m)
    switch_epoch = None
    with data_parallel(distribute) as dist:
        reps = dist["replicas"]
        batch_size = -(-int(batch_size) // reps) * reps

        def build(policy):
            return _build_models(policy, head, item_shape, features, level_channels, wide_size,
                                 output, n_bins, width, dropout, seed, objective, loss, scores,
                                 std, len(vocab), moments, precision != "float32")

        def sequence(idx, train):
            if not idx.size:
                return None
            w = None if weights is None else weights[idx]
            if objective == "mlsp":  # one stored augmentation a sample
                return FeatureSequence(feats, rows[idx], y[idx], batch_size,
                                       augment if train else "all", train, seed,
                                       workers=workers, multiple_of=reps, sample_weights=w)
            per = max(1, batch_size // feats.n_aug) if reps == 1 else \
                max(reps, batch_size // feats.n_aug // reps * reps)
            return AllAugmentationsSequence(feats, rows[idx], y[idx], per, train, seed, w,
                                            workers=workers, multiple_of=reps)

        train_seq, val_seq = sequence(tr_idx, True), sequence(va_idx, False)
        policy = "float32" if precision in ("float32", "auto") else precision
        train_model, model = build(policy)
        train_model.compile(optimizer=make_optimizer(policy, lr, monitored=precision == "auto"),
                            loss=_loss_fn(head, objective, loss))
        sched = PhasedSchedule(initial_lr=lr, step_epochs=step_epochs, patience=patience,
                               min_lr=min(min_lr, lr), stop_patience=stop_patience,
                               monitor="val_loss" if val_seq is not None else "loss",
                               verbose=int(progress))
        callbacks = [sched, FeedTimer(train_seq)]
        monitor = None
        if precision == "auto":
            monitor = OverflowMonitor(DelayedEntryRule(), verbose=int(progress))
            sched.pausing = True
        hist = train_model.fit(train_seq, validation_data=val_seq, epochs=int(epochs),
                               callbacks=callbacks + ([monitor] if monitor else []),
                               verbose=2 if progress else 0)
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        if monitor is not None:
            done = len(history.get("loss", []))
            sched.pausing = False
            history["mixed_precision"] = [0.0] * done
            if monitor.switch and done < int(epochs) and not sched.stopped:
                switch_epoch = done  # 0-based index of the first mixed-precision epoch
                train_model, model = _switch_to_mixed(
                    train_model, build, _loss_fn(head, objective, loss), sched, train_seq,
                    val_seq, callbacks, epochs, done, progress, history)
            else:
                sched.on_train_end()
        dist["model_devices"] = model_devices(model) if distribute else 1
    if distribute:  # a plain single-device copy for scoring and saving
        model = _undistributed(model)
    history.pop("learning_rate", None)

    sidecar = {
        "format": SIDECAR_FORMAT, "version": 1, "name": name or out.name,
        "head": head, "output": output, "n_bins": n_bins,
        "bin_scores": None if scores is None else scores.tolist(),
        "pooling": features, "wide_size": wide_size if features != "narrow" else 0,
        "levels": level_names, "level_channels": level_channels, "channels": int(channels),
        # what defines the features (store IDENTITY_KEYS), plus the weights' name to find them
        "features": {"weights": config.get("weights"), "weights_path": config.get("weights_path"),
                     **{k: config.get(k) for k in IDENTITY_KEYS}},
        "store": str(store_path.resolve()),
        "target": {"mean": mean, "std": std, "standardized": output == "mos"},
        "score_range": [lo, hi], "accuracy_threshold": thr,
        "train": {"epochs_run": len(history.get("loss", [])), "epochs": int(epochs),
                  "best_epoch": sched.best_epoch, "batch_size": int(batch_size), "lr": float(lr),
                  "augment": augment, "seed": int(seed), "width": width,
                  "dropout": list(dropout), "step_epochs": step_epochs, "patience": patience,
                  "min_lr": min_lr, "stop_patience": stop_patience,
                  "normalize_inputs": bool(normalize_inputs),
                  "feed": "memory" if feats.in_memory else "store",
                  "distribute": {k: (v if k != "devices" else [str(d) for d in v])
                                 for k, v in dist.items()} if distribute else None,
                  "n_train": int(train_m.sum()), "n_val": int(val_m.sum()),
                  "n_test": int(test_m.sum()), "labels_source": lab.source,
                  "objective": objective, "loss": loss, "precision": precision,
                  "precision_switch_epoch": switch_epoch, "sample_weights": sample_weights,
                  "binary_margin": float(binary_margin), "tags": [int(t) for t in vocab]},
        "mlsp_version": __version__, "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }

    mos_pred, dist_pred = score_rows(model, sidecar, feats, rows, batch_size)
    metrics = {"alignment": report, "constant": {}, "baseline_ridge": {}}
    parts = {}
    for part, m in (("train", train_m), ("val", val_m), ("test", test_m)):
        dt = lab.distribution[m] if (lab.distribution is not None and dist_pred is not None) else None
        res = _metrics(lab.mos[m], mos_pred[m], thr, dt, None if dt is None else dist_pred[m])
        metrics[part] = res
        metrics["constant"][part] = _metrics(lab.mos[m], np.full(int(m.sum()), mean), thr)
        if res is not None:
            parts[part] = (lab.mos[m], mos_pred[m], res)
    if baseline:
        metrics["baseline_ridge"] = _ridge(feats if features == "narrow" else None, store_path,
                                           levels, rows, lab, (train_m, val_m, test_m), thr,
                                           baseline_max_rows, seed, memory_limit, progress,
                                           fit_baseline)
    feats.close()

    files = []
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    _write_json(out / SIDECAR, sidecar)
    _write_json(out / "metrics.json", metrics)
    files += [out / MODEL_FILE, out / SIDECAR, out / "metrics.json"]
    with open(out / "history.csv", "w", newline="") as f:
        keys = list(history)
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history.get("loss", []))):
            w.writerow([e + 1, *(history[k][e] if e < len(history[k]) else "" for k in keys)])
    files.append(out / "history.csv")
    _write_predictions(out / "predictions.csv", lab.ids, split, lab.mos, mos_pred, dist_pred)
    files.append(out / "predictions.csv")
    if plots:
        what = head if (objective, loss) in (("mlsp", "mse"), ("mlsp", "emd")) else \
            f"{head} ({objective}, {loss})"
        p1 = plot_scatter(out / "scatter.png", {k: parts.get(k) for k in ("val", "test")},
                          (lo, hi), f"{what} on {store_path.name}")
        p2 = plot_history(out / "learning_curves.png", history)
        files += [p for p in (p1, p2) if p]
    result = TrainResult(out_dir=out, model=model, sidecar=sidecar, history=history,
                         metrics=metrics,
                         predictions={"ids": lab.ids, "split": split, "mos_true": lab.mos,
                                      "mos_pred": mos_pred, "dist_pred": dist_pred},
                         alignment=report, seconds=time.monotonic() - start, files=files)
    if progress:
        print(result.summary())
    return result


def _undistributed(model: keras.Model) -> keras.Model:
    """A copy of a model trained under a distribution, with its variables on one device."""
    plain = keras.models.clone_model(model)
    plain.set_weights([keras.ops.convert_to_numpy(w) for w in model.get_weights()])
    return plain


def _feature_moments(feats: StoreFeatures, rows, block: int = 256):
    """Per-channel mean and variance of the stored features of ``rows`` (all augmentations)."""
    total, sq, count = 0.0, 0.0, 0
    for a in range(0, len(rows), block):
        x = feats.get(rows[a:a + block]).astype(np.float64)
        x = x.reshape(-1, x.shape[-1])
        total, sq, count = total + x.sum(0), sq + (x * x).sum(0), count + x.shape[0]
    mean = total / count
    return mean, np.maximum(sq / count - mean * mean, 0.0)


def _with_input_normalization(head: keras.Model, mean, variance) -> keras.Model:
    """``head`` behind a fixed (non-trainable) per-channel standardisation layer."""
    inp = keras.Input(head.input_shape[1:], dtype="float32", name="features")
    norm = keras.layers.Normalization(axis=-1, mean=mean.astype("float32"),
                                      variance=variance.astype("float32"), name="standardize")
    return keras.Model(inp, head(norm(inp)), name=head.name)


def _ridge(feats, store_path, levels, rows, lab, masks, thr, max_rows, seed, memory_limit,
           progress, fit_baseline):
    """Ridge regression on narrow features averaged over augmentations (reference)."""
    own = feats is None
    if own:
        feats = StoreFeatures(store_path, levels, "narrow", memory_limit=memory_limit,
                              progress=progress)
    try:
        train_m = masks[0]
        tr = np.flatnonzero(train_m)
        if tr.size > max_rows:
            tr = np.sort(np.random.default_rng(seed).choice(tr, max_rows, replace=False))
        pipe = fit_baseline(feats.mean_over_augmentations(rows[tr]), lab.mos[tr], kind="ridge")
        out = {"fit_rows": int(tr.size)}
        for part, m in zip(("train", "val", "test"), masks):
            idx = np.flatnonzero(m)
            if idx.size:
                pred = pipe.predict(feats.mean_over_augmentations(rows[idx]))
                out[part] = _metrics(lab.mos[idx], pred, thr)
            else:
                out[part] = None
        return out
    finally:
        if own:
            feats.close()


# -- evaluation of a trained model on a store ---------------------------------------------
def evaluate_trained(model_path, store_path, labels, out_dir=None, batch_size=128,
                     split: str | None = None, progress: bool = True) -> dict:
    """Metrics of a trained model on the labelled images of a store (all, or one split)."""
    from ..labels import align_with_store, load_labels

    model, sidecar = load_trained(model_path)
    if not hasattr(labels, "mos"):
        labels = load_labels(labels)
    with FeatureStore.open(store_path) as store:
        check_compatible(sidecar, store)
        al = align_with_store(labels, store)
    if len(al) == 0:
        raise ValueError(f"{store_path}: none of the labelled images is extracted ({al.report()})")
    lab = labels.subset(al.label_index)
    rows = al.store_index
    if split is not None:
        if lab.split is None:
            raise ValueError(f"{lab.source or 'labels'}: no split column, so no {split!r} split "
                             "(add a split column, or pass the test ids with --test-list)")
        keep = lab.split_mask(split)
        if not keep.any():
            raise ValueError(f"{lab.source or 'labels'}: no extracted image in split {split!r}")
        lab, rows = lab.subset(keep), rows[keep]
    feats = StoreFeatures(store_path, sidecar["levels"], sidecar["pooling"], progress=progress)
    try:
        mos_pred, dist_pred = score_rows(model, sidecar, feats, rows, batch_size)
    finally:
        feats.close()
    use_dist = dist_pred is not None and lab.distribution is not None \
        and lab.distribution.shape == dist_pred.shape
    metrics = _metrics(lab.mos, mos_pred, accuracy_threshold(lab.score_range),
                       lab.distribution if use_dist else None, dist_pred if use_dist else None)
    result = {"model": str(model_path), "store": str(store_path), "alignment": al.report(),
              "split": split or "all", "metrics": metrics}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "evaluation.json", result)
        sp = lab.split if lab.split is not None else np.full(len(lab), "", dtype=object)
        _write_predictions(out / "predictions.csv", lab.ids, sp, lab.mos, mos_pred, dist_pred)
        plot_scatter(out / "scatter.png", {split or "all": (lab.mos, mos_pred, metrics)},
                     lab.score_range, f"{sidecar.get('name', '')} on {Path(store_path).name}")
    return result
