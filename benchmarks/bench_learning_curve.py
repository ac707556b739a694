"""Learning curve: ridge, the Single-3FC head and ``--head auto`` by training-set size.

The evidence for ``mlsp train``'s default (``--head auto``, :mod:`mlsp.training.selection`):
on OASIS and the LIVE Challenge half (bundled MobileNetV2-0.35 features, narrow), K outer
folds x seeds; in each outer fold the training part is subsampled to 60, 120, 240, 480
images or kept whole ("all"), the test part is the whole fold, unchanged.  Per cell
(set, size, seed, fold):

* ridge: ``train(head="ridge")`` on the subsample, SRCC on the test fold;
* single_3fc: ``train(head="single_3fc")`` on the same subsample and split (the old default);
* auto: the nested selection (``select_model``: 5 inner folds of the subsample only) picks
  ridge or single_3fc; its test figure is that of the fit above of the winner (the same
  model ``train(head="auto")`` saves: same split, same seed), so nothing is fit twice.
  The pick is re-derived from the cell's stored inner fits with the current rule
  (``rule_picks``), so cells cached under an older rule follow the rule of today; the
  older rules are tabulated beside it from the same fits.

Means with the corrected repeated k-fold 95% interval (Nadeau and Bengio 2003; test
fraction 1/(K-1) as for the whole training part: subsamples share fewer images across
folds, so this overstates their overlap and widens the interval), and paired differences
over the same folds: auto - ridge, auto - the better row (ridge or single_3fc by mean).
Resumable: each cell is one JSON in ``--out/cells``; rerun to continue, ``--only-cached``
for the table of the cells done.  Cells run seed by seed, small sizes first, so a cut run
leaves complete tables for the first seeds (the table says folds x seeds per row).

    python benchmarks/bench_learning_curve.py                    # 5 folds x 3 seeds
    python benchmarks/bench_learning_curve.py --only-cached      # table + plot of cells done
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from bench_quality import ensure_store  # the one store maker (benchmarks/ is on sys.path)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
SHARED = next((p / "shared" / "data" for p in HERE.parents if (p / "shared" / "data").is_dir()),
              HERE.parent.parent / "shared" / "data")
FEATS = Path("/work/cache/feats")
SETS = {"oasis": "OASIS (900 photos, MOS 1-7)", "livec": "LIVE Challenge (581 photos)"}
SIZES = ("60", "120", "240", "480", "all")
ROWS = ("ridge", "single_3fc", "auto")
RULES = ("auto_one_se", "auto_pooled_0se", "auto_mean_rule")


def default_store(name: str) -> Path:
    shared = FEATS / f"{name}_mnv2.h5"
    return shared if shared.exists() else HERE / "data" / f"{name}_mobilenet_v2_0.35.h5"


def cell_labels(lab, fold_of, j, size, seed):
    """The outer fold ``j`` as 'test', ``size`` images of the rest (a seeded draw, nested
    across sizes) split train / val as the trainer would (10% validation)."""
    from mlsp.labels.split import split_labels

    train = np.flatnonzero(fold_of != j)
    order = np.random.default_rng([int(seed), int(j), 5]).permutation(train)
    n = len(train) if size == "all" else int(size)
    keep = np.sort(np.concatenate([order[:n], np.flatnonzero(fold_of == j)]))
    sub = lab.subset(keep)
    test_ids = [lab.ids[i] for i in np.flatnonzero(fold_of == j)]
    return split_labels(sub, "auto", seed * 1000 + j, test_ids), min(n, len(train))


def run_cell(store, lab, fold_of, j, size, seed, path: Path) -> dict:
    from mlsp.training.selection import select_model
    from mlsp.training.trainer import train

    if path.exists():  # cached: its pick re-derived with today's rule
        cached = json.loads(path.read_text())
        return cached | rule_picks(cached)
    sub, n = cell_labels(lab, fold_of, j, size, seed)
    import keras

    out = {"size": size, "n_train": n, "seed": seed, "fold": j, "backend": keras.backend.backend()}
    for head in ("ridge", "single_3fc"):
        t = time.monotonic()
        res = train(store, sub, head=head, seed=seed, baseline=False, progress=False)
        out[head] = res.metrics["test"]["srcc"]
        out[f"{head}_seconds"] = round(time.monotonic() - t, 1)
        out[f"{head}_epochs"] = res.sidecar["train"]["epochs_run"]
    sel = select_model(store, sub, seed=seed)
    out["selection"] = sel.as_dict()
    out.update(rule_picks(out))
    path.write_text(json.dumps(out, indent=1, default=float))
    return out


def tri(iv) -> list:
    """[mean, low, high] of an :class:`mlsp.evaluation.intervals.Interval`."""
    return [iv.mean, iv.low, iv.high]


def rule_picks(c) -> dict:
    """What each rule picks from a cell's stored inner fits (``c["selection"]``: pooled
    SRCCs, the SE of their difference, the inner-fold SRCCs), and its test figure:
    ``auto`` is the rule in :mod:`mlsp.training.selection` (:func:`replaces`), re-derived
    for cells cached under an older rule; then the one-standard-error rule (the second
    rule, ``d > se``), the highest pooled SRCC with no margin, and the highest mean
    inner-fold SRCC (the first rule), ties to ridge."""
    from mlsp.training.selection import replaces

    sel = c["selection"]
    names = [n for n in sel["candidates"] if n in sel["scores"]]
    mean = {n: float(np.mean(sel["scores"][n])) for n in names}
    picks = {"auto_mean_rule": max(names, key=lambda n: (mean[n], -names.index(n)))}
    pooled, se = sel.get("pooled") or {}, sel.get("margin_se", math.nan)
    if pooled and names == ["ridge", "single_3fc"]:
        lead = pooled["single_3fc"] - pooled["ridge"]
        picks["auto"] = "single_3fc" if replaces(lead, se) else "ridge"
        picks["auto_one_se"] = "single_3fc" if lead > se else "ridge"
        picks["auto_pooled_0se"] = "single_3fc" if lead > 0 else "ridge"
    else:
        picks["auto"] = sel["winner"]
    out = {}
    for rule, pick in picks.items():
        out[rule], out[f"{rule}_winner"] = c[pick], pick
    return out


def runs_text(cs, folds) -> str:
    """``5x3`` (folds x seeds), or ``3 of 5 folds x 1`` for a reduced run."""
    seeds = {c["seed"] for c in cs}
    done = {c["fold"] for c in cs}
    if len(cs) == folds * len(seeds):
        return f"{folds}x{len(seeds)}"
    return f"{len(done)} of {folds} folds x {len(seeds)}"


def summarize(cells, folds) -> list[dict]:
    """One row per (set, size): each model's mean [95% interval] and the paired
    differences auto - ridge and auto - the better of ridge / single_3fc."""
    from mlsp.evaluation.intervals import correlation_interval, paired_difference

    tf = 1.0 / (folds - 1)
    table = []
    for name in SETS:
        for size in SIZES:
            cs = sorted((c for c in cells if c["set"] == name and c["size"] == size),
                        key=lambda c: (c["seed"], c["fold"]))
            if len(cs) < 2:
                continue
            r = {"set": name, "size": size, "n_train": int(np.median([c["n_train"] for c in cs])),
                 "runs": runs_text(cs, folds), "cells": len(cs)}
            for row in ROWS:
                r[row] = tri(correlation_interval([c[row] for c in cs], tf))
            better = max(("ridge", "single_3fc"), key=lambda k: r[k][0])
            r["better"] = better
            def diff(a, b):
                return tri(paired_difference([c[a] for c in cs], [c[b] for c in cs],
                                              "srcc", tf))

            r["auto_minus_better"] = diff("auto", better)
            r["auto_minus_ridge"] = diff("auto", "ridge")
            r["head_minus_ridge"] = diff("single_3fc", "ridge")
            r["auto_picked_head"] = sum(c["auto_winner"] == "single_3fc" for c in cs)
            for rule in RULES:  # sensitivity: other decision rules on the same fits
                if all(rule in c for c in cs):
                    r[rule] = tri(correlation_interval([c[rule] for c in cs], tf))
                    r[f"{rule}_minus_better"] = tri(paired_difference(
                        [c[rule] for c in cs], [c[better] for c in cs], "srcc", tf))
                    r[f"{rule}_picked_head"] = sum(c[f"{rule}_winner"] == "single_3fc"
                                                   for c in cs)
            r["head_seconds"] = float(np.median([c["single_3fc_seconds"] for c in cs]))
            r["goal_within_0.01"] = r["auto_minus_better"][0] >= -0.01
            r["goal_not_below_ridge_0.02"] = r["auto_minus_ridge"][0] >= -0.02
            table.append(r)
    return table


def fmt(m, sign=False):
    if not m or not math.isfinite(m[0]):
        return "-"
    f = "{:+.3f}" if sign else "{:.3f}"
    if not math.isfinite(m[1]):
        return f.format(m[0])
    return f"{f.format(m[0])} [{f.format(m[1])}, {f.format(m[2])}]"


def write(table, out: Path, folds):
    keys = ["set", "size", "n_train", "runs"]
    with open(out / "learning_curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + [f"{r}{s}" for r in (*ROWS, "auto_minus_better", "auto_minus_ridge",
                                                 "head_minus_ridge") for s in ("", "_lo", "_hi")]
                   + ["better", "auto_picked_head", "cells", "head_seconds_median"])
        for r in table:
            w.writerow([r[k] for k in keys]
                       + [f"{v:.4f}" for k in (*ROWS, "auto_minus_better", "auto_minus_ridge",
                                               "head_minus_ridge") for v in r[k]]
                       + [r["better"], r["auto_picked_head"], r["cells"], r["head_seconds"]])
    (out / "learning_curve.json").write_text(json.dumps({"folds": folds, "rows": table},
                                                        indent=1, default=float))
    from mlsp.evaluation.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(SETS), figsize=(5.2 * len(SETS), 3.8), squeeze=False)
    for ax, name in zip(axes[0], SETS):
        rows = [r for r in table if r["set"] == name]
        if not rows:
            continue
        x = np.array([r["n_train"] for r in rows], float)
        for k, (row, style) in enumerate((("ridge", "s--"), ("single_3fc", "o:"),
                                          ("auto", "D-"))):
            m = np.array([r[row] for r in rows], float)
            ax.plot(x * (1 + 0.015 * (k - 1)), m[:, 0], style, color=f"C{k}", label=row)
            ax.fill_between(x, m[:, 1], m[:, 2], color=f"C{k}", alpha=0.12)
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{int(v)}" for v in x])
        ax.set_xlabel("training images per outer fold")
        ax.set_ylabel("test-fold SRCC (mean, 95% interval)")
        ax.set_title(f"{SETS[name]}: test folds per size (of {folds}): "
                     f"{', '.join(str(r['cells']) for r in rows)}", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=110)
    plt.close(fig)


def print_table(table):
    print("| set | training images | folds x seeds | ridge | single_3fc (old default) | auto "
          "(new default) | auto picked the head | auto - ridge | auto - better of the two |"
          " goals met |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        goals = "yes" if r["goal_within_0.01"] and r["goal_not_below_ridge_0.02"] else "NO"
        print(f"| {r['set']} | {r['n_train']} | {r['runs']} | {fmt(r['ridge'])} | "
              f"{fmt(r['single_3fc'])} | {fmt(r['auto'])} | {r['auto_picked_head']}/{r['cells']}"
              f" | {fmt(r['auto_minus_ridge'], True)} | {fmt(r['auto_minus_better'], True)} "
              f"({r['better']}) | {goals} |")


def print_rules(table):
    """Sensitivity: what the other rules would have given, from the same inner fits."""
    if not any(rule in r for r in table for rule in RULES):
        return
    print("\n| set | training images | non-inferiority on pooled SRCC (the default) | "
          "one-SE rule on pooled SRCC (the second rule) | highest pooled SRCC, no margin | "
          "highest mean inner-fold SRCC (the first rule) |\n|---|---|---|---|---|---|")
    for r in table:
        cells = [f"{fmt(r['auto'])}, head {r['auto_picked_head']}/{r['cells']}"]
        for rule in RULES:
            cells.append(f"{fmt(r[rule])}, head {r[f'{rule}_picked_head']}/{r['cells']}; "
                         f"{fmt(r[f'{rule}_minus_better'], True)} vs better"
                         if rule in r else "-")
        print(f"| {r['set']} | {r['n_train']} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--store", action="append", default=[], metavar="SET=PATH")
    ap.add_argument("--labels", action="append", default=[], metavar="SET=PATH")
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only-folds", default="", metavar="J,J",
                    help="run only these outer folds (0-based) in this call: a reduced run "
                         "that covers every size first; the table says folds x seeds per row")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "learning_curve")
    ap.add_argument("--only-cached", action="store_true")
    a = ap.parse_args()
    from mlsp.labels import aligned_labels, load_labels
    from mlsp.stores.features import FeatureStore
    from mlsp.training.crossval import assign_folds

    stores = {n: default_store(n) for n in SETS} | dict(kv.split("=", 1) for kv in a.store)
    labels = {n: SHARED / n / "labels.csv" for n in SETS} | dict(kv.split("=", 1)
                                                                  for kv in a.labels)
    names = [n for n in a.sets.split(",") if n]
    sizes = [s for s in a.sizes.split(",") if s]
    seeds = [int(s) for s in a.seeds.split(",")]
    only = {int(j) for j in a.only_folds.split(",") if j}
    (a.out / "cells").mkdir(parents=True, exist_ok=True)
    if not a.only_cached:
        data = {}
        for n in names:
            store = ensure_store(Path(stores[n]), Path(labels[n]))
            with FeatureStore.open(store) as fs:
                lab, _ = aligned_labels(load_labels(labels[n]), fs)
            data[n] = (store, lab)
        for seed in seeds:
            for size in sizes:
                for n in names:
                    store, lab = data[n]
                    fold_of = assign_folds(lab.ids, a.folds, seed)
                    n_train = int((fold_of != 0).sum())
                    if size != "all" and int(size) >= n_train:
                        continue  # the same as "all" here
                    for j in range(a.folds):
                        if only and j not in only:
                            continue
                        t = time.monotonic()
                        c = run_cell(store, lab, fold_of, j, size, seed,
                                     a.out / "cells" / f"{n}_{size}_{seed}_{j}.json")
                        print(f"{n} size {size} seed {seed} fold {j}: ridge {c['ridge']:.3f} "
                              f"head {c['single_3fc']:.3f} auto -> {c['auto_winner']} "
                              f"({time.monotonic() - t:.0f} s)", flush=True)
    cells = []
    for p in sorted((a.out / "cells").glob("*.json")):
        c = json.loads(p.read_text())
        c["set"] = p.name.split("_")[0]
        cells.append(c | rule_picks(c))
    table = summarize(cells, a.folds)
    write(table, a.out, a.folds)
    print_table(table)
    print_rules(table)
    print(f"written: {a.out / 'learning_curve.csv'}, learning_curve.json, learning_curve.png")


if __name__ == "__main__":
    main()
