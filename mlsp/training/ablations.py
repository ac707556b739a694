"""Ablations for the extensions: pooling kinds (M+MNet Table 4 / MTP-NasNet SPP) and
training objectives / losses (Sheng et al. Table 2; M+MNet Table 6).

``ablate_pooling`` trains the same head (:func:`mlsp.heads.cells.build_cells_3fc`,
a per-cell 1x1 layer + 3FC, which takes both P x P grids and SPP's 26 cells) on each
feature kind of one store: ``wide`` (area, MLSP), ``wide_fore`` (ForePool, M+MNet Eq. 1),
``wide_back`` (BackPool, Eq. 2), ``spp`` (MTP-NasNet 1x1 + 3x3 + 4x4), skipping kinds the
store lacks (noted in the CSV).  ``ablate_objective`` trains one head with the MLSP
default (one random augmentation per epoch, MSE) and MP_avg / MP_min / MP_ada
(all augmentations as patches), and, when the labels have distributions, with
MSE / EMD / Re-EMD under the MLSP objective.  Each writes a CSV and a PNG bar chart.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..evaluation.plots import pyplot
from ..evaluation.reports import fmt
from ..stores.features import FeatureStore

__all__ = ["ablate_levels", "ablate_pooling", "ablate_objective", "POOLING_KINDS"]

POOLING_KINDS = (("area", "wide"), ("fore", "wide_fore"), ("back", "wide_back"), ("spp", "spp"))
_METRICS = ("srcc", "plcc", "accuracy", "rmse", "emd")


def _row(res, **extra):
    row = dict(extra)
    row["channels"] = res.sidecar["channels"]
    row["epochs_run"] = res.sidecar["train"]["epochs_run"]
    row["seconds"] = round(res.seconds, 1)
    for part in ("val", "test"):
        m = res.metrics.get(part) or {}
        for k in _METRICS:
            row[f"{part}_{k}"] = m.get(k)
    return row


def _write(out, stem, rows, label_key, title):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)

    plt = pyplot()
    done = [r for r in rows if r.get("note") in (None, "")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(done) + 2), 4))
    x = np.arange(len(done))
    parts = [p for p in ("val", "test", "cv") if any(r.get(f"{p}_srcc") is not None
                                                      for r in done)]
    width = 0.8 / max(1, len(parts))
    for i, part in enumerate(parts):
        ys = [np.nan if r.get(f"{part}_srcc") is None else r[f"{part}_srcc"] for r in done]
        err = None
        if part == "cv":  # cross-validated: the mean's 95% interval
            err = [[y - r["cv_srcc_lo"] for y, r in zip(ys, done)],
                   [r["cv_srcc_hi"] - y for y, r in zip(ys, done)]]
        label = "test-fold SRCC (95% interval)" if part == "cv" else f"{part} SRCC"
        bars = ax.bar(x + (i - (len(parts) - 1) / 2) * width, ys, width, label=label,
                      yerr=err, capsize=4 if err else 0)
        for b, v in zip(bars, ys):
            if np.isfinite(v):
                ax.annotate(f"{v:.3f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
    ax.set_xticks(x, [r[label_key] for r in done], rotation=15)
    ax.set_ylabel("SRCC")
    ax.set_title(title)
    if parts:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    plt.close(fig)


def _run(store_path, labels, out, tag, options, folds, seeds, kw, **row):
    """One ablation row: a single split (val / test metrics, model folder ``out/tag``) or,
    with ``folds``, K-fold cross-validation (mean and 95% interval of the test folds)."""
    from .trainer import train_head

    if not folds:
        res = train_head(store_path, labels, out_dir=out / tag, progress=False, **options, **kw)
        return _row(res, **row)
    from .crossval import cross_validate

    kw = {k: v for k, v in kw.items() if k != "seed"}  # the seeds replace it
    res = cross_validate(store_path, labels, folds=folds, seeds=seeds, progress=False,
                         **options, **kw)
    s = res.summary()
    row.update(folds=folds, seeds=len(res.seeds), seconds=round(res.seconds, 1))
    for k in _METRICS:
        m = s["head"].get(k)
        if m:
            row[f"cv_{k}"], row[f"cv_{k}_lo"], row[f"cv_{k}_hi"] = m
    ridge = s["baseline_ridge"].get("srcc")
    if ridge:
        row["ridge_srcc"], row["ridge_srcc_lo"], row["ridge_srcc_hi"] = ridge
    return row


def _srcc_text(row) -> str:
    if "cv_srcc" in row:
        return (f"SRCC {fmt(row['cv_srcc'])} [{fmt(row['cv_srcc_lo'])}, "
                f"{fmt(row['cv_srcc_hi'])}] over {row['folds']} folds x {row['seeds']} seed(s)")
    return f"val SRCC {fmt(row.get('val_srcc'))}, test SRCC {fmt(row.get('test_srcc'))}"


def ablate_pooling(store_path, labels, out_dir="ablation", head="cells_3fc", epochs=100,
                   progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """Train ``head`` on every pooling kind the store has; ``ablation_pooling.csv`` / ``.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with FeatureStore.open(store_path) as store:
        have = {kind: store.has(kind) for _, kind in POOLING_KINDS}
    rows = []
    for name, kind in POOLING_KINDS:
        if not have[kind]:
            rows.append({"pooling": name, "features": kind,
                         "note": f"store has no features/{kind}; skipped"})
            if progress:
                print(f"{name:5s}: skipped (store has no features/{kind})")
            continue
        rows.append(_run(store_path, labels, out, f"pooling_{name}",
                         dict(head=head, features=kind, epochs=epochs), folds, seeds, kw,
                         pooling=name, features=kind, note=""))
        if progress:
            print(f"{name:5s} ({kind}): {_srcc_text(rows[-1])}")
    _write(out, "ablation_pooling", rows, "pooling", f"{head}: pooling kinds")
    return rows


def ablate_objective(store_path, labels, out_dir="ablation", head="single_3fc", epochs=100,
                     progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """MLSP vs MP_avg / MP_min / MP_ada (MSE), then MSE / EMD / Re-EMD if distributions
    exist; ``ablation_objective.csv`` / ``.png``."""
    from ..labels import load_labels

    if not hasattr(labels, "mos"):
        labels = load_labels(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [("mlsp", "mse"), ("mp_avg", "mse"), ("mp_min", "mse"), ("mp_ada", "mse")]
    if labels.distribution is not None:
        runs += [("mlsp", "emd"), ("mlsp", "re_emd")]
    rows = []
    for objective, loss in runs:
        tag = f"{objective}+{loss}"
        rows.append(_run(store_path, labels, out, f"objective_{objective}_{loss}",
                         dict(head=head, objective=objective, loss=loss, epochs=epochs),
                         folds, seeds, kw, run=tag, objective=objective, loss=loss))
        if progress:
            print(f"{tag:14s}: {_srcc_text(rows[-1])}")
    if labels.distribution is None:
        rows.append({"run": "emd / re_emd", "note": "labels have no distributions; skipped"})
    _write(out, "ablation_objective", rows, "run", f"{head}: objectives and losses")
    return rows


def ablate_levels(store_path, labels, head="single_3fc", out_dir="ablation", epochs=100,
                  ks=None, progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """Train ``head`` on the last k levels for k = 1..L (MLSP Fig. 7); CSV + PNG.  With
    ``folds``, each k is cross-validated and plotted with its 95% interval."""
    with FeatureStore.open(store_path) as store:
        n_levels = len(store.levels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in (ks or range(1, n_levels + 1)):
        row = _run(store_path, labels, out, f"last_{k:02d}",
                   dict(head=head, levels=f"-{k}:", epochs=epochs), folds, seeds, kw, k=k)
        rows.append(row)
        if progress:
            print(f"last {k:2d} levels: {_srcc_text(row)}")
    keys = list(rows[0]) if rows else ["k"]
    with open(out / "ablation_levels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks_done = [r["k"] for r in rows]
    if folds:
        m = np.array([r.get("cv_srcc", np.nan) for r in rows], float)
        lo = np.array([r.get("cv_srcc_lo", np.nan) for r in rows], float)
        hi = np.array([r.get("cv_srcc_hi", np.nan) for r in rows], float)
        ax.errorbar(ks_done, m, yerr=[m - lo, hi - m], fmt="o-", capsize=3,
                    label=f"test-fold SRCC, {folds} folds x {len(tuple(seeds))} seed(s), 95%")
    for part in () if folds else ("val", "test"):
        ys = [r[f"{part}_srcc"] for r in rows]
        if any(v is not None for v in ys):
            ax.plot(ks_done, [np.nan if v is None else v for v in ys], "o-",
                    label=f"{part} SRCC")
    ax.set_xlabel("number of levels (from the last)")
    ax.xaxis.get_major_locator().set_params(integer=True)  # k counts levels
    ax.set_ylabel("SRCC")
    ax.set_title(f"{head}: SRCC vs levels (cf. MLSP Fig. 7)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablation_levels.png", dpi=110)
    plt.close(fig)
    return rows
