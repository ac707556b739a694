"""Does per-photo uncertainty mean anything?  Nested cross-validation on real ratings.

Out-of-fold predictions of one cross-validation carry no spread (each photo is scored by
one model), so this nests: OASIS is split into ``--outer`` folds; on each outer training
part

- a fold ensemble is cross-validated (``--inner`` folds, ``--ensemble-head``, the same
  :func:`mlsp.training.crossval.cross_validate` and fold ensemble ``mlsp train --folds``
  saves) and scores the outer test photos: ``spread`` = std of its fold models' scores;
- a distribution head (``--dist-head``, output distribution c1..c7, EMD loss) is trained
  once and scores them: ``score_std`` = std of its predicted distribution;

then, per outer fold, Spearman(spread, |error|), Spearman(score_std, |error|) and
Spearman(score_std, mos_std) (the raters' true standard deviation).  Means with 95%
intervals over the outer folds (:mod:`mlsp.evaluation.intervals`: Fisher z, corrected
t), and the same over all outer test photos pooled.  Written: ``uncertainty.json``,
``uncertainty_photos.csv`` (every outer test photo), ``uncertainty.png``.

    python benchmarks/bench_uncertainty.py --store /work/cache/feats/oasis_mnv2.h5 \\
        --labels ../shared/data/oasis/labels.csv --ensemble-head ridge
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

HERE = Path(__file__).resolve().parent


def _rho(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok])[0]) if ok.sum() > 2 else float("nan")


def _mos_std(labels_path) -> dict:
    with open(labels_path, newline="") as f:
        return {r["id"]: float(r["mos_std"]) for r in csv.DictReader(f)
                if r.get("mos_std") not in (None, "")}


def outer_fold(store, lab, test_mask, a, o) -> list[dict]:
    """Score the outer test photos of fold ``o`` with both kinds of uncertainty."""
    from mlsp.inference.trained_head import TrainedHead
    from mlsp.training.crossval import cross_validate
    from mlsp.labels.split import split_labels
    from mlsp.training.trainer import train

    train_lab = replace(lab.subset(~test_mask), split=None)
    test_ids = list(np.asarray(lab.ids, dtype=object)[test_mask])
    mos = dict(zip(lab.ids, lab.mos))
    t0 = time.monotonic()
    opts = {} if a.ensemble_head == "ridge" else {"epochs": a.epochs}
    cv = cross_validate(store, train_lab, folds=a.inner, seeds=(a.seed,), progress=False,
                        head=a.ensemble_head, **opts)
    ens = {r["id"]: r for r in TrainedHead(*cv.ensemble()).predict_store(store, ids=test_ids)}
    t1 = time.monotonic()
    dist = {}
    if not a.skip_dist:
        res = train(store, split_labels(train_lab, "auto", a.seed), head=a.dist_head,
                    output="distribution", loss="emd", epochs=a.epochs, seed=a.seed,
                    augment=a.augment)
        dist = {r["id"]: r for r in res.trained.predict_store(store, ids=test_ids)}
    t2 = time.monotonic()
    print(f"outer fold {o + 1}: ensemble {t1 - t0:.0f} s, distribution head {t2 - t1:.0f} s",
          flush=True)
    return [{"id": i, "outer_fold": o, "mos": mos[i], "ens_score": ens[i]["score"],
             "spread": ens[i].get("spread"),
             "dist_score": dist.get(i, {}).get("score"),
             "score_std": dist.get(i, {}).get("score_std")} for i in test_ids]


def summarize(photos, mos_std, folds, k_outer) -> dict:
    """Spearman correlations per outer fold run (``folds`` of them) with a 95% interval
    (test fraction of a ``k_outer``-fold split), pooled, and |error| by quartile."""
    from mlsp.evaluation.intervals import correlation_interval

    for p in photos:
        p["mos_std"] = mos_std.get(p["id"], float("nan"))
        p["ens_abs_error"] = abs(p["ens_score"] - p["mos"])
        p["dist_abs_error"] = (float("nan") if p["dist_score"] is None
                               else abs(p["dist_score"] - p["mos"]))
    pairs = {"spread_vs_abs_error": ("spread", "ens_abs_error"),
             "score_std_vs_abs_error": ("score_std", "dist_abs_error"),
             "score_std_vs_mos_std": ("score_std", "mos_std"),
             "spread_vs_mos_std": ("spread", "mos_std")}
    out = {}
    for name, (x, y) in pairs.items():
        per = [_rho([p[x] for p in photos if p["outer_fold"] == o and p[x] is not None],
                    [p[y] for p in photos if p["outer_fold"] == o and p[x] is not None])
               for o in range(folds)]
        if all(np.isnan(per)):
            continue
        out[name] = {"per_outer_fold": per,
                     "interval": correlation_interval(per, 1.0 / (k_outer - 1)).as_dict(),
                     "pooled": _rho([p[x] for p in photos if p[x] is not None],
                                    [p[y] for p in photos if p[x] is not None])}
    for key, err in (("spread", "ens_abs_error"), ("score_std", "dist_abs_error")):
        v = np.array([np.nan if p[key] is None else p[key] for p in photos], float)
        if np.isfinite(v).any():
            e = np.array([p[err] for p in photos], float)
            q = np.quantile(v[np.isfinite(v)], [0.25, 0.5, 0.75])
            bins = np.digitize(v, q)
            out[f"mean_abs_error_by_{key}_quartile"] = [float(np.nanmean(e[bins == b]))
                                                        for b in range(4)]
    return out


def plot(path, photos, summary):
    from mlsp.evaluation.plots import pyplot

    plt = pyplot()
    panels = [("spread", "ens_abs_error", "spread_vs_abs_error", "fold-ensemble spread",
               "|error| of the ensemble"),
              ("score_std", "dist_abs_error", "score_std_vs_abs_error",
               "predicted score_std", "|error| of the distribution head"),
              ("score_std", "mos_std", "score_std_vs_mos_std", "predicted score_std",
               "raters' mos_std")]
    panels = [p for p in panels if p[2] in summary]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4), squeeze=False)
    for ax, (x, y, key, xl, yl) in zip(axes[0], panels):
        xs = [p[x] for p in photos if p[x] is not None]
        ys = [p[y] for p in photos if p[x] is not None]
        ax.scatter(xs, ys, s=6, alpha=0.5)
        i = summary[key]["interval"]
        ax.set_title(f"Spearman {i['mean']:.2f} [{i['low']:.2f}, {i['high']:.2f}]\n"
                     f"(mean over outer folds, 95%)", fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/work/cache/feats/oasis_mnv2.h5"))
    ap.add_argument("--labels", type=Path, default=Path("/work/shared/data/oasis/labels.csv"))
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--outer-limit", type=int, default=0,
                    help="run only the first N outer folds (a named reduction)")
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--ensemble-head", default="single_3fc")
    ap.add_argument("--dist-head", default="single_3fc")
    ap.add_argument("--skip-dist", action="store_true")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", default="auto",
                    help="the distribution head's augmentations per epoch (random: 8x less "
                         "work than all; a named reduction)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "uncertainty")
    a = ap.parse_args()
    from mlsp.labels import aligned_labels, load_labels
    from mlsp.stores.features import FeatureStore
    from mlsp.training.crossval import assign_folds

    a.out.mkdir(parents=True, exist_ok=True)
    with FeatureStore.open(a.store) as fs:
        lab, _ = aligned_labels(load_labels(a.labels), fs)
    outer = assign_folds(lab.ids, a.outer, a.seed + 100)
    run = range(a.outer_limit or a.outer)
    start = time.monotonic()
    photos = []
    for o in run:  # each outer fold kept as it finishes: an interrupted run resumes
        part = a.out / f"outer_{o}.json"
        if part.exists():
            photos += json.loads(part.read_text())
            continue
        new = outer_fold(a.store, lab, outer == o, a, o)
        part.write_text(json.dumps(new, default=float))
        photos += new
    summary = summarize(photos, _mos_std(a.labels), len(run), a.outer)
    report = {"store": str(a.store), "labels": str(a.labels), "outer_folds": a.outer,
              "outer_folds_run": len(run), "inner_folds": a.inner,
              "ensemble_head": a.ensemble_head,
              "distribution_head": None if a.skip_dist else f"{a.dist_head} (EMD)",
              "epochs_cap": a.epochs, "distribution_head_augment": a.augment,
              "n_photos": len(photos),
              "seconds": round(time.monotonic() - start, 1), **summary}
    (a.out / "uncertainty.json").write_text(json.dumps(report, indent=1, default=float))
    with open(a.out / "uncertainty_photos.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(photos[0]))
        w.writeheader()
        w.writerows(photos)
    plot(a.out / "uncertainty.png", photos, summary)
    for k, v in summary.items():
        if isinstance(v, dict):
            i = v["interval"]
            print(f"{k}: Spearman {i['mean']:.3f} [{i['low']:.3f}, {i['high']:.3f}] over "
                  f"{len(run)} outer folds; pooled {v['pooled']:.3f}")
        else:
            print(f"{k}: {', '.join(f'{x:.3f}' for x in v)}")
    print(f"wrote {a.out / 'uncertainty.json'}, uncertainty_photos.csv, uncertainty.png")


if __name__ == "__main__":
    main()
