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
from .schedule import MLSPSchedule

__all__ = ["TrainResult", "train_head", "load_trained", "check_compatible", "score_rows",
           "evaluate_trained", "ablate_levels", "accuracy_threshold", "SIDECAR", "MODEL_FILE"]

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


def _f(x, digits=3):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


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


# -- plots --------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scatter(path, parts: dict, score_range, title=""):
    """Predicted vs true MOS, one panel per split, SRCC / PLCC in the panel titles."""
    plt = _plt()
    parts = {k: v for k, v in parts.items() if v is not None and len(v[0])}
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(4.5 * len(parts), 4.3), squeeze=False)
    lo, hi = score_range
    for ax, (name, (t, p, m)) in zip(axes[0], parts.items()):
        ax.scatter(t, p, s=8, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("true MOS")
        ax.set_ylabel("predicted MOS")
        ax.set_title(f"{name} (n={len(t)}): SRCC {_f(m['srcc'])}, PLCC {_f(m['plcc'])}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(path, history: dict):
    """Training / validation loss per epoch, learning rate on a log axis."""
    plt = _plt()
    n = len(history.get("loss", []))
    if not n:
        return None
    ep = np.arange(1, n + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(ep, history["loss"], label="train loss")
    if "val_loss" in history:
        ax.plot(ep, history["val_loss"], label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    if "lr" in history:
        ax2.plot(ep, history["lr"], "k:", label="learning rate")
        ax2.set_yscale("log")
        ax2.set_ylabel("learning rate")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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

    Extensions (handed to :func:`mlsp.training.extended.train_extended`): ``head``
    ``mnet`` / ``multitask``, ``objective`` (``mlsp``, ``mp_avg``, ``mp_min``, ``mp_ada``),
    ``loss`` (``mse``, ``emd``, ``re_emd``), ``precision`` (``float32``, ``mixed_float16``,
    ``mixed_bfloat16``, ``auto``), ``sample_weights="variance"``, ``features`` (a stored
    kind), ``binary_margin`` (multitask).

    ``labels``: a :class:`mlsp.labels.Labels` or a label file.  Labels are matched to
    store rows by id; unmatched / failed images are reported and left out.  If the
    labels carry no split, 5% (``val_fraction``) of the images become the validation
    set (MLSP sec. 3.3); ``test_ids`` (or ``test_fraction``) set a test part.
    ``head``: one of :data:`mlsp.heads.HEADS` (``pool_3fc`` trains on wide features).
    ``output="mos"`` regresses the z-scored MOS with MSE (sec. 3.3);
    ``"distribution"`` predicts the rating distribution with an EMD loss and scores
    by its expectation.  ``augment``: ``random`` (one stored augmentation per image
    and epoch, sec. 3.1), ``all`` (every stored augmentation, every epoch) or ``auto``
    (``all`` below :data:`AUTO_ALL_BELOW` training images, else ``random``).
    ``distribute``: data-parallel over all local devices (:mod:`.distribute`); the
    batch size is rounded up to a multiple of the device count.  Features larger than
    ``memory_limit`` bytes are streamed from the store (bounded prefetch queue); the
    history records the feeder's time (``feed_s``, ``feed_share``, ``peak_batches``).  Schedule arguments: see
    :class:`mlsp.training.schedule.MLSPSchedule`.  ``normalize_inputs`` puts a fixed
    per-channel standardisation (training-set mean / variance) in front of the head
    (not in the paper; it matters on small sets, see benchmarks/compare_training_defaults.py).
    """
    from ..heads import build_head, emd_loss, fit_baseline
    from .extended import needs_extended, train_extended

    if needs_extended(head, objective, loss, precision, sample_weights, features) \
            or (loss == "emd" and output == "mos"):
        return train_extended(**{k: v for k, v in locals().items()
                                 if k not in ("build_head", "emd_loss", "fit_baseline",
                                              "needs_extended", "train_extended")},
                              augment_resolver=resolve_augment)

    start = time.monotonic()
    keras.utils.set_random_seed(int(seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = Path(store_path)
    kind = "wide" if head == "pool_3fc" else "narrow"

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

    feats = StoreFeatures(store_path, levels, kind, memory_limit=memory_limit, progress=progress)
    channels = feats.item_shape[-1]
    level_names = [lv.name for lv in feats.levels]
    level_channels = [lv.channels for lv in feats.levels]

    lo, hi = lab.score_range
    mean = float(lab.mos[train_m].mean())
    std = float(lab.mos[train_m].std()) or 1.0
    if output == "mos":
        n_bins, scores = None, None
        y = standardize(lab.mos, mean, std).astype(np.float32)[:, None]
        loss = "mse"
    elif output == "distribution":
        if lab.distribution is None:
            raise ValueError("output='distribution' needs rating distributions in the labels "
                             "(e.g. AVA.txt, or p1..pK columns)")
        n_bins = lab.n_bins
        scores = _label_bin_scores(lab, n_bins)
        y = lab.distribution.astype(np.float32)
        loss = emd_loss(2)
    else:
        raise ValueError(f"output must be 'mos' or 'distribution', got {output!r}")

    augment = resolve_augment(augment, int(train_m.sum()))
    with data_parallel(distribute) as dist:
        reps = dist["replicas"]
        batch_size = -(-int(batch_size) // reps) * reps
        model = build_head(head, channels, level_channels=level_channels, wide_size=wide_size,
                           output=output, n_bins=n_bins or 10, width=width, dropout=dropout,
                           seed=seed)
        if normalize_inputs:
            model = _with_input_normalization(model, *_feature_moments(feats, rows[train_m]))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss)
        if workers is None:
            workers = 1 if feats.in_memory else 2
        tr_idx, va_idx = np.flatnonzero(train_m), np.flatnonzero(val_m)
        train_seq = FeatureSequence(feats, rows[tr_idx], y[tr_idx], batch_size, augment, True,
                                    seed, workers=workers, multiple_of=reps)
        val_seq = (FeatureSequence(feats, rows[va_idx], y[va_idx], batch_size, "all", False,
                                   seed, workers=workers, multiple_of=reps)
                   if va_idx.size else None)
        sched = MLSPSchedule(initial_lr=lr, step_epochs=step_epochs, patience=patience,
                             min_lr=min(min_lr, lr), stop_patience=stop_patience,
                             monitor="val_loss" if val_seq is not None else "loss",
                             verbose=int(progress))
        hist = model.fit(train_seq, validation_data=val_seq, epochs=int(epochs),
                         callbacks=[sched, FeedTimer(train_seq)], verbose=2 if progress else 0)
        dist["model_devices"] = model_devices(model) if distribute else 1
    if distribute:  # a plain single-device copy for scoring and saving
        model = _undistributed(model)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history.pop("learning_rate", None)

    sidecar = {
        "format": SIDECAR_FORMAT, "version": 1, "name": name or out.name,
        "head": head, "output": output, "n_bins": n_bins,
        "bin_scores": None if scores is None else scores.tolist(),
        "pooling": kind, "wide_size": wide_size if kind == "wide" else 0,
        "levels": level_names, "level_channels": level_channels, "channels": int(channels),
        # what defines the features (store IDENTITY_KEYS), plus the weights' name to find them
        "features": {"weights": config.get("weights"),
                     **{k: config.get(k) for k in IDENTITY_KEYS}},
        "store": str(store_path.resolve()),
        "target": {"mean": mean, "std": std, "standardized": output == "mos"},
        "score_range": [lo, hi], "accuracy_threshold": accuracy_threshold((lo, hi)),
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
                  "n_test": int(test_m.sum()), "labels_source": lab.source},
        "mlsp_version": __version__, "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }

    mos_pred, dist_pred = score_rows(model, sidecar, feats, rows, batch_size)
    thr = sidecar["accuracy_threshold"]
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
        metrics["baseline_ridge"] = _ridge(feats if kind == "narrow" else None, store_path, levels,
                                           rows, lab, (train_m, val_m, test_m), thr,
                                           baseline_max_rows, seed, memory_limit, progress,
                                           fit_baseline)
    feats.close()

    files = []
    model.save(out / MODEL_FILE)
    _write_json(out / SIDECAR, sidecar)
    _write_json(out / "metrics.json", metrics)
    files += [out / MODEL_FILE, out / SIDECAR, out / "metrics.json"]
    with open(out / "history.csv", "w", newline="") as f:
        keys = list(history)
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history.get("loss", []))):
            w.writerow([e + 1, *(history[k][e] for k in keys)])
    files.append(out / "history.csv")
    _write_predictions(out / "predictions.csv", lab.ids, split, lab.mos, mos_pred, dist_pred)
    files.append(out / "predictions.csv")
    if plots:
        p1 = plot_scatter(out / "scatter.png", {k: parts.get(k) for k in ("val", "test")},
                          (lo, hi), f"{head} on {store_path.name}")
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
        keep = lab.split_mask(split)
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


# -- MLSP Fig. 7: performance vs number of levels -----------------------------------------
def ablate_levels(store_path, labels, head="single_3fc", out_dir="ablation", epochs=100,
                  ks=None, progress=True, **kw) -> list[dict]:
    """Train ``head`` on the last k levels for k = 1..L (MLSP Fig. 7); CSV + PNG."""
    with FeatureStore.open(store_path) as store:
        n_levels = len(store.levels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in (ks or range(1, n_levels + 1)):
        res = train_head(store_path, labels, head=head, levels=f"-{k}:", epochs=epochs,
                         out_dir=out / f"last_{k:02d}", progress=False, **kw)
        row = {"k": k, "channels": res.sidecar["channels"], "epochs_run":
               res.sidecar["train"]["epochs_run"]}
        for part in ("val", "test"):
            m = res.metrics.get(part) or {}
            row[f"{part}_srcc"], row[f"{part}_plcc"] = m.get("srcc"), m.get("plcc")
        rows.append(row)
        if progress:
            print(f"last {k:2d} levels ({row['channels']} channels): val SRCC "
                  f"{_f(row['val_srcc'])}, test SRCC {_f(row['test_srcc'])}")
    keys = list(rows[0]) if rows else ["k"]
    with open(out / "ablation_levels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for part in ("val", "test"):
        ys = [r[f"{part}_srcc"] for r in rows]
        if any(v is not None for v in ys):
            ax.plot([r["k"] for r in rows], [np.nan if v is None else v for v in ys], "o-",
                    label=f"{part} SRCC")
    ax.set_xlabel("number of levels (from the last)")
    ax.set_ylabel("SRCC")
    ax.set_title(f"{head}: SRCC vs levels (cf. MLSP Fig. 7)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablation_levels.png", dpi=110)
    plt.close(fig)
    return rows
