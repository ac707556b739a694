"""How well do mlsp's heads learn real human judgement?  K-fold x seeds on real ratings.

Default data: OASIS (900 real photos, 104-368 raters each; ``../shared/data/oasis``), its
features extracted once with the bundled ImageNet MobileNetV2-0.35 (narrow + wide 5x5, 8
augmentations) into ``--store`` (made if missing).  Any labelled store works:
``--store S.h5 --labels labels.csv``.

Each row is cross-validated (``mlsp.training.crossval.cross_validate``): K folds x S seeds,
the same fold assignment for every row (it depends on the ids and the seed only), so rows
are paired.  Printed and written (CSV + JSON + PNG with 95% intervals): mean SRCC / PLCC
over the K x S test folds with the corrected repeated k-fold t interval, and the paired
difference to the ridge baseline of the same folds.  Rows are resumable: a row whose JSON
exists in ``--out`` is read, not rerun (``--force`` reruns).

    python benchmarks/bench_quality.py                       # every row, 5 folds x 3 seeds
    python benchmarks/bench_quality.py --rows single_3fc,before --seeds 0
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
#: the shared data folder beside the checkout (``$MLSP_OASIS`` overrides)
OASIS = Path(os.environ.get("MLSP_OASIS") or next(
    (p / "shared" / "data" / "oasis" for p in HERE.parents
     if (p / "shared" / "data" / "oasis").is_dir()), HERE.parent.parent / "shared/data/oasis"))

#: name -> (what it is, trainer options).  The first rows are the defaults and references.
ROWS = {
    "single_3fc": ("Single-3FC, defaults (MOS, MSE)", {"head": "single_3fc"}),
    "before": ("Single-3FC, previous defaults (lr 1e-4, raw inputs, 5% val)",
               {"head": "single_3fc", "lr": 1e-4, "normalize_inputs": False,
                "val_fraction": 0.05}),
    "single_1fc": ("Single-1FC", {"head": "single_1fc"}),
    "multi_3fc": ("Multi-3FC", {"head": "multi_3fc"}),
    "pool_3fc": ("Pool-3FC (wide 5x5)", {"head": "pool_3fc"}),
    "mnet": ("MNet fusion (wide 5x5)", {"head": "mnet"}),
    # The wide heads in bf16 mixed precision: ~1.6x faster on a CPU with AVX512-BF16,
    # which is what made 5 folds fit in a session's machine time on 2 cores.
    "pool_3fc_bf16": ("Pool-3FC (wide 5x5), bf16 mixed precision",
                      {"head": "pool_3fc", "precision": "mixed_bfloat16"}),
    "mnet_bf16": ("MNet fusion (wide 5x5), bf16 mixed precision",
                  {"head": "mnet", "precision": "mixed_bfloat16"}),
    "single_3fc_bf16": ("Single-3FC, defaults, bf16 mixed precision (control for the rows "
                        "above)", {"head": "single_3fc", "precision": "mixed_bfloat16"}),
    "multitask": ("MTP multi-task (distribution)", {"head": "multitask",
                                                     "output": "distribution"}),
    "emd": ("Single-3FC, distribution c1..c7, EMD", {"head": "single_3fc", "loss": "emd"}),
    "re_emd": ("Single-3FC, distribution, Re-EMD", {"head": "single_3fc", "loss": "re_emd"}),
    "mp_avg": ("Single-3FC, MP_avg objective", {"head": "single_3fc", "objective": "mp_avg"}),
    "mp_min": ("Single-3FC, MP_min objective", {"head": "single_3fc", "objective": "mp_min"}),
    "mp_ada": ("Single-3FC, MP_ada objective", {"head": "single_3fc", "objective": "mp_ada"}),
    "variance": ("Single-3FC, variance sample weights", {"head": "single_3fc",
                                                         "sample_weights": "variance"}),
}


def ensure_store(store: Path, labels: Path) -> Path:
    """Extract the labelled images once (bundled MobileNetV2-0.35) if the store is missing."""
    if store.exists():
        return store
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.images.sources import from_list

    store.parent.mkdir(parents=True, exist_ok=True)
    extract(from_list(labels), store, ExtractOptions(backbone="mobilenet_v2", alpha=0.35,
                                                     weights="bundled"))
    return store


def run_row(name, store, labels, folds, seeds, out: Path, force: bool, extra: dict):
    from mlsp.training.crossval import cross_validate

    path = out / f"row_{name}.json"
    if path.exists() and not force:
        return json.loads(path.read_text())
    what, options = ROWS[name]
    options = {**options, **extra}
    t0 = time.monotonic()
    res = cross_validate(store, labels, folds=folds, seeds=seeds, progress=True,
                         val_fraction=options.pop("val_fraction", "auto"), **options)
    row = {"row": name, "what": what, "options": options, "folds": folds,
           "seeds": list(seeds), "summary": res.summary(), "oof": {str(k): v for k, v in
                                                                   res.oof_metrics().items()},
           "verdict": res.verdict(), "fold_rows": res.rows,
           "seconds": round(time.monotonic() - t0, 1)}
    path.write_text(json.dumps(row, indent=1, default=float))
    return row


def fmt(m):
    """``mean [low, high]`` of a named interval (or an old row file's triplet)."""
    from mlsp.evaluation.intervals import interval_text

    return interval_text(m)


def named(m):
    """The interval as named fields (old row files hold [mean, lo, hi] triplets, which are
    re-read as such); None when missing."""
    from mlsp.evaluation.intervals import as_interval

    i = as_interval(m)
    return None if i is None else i.as_dict()


def triplet(m):
    i = named(m)
    return ["", "", ""] if i is None else [i["mean"], i["low"], i["high"]]


def minus_default(row, ref, metric="srcc"):
    """The row's test-fold ``metric`` minus the default row's on the same (seed, fold)
    pairs: mean and corrected 95% interval (None without two shared folds), as
    :func:`mlsp.evaluation.intervals.paired_difference` (r scale, clipped)."""
    from mlsp.evaluation.intervals import paired_difference

    if ref is None or row is ref:
        return None

    def by_fold(r):
        return {(f["seed"], f["fold"]): f.get(metric) for f in r["fold_rows"]
                if f["row"] == "head" and f.get(metric) is not None}

    a, b = by_fold(row), by_fold(ref)
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    return paired_difference({k: a[k] for k in shared}, {k: b[k] for k in shared}, metric,
                             1.0 / (row["folds"] - 1)).as_dict()


def summary_of(row) -> dict:
    """The row's summary recomputed from its fold values with the current intervals
    (:mod:`mlsp.evaluation.intervals`), so row files written before bounded intervals are
    re-summarised the same way; the stored summary when it has no fold values."""
    from mlsp.training.crossval import CVResult

    if not row.get("fold_rows"):
        return row["summary"]
    return CVResult(folds=row["folds"], seeds=tuple(row["seeds"]), rows=row["fold_rows"],
                    oof={}, models=[], test_fraction=1.0 / (row["folds"] - 1)).summary()


def table(rows) -> list[dict]:
    """Flat table: the references (from the first row's folds), then each head row, with
    its paired difference to ridge and to the default row (single_3fc) on shared folds."""
    flat = []
    default = next((r for r in rows if r["row"] == "single_3fc"), None)
    first = summary_of(rows[0])
    for ref, label in (("constant", "constant (training mean)"),
                       ("baseline_ridge", "ridge on narrow features (mean of 8 augmentations)")):
        flat.append({"row": ref, "what": label, "srcc": named(first[ref].get("srcc")),
                     "plcc": named(first[ref].get("plcc")), "rmse": named(first[ref].get("rmse")),
                     "minus_ridge": None, "minus_default": None, "seconds": None,
                     "runs": f"{rows[0]['folds']}x{len(rows[0]['seeds'])}"})
    for r in rows:
        s = summary_of(r)
        flat.append({"row": r["row"], "what": r["what"], "runs": f"{r['folds']}x{len(r['seeds'])}",
                     "srcc": named(s["head"].get("srcc")),
                     "plcc": named(s["head"].get("plcc")), "rmse": named(s["head"].get("rmse")),
                     "minus_ridge": named(s.get("head_minus_ridge", {}).get("srcc")),
                     "minus_default": minus_default(r, default),
                     "seconds": r["seconds"]})
    return flat


def write(flat, out: Path, folds, seeds):
    with open(out / "quality.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "what", "folds_x_seeds", "srcc", "srcc_lo", "srcc_hi", "plcc", "plcc_lo", "plcc_hi",
                    "rmse", "rmse_lo", "rmse_hi", "minus_ridge", "minus_ridge_lo", "minus_ridge_hi",
                    "minus_default", "minus_default_lo", "minus_default_hi", "seconds"])
        for r in flat:
            w.writerow([r["row"], r["what"], r["runs"], *triplet(r["srcc"]), *triplet(r["plcc"]),
                        *triplet(r["rmse"]), *triplet(r["minus_ridge"]),
                        *triplet(r["minus_default"]), r["seconds"] or ""])
    (out / "quality.json").write_text(json.dumps({"folds": folds, "seeds": list(seeds),
                                                  "rows": flat}, indent=1, default=float))
    from mlsp.evaluation.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(flat) + 1.2))
    for i, r in enumerate(flat):
        m = triplet(r["srcc"])
        if "" in m or not all(map(math.isfinite, m)):
            continue
        ax.errorbar(m[0], i, xerr=[[m[0] - m[1]], [m[2] - m[0]]], fmt="o", capsize=3,
                    color="grey" if r["row"] in ("constant", "baseline_ridge") else "C0")
    ridge = triplet(flat[1]["srcc"])[0]
    ax.axvline(ridge, ls="--", color="grey", lw=0.8)
    ax.set_yticks(range(len(flat)), [r["what"] for r in flat], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test-fold SRCC: mean and 95% interval (folds x seeds per row: quality.csv)")
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=HERE / "data" / "oasis_mobilenet_v2_0.35.h5")
    ap.add_argument("--labels", type=Path, default=OASIS / "labels.csv")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "quality")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--only-cached", action="store_true",
                    help="table of the rows already in --out; run none")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="trainer option for every row (e.g. lr=1e-3), for selection runs")
    a = ap.parse_args()
    seeds = tuple(int(s) for s in a.seeds.split(","))
    names = [n.strip() for n in a.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    store = a.store if a.only_cached else ensure_store(a.store, a.labels)
    extra = {}
    for kv in a.set:
        key, _, value = kv.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    rows = []
    for name in names:
        if a.only_cached and not (a.out / f"row_{name}.json").exists():
            print(f"== {name}: not run (no {a.out / f'row_{name}.json'})")
            continue
        print(f"== {name}: {ROWS[name][0]}", flush=True)
        rows.append(run_row(name, store, a.labels, a.folds, seeds, a.out, a.force, extra))
        print(f"   {rows[-1]['verdict']}", flush=True)
    flat = table(rows)
    write(flat, a.out, a.folds, seeds)
    print(f"\n{a.folds} folds x {len(seeds)} seeds on {a.store.name} ({a.labels}); SRCC / PLCC "
          f"mean [95% interval]; head - ridge and head - default (Single-3FC) are paired over "
          f"the same folds")
    print("| row | folds x seeds | SRCC | PLCC | RMSE | SRCC - ridge (paired) | "
          "SRCC - default (paired) | s |\n|---|---|---|---|---|---|---|---|")
    for r in flat:
        print(f"| {r['what']} | {r['runs']} | {fmt(r['srcc'])} | {fmt(r['plcc'])} | {fmt(r['rmse'])} | "
              f"{'' if r['minus_ridge'] is None else fmt(r['minus_ridge'])} | "
              f"{'' if r['minus_default'] is None else fmt(r['minus_default'])} | "
              f"{r['seconds'] or ''} |")
    print(f"written: {a.out / 'quality.csv'}, quality.json, quality.png")


if __name__ == "__main__":
    main()
