"""K-fold cross-validation of a head on stored features, repeated over seeds.

A single split of a few hundred images decides nothing (a 95% interval of about +-0.06
on SRCC), so comparisons are made on out-of-fold predictions: every labelled image is
predicted once per seed by a model that never saw it.  The interval around a mean over
the K x S fold results is the corrected repeated k-fold t interval (Nadeau and Bengio
2003, Bouckaert and Frank 2004): the variance is inflated by ``1/n + n_test/n_train``
because the folds share training images; a plain t interval would be too narrow.  Each
metric's interval is computed on a scale where it is unbounded (Fisher z for correlations,
log for errors): :mod:`mlsp.evaluation.intervals`, the one rule for every report.

The model kept is the ensemble of the K fold models of the first seed (their outputs
averaged, MOS outputs mapped back to the rating scale first), saved as one Keras model:
it predicts as well as its folds on average, usually better, and needs no refit with an
epoch count nobody validated.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..evaluation.intervals import as_interval, corrected_t, metric_interval, paired_difference
from ..evaluation.metrics import evaluate_predictions

__all__ = ["assign_folds", "corrected_interval", "cross_validate", "CVResult", "ROWS"]

#: The rows of a cross-validation report: the head, then the two references every run fits.
ROWS = ("head", "baseline_ridge", "constant")
SUMMARY_METRICS = ("srcc", "plcc", "accuracy", "rmse", "emd")


def assign_folds(ids, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) of each id: deterministic, disjoint, sizes differing by at most one.

    Depends on the set of ids and the seed only (ids are sorted before the seeded draw),
    not on the order the labels come in.
    """
    ids = np.asarray([str(i) for i in ids], dtype=object)
    k = int(k)
    if k < 2:
        raise ValueError(f"folds must be at least 2, got {k}")
    if len(ids) < 2 * k:
        raise ValueError(f"{len(ids)} labelled images are too few for {k} folds "
                         f"(at least {2 * k} needed)")
    order = np.argsort(ids.astype(str), kind="stable")
    perm = order[np.random.default_rng([int(seed), 11]).permutation(len(ids))]
    folds = np.empty(len(ids), dtype=np.int64)
    folds[perm] = np.arange(len(ids)) % k
    return folds


def corrected_interval(values, test_fraction: float, level: float = 0.95):
    """``(mean, low, high)`` of fold results by the corrected repeated k-fold t interval
    on the raw scale (no bounds; :mod:`mlsp.evaluation.intervals` maps each metric to its
    own scale first and is what the reports use).

    ``test_fraction`` = n_test / n_train of one fold (1/(K-1) for K folds).  NaNs are
    dropped; fewer than two values give an interval of NaN.
    """
    m, half = corrected_t(values, test_fraction, level)
    return m, m - half, m + half


@dataclass
class CVResult:
    """Per-fold metrics, out-of-fold predictions and the fold models of a cross-validation."""

    folds: int
    seeds: tuple
    rows: list            # one dict per (seed, fold, row): metrics of that fold's test part
    oof: dict             # seed -> dict(ids, fold, mos_true, mos_pred)
    models: list          # (keras model, sidecar) of the first seed's folds
    test_fraction: float  # n_test / n_train of a fold, for the interval
    held_out: dict | None = None   # metrics of the ensemble on a given test split
    trained: object = None  # the fold ensemble as a TrainedHead (mlsp.cross_validate)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)

    def values(self, row: str, metric: str) -> list:
        return [r.get(metric) for r in self.rows if r["row"] == row]

    def fold_values(self, row: str, metric: str) -> dict:
        """``{(seed, fold): value}`` of one row's metric (the key pairs runs on the same
        folds: fold assignment depends on the ids and the seed only)."""
        return {(r["seed"], r["fold"]): r.get(metric) for r in self.rows
                if r["row"] == row and r.get(metric) is not None}

    def summary(self) -> dict:
        """``{row: {metric: {mean, low, high, n_folds, method}}}`` plus
        ``head_minus_ridge`` (paired on the same folds); intervals from
        :func:`mlsp.evaluation.intervals.metric_interval`."""
        out = {}
        for row in ROWS:
            out[row] = {m: metric_interval(m, self.values(row, m), self.test_fraction).as_dict()
                        for m in SUMMARY_METRICS if any(v is not None for v in self.values(row, m))}
        for m in ("srcc", "plcc"):
            h, r = self.values("head", m), self.values("baseline_ridge", m)
            if h and len(h) == len(r) and all(v is not None for v in h + r):
                out.setdefault("head_minus_ridge", {})[m] = paired_difference(
                    h, r, m, self.test_fraction).as_dict()
        return out

    def oof_metrics(self) -> dict:
        """SRCC / PLCC of each seed's out-of-fold predictions over all CV images."""
        return {int(s): evaluate_predictions(o["mos_true"], o["mos_pred"])
                for s, o in self.oof.items()}

    def model_counts(self) -> dict:
        """How many test folds each model was the head in (``--head auto`` picks per fold)."""
        out = {}
        for r in self.rows:
            if r["row"] == "head":
                name = r.get("model") or "head"
                out[name] = out.get(name, 0) + 1
        return out

    def head_name(self) -> str:
        """``the head`` (one model in every fold) or what ``--head auto`` chose per fold."""
        m = self.model_counts()
        if len(m) <= 1:
            name = next(iter(m), "head")
            return "the head" if name == "head" else f"the head ({name})"
        return "auto's choice (" + ", ".join(f"{k} in {v}" for k, v in m.items()) + " folds)"

    def verdict(self) -> str:
        """One line saying whether the head beats the ridge baseline, with both numbers
        (none when the head is ridge itself in every fold: no model is compared with itself)."""
        s = self.summary()
        h, r = as_interval(s["head"].get("srcc")), as_interval(s["baseline_ridge"].get("srcc"))
        if not h or not r or set(self.model_counts()) == {"ridge"}:
            return ""
        d = as_interval(s.get("head_minus_ridge", {}).get("srcc")) or as_interval(
            [h.mean - r.mean, math.nan, math.nan])
        if d.low > 0:
            word = "beats"
        elif d.high < 0:
            word = "is WORSE than"
        else:
            word = "does not clearly beat"
        return (f"{self.head_name()} {word} ridge: SRCC {h.mean:.3f} vs {r.mean:.3f} "
                f"(difference {d.mean:+.3f}, 95% interval {d.low:+.3f} to {d.high:+.3f})")

    def ensemble(self):
        """One Keras model averaging the first seed's fold models, and its sidecar."""
        return ensemble_models(self.models)


def ensemble_models(models):
    """``(model, sidecar)`` averaging fold models: MOS heads are mapped back to the rating
    scale (their own target mean / std) before the mean, distribution heads averaged as
    distributions.  The sidecar is the first fold's with an identity target map."""
    import keras

    first_model, first = models[0]
    if len(models) == 1:
        return first_model, first
    inp = keras.Input(first_model.input_shape[1:], dtype="float32", name="features")
    outs = []
    for j, (m, sc) in enumerate(models):
        sub = keras.Model(m.input, m.output, name=f"fold{j}")
        y = sub(inp)
        if sc["output"] == "mos":
            t = sc["target"]
            y = keras.layers.Rescaling(float(t["std"]), offset=float(t["mean"]),
                                       name=f"fold{j}_to_scale")(y)
        outs.append(y)
    model = keras.Model(inp, keras.layers.Average(name="ensemble")(outs),
                        name=f"{first.get('head', 'head')}_ensemble")
    sidecar = dict(first)
    if first["output"] == "mos":
        sidecar["target"] = {"mean": 0.0, "std": 1.0, "standardized": True,
                             "folds": [m[1]["target"] for m in models]}
    sidecar["ensemble"] = {"folds": len(models)}
    return model, sidecar


def _fold_labels(lab, folds, j, val_fraction, seed):
    """Labels of the CV images with fold ``j`` as 'test', the rest split train / val."""
    from dataclasses import replace

    from ..labels.split import split_labels

    test_ids = [lab.ids[i] for i in np.flatnonzero(folds == j)]
    return split_labels(replace(lab, split=None), val_fraction, seed * 1000 + j, test_ids)


def _default_fit(store_path, labels, seed, options):
    from .trainer import train

    return train(store_path, labels, seed=seed, progress=False, **options)


def cross_validate(store_path, labels, folds: int = 5, seeds=(0,), val_fraction="auto",
                   test_ids=None, progress: bool = True, fit=None, **options) -> CVResult:
    """Train K x S heads on K folds of the labelled images, for each seed.

    ``labels``: :class:`mlsp.labels.Labels` or a label file.  Images in a given test split
    (a ``split`` column's 'test' rows, or ``test_ids``) take no part in the folds; the
    fold ensemble is scored on them at the end (``held_out``).  Each fold holds out its
    images as 'test' and splits the rest into 'val' (``val_fraction``, for the schedule;
    ``"auto"``: :func:`mlsp.training.config.regime`)
    and 'train'.  ``options`` go to the trainer (head, lr, epochs, ...).  ``fit`` replaces
    the trainer (tests); it gets ``(store_path, labels, seed, options)`` and returns an
    object with ``model``, ``sidecar``, ``metrics`` and ``predictions``.
    """
    from ..labels import aligned_labels
    from ..stores.features import FeatureStore

    fit = fit or _default_fit
    seeds = tuple(int(s) for s in (seeds if np.ndim(seeds) else [seeds]))
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    with FeatureStore.open(store_path) as store:
        lab, _ = aligned_labels(labels, store)
    test_mask = lab.test_mask(test_ids)
    held = lab.subset(test_mask) if test_mask.any() else None
    cv = lab.subset(~test_mask)
    start = time.monotonic()
    rows, oof, models = [], {}, []
    n_folds = int(folds)
    for s in seeds:
        fold_of = assign_folds(cv.ids, n_folds, s)
        pred = np.full(len(cv), np.nan)
        for j in range(n_folds):
            res = fit(store_path, _fold_labels(cv, fold_of, j, val_fraction, s), s, dict(options))
            p = res.predictions
            index = {i: k for k, i in enumerate(p["ids"])}
            for i in np.flatnonzero(fold_of == j):
                pred[i] = p["mos_pred"][index[cv.ids[i]]]
            for row in ROWS:
                m = (res.metrics.get(row) if row != "head" else res.metrics) or {}
                rows.append({"seed": s, "fold": j, "row": row,
                             "model": res.sidecar.get("head") if row == "head" else row,
                             "n_train": res.sidecar["train"]["n_train"],
                             "epochs_run": res.sidecar["train"]["epochs_run"],
                             **(m.get("test") or {})})
            if s == seeds[0]:
                models.append((res.model, res.sidecar))
            if progress:
                h = res.metrics.get("test") or {}
                r = (res.metrics.get("baseline_ridge") or {}).get("test") or {}
                print(f"seed {s} fold {j + 1}/{n_folds}: {res.sidecar.get('head')} test SRCC "
                      f"{h.get('srcc', math.nan):.3f}"
                      f" (ridge {r.get('srcc', math.nan):.3f}), "
                      f"{res.sidecar['train']['epochs_run']} epochs", flush=True)
        oof[s] = {"ids": list(cv.ids), "fold": fold_of, "mos_true": cv.mos, "mos_pred": pred}
    result = CVResult(folds=n_folds, seeds=seeds, rows=rows, oof=oof, models=models,
                      test_fraction=1.0 / (n_folds - 1), seconds=time.monotonic() - start,
                      options=dict(options, val_fraction=val_fraction))
    if held is not None:
        result.held_out = _score_held_out(result, store_path, held)
    return result


def _score_held_out(result, store_path, held):
    """Metrics of the fold ensemble on the images of a given test split (the trained
    head's own evaluation: alignment, compatibility check, averaged augmentations)."""
    from ..inference.trained_head import TrainedHead

    return TrainedHead(*result.ensemble()).evaluate(store_path, held)["metrics"]
