"""The MLSP paper's experiments (Hosu et al. 2019, Tables 2-3, Fig. 7) on real rated photos.

The paper measured on AVA (~235k training images); here: LIVE Challenge (581 photos,
``../shared/data/livec``) and OASIS (900 photos, ``../shared/data/oasis``), with real
ImageNet Inception-v3 (the paper's backbone: 11 ``mixed`` blocks, 10,048 channels) and the
bundled MobileNetV2-0.35 (18 blocks) side by side.  Rows (``--rows``, names or groups):

* ``table2``: heads on narrow features -- ridge, Single-1FC on all levels and on the last 5,
  Single-3FC, Multi-3FC (each paired with the ridge reference of the same folds), and
  Single-3FC / Multi-3FC fed as in the paper (``_r``: one random augmentation an epoch).
* ``fig7`` (``fig7_1fc``, ``fig7_ridge``): Single-3FC (Single-1FC, ridge) on the last k levels (k = 1, 2, 3, 5, 8 of 11 on Inception-v3;
  1, 2, 3, 5, 8, 13 of 18 on MobileNetV2), paired with Single-3FC on all levels; every
  such run also fits ridge on the same k levels (column ``ridge_same``).
* ``aug``: "without augmentation": train and test on ONE fixed stored augmentation
  (index 0, the top-left 87.5% crop, not mirrored) instead of all 8.  The stores hold
  the 8 crops only (no whole image), so this is the closest row to the paper's "no
  augmentation" that needs no new extraction.  With one stored augmentation, a training
  epoch sees each image once, as in the paper's own feeding (one random augmentation of
  the 8 per image and epoch, sec. 3.1): so ``noaug`` is paired with ``single_3fc_r``
  (Single-3FC fed that way, tested on the mean over the 8), the paper's Single-3FC vs
  Single-3FC (-aug).  mlsp's small-set default feeds all 8 every epoch (``single_3fc``).
  ``aug_1fc`` / ``aug_ridge``: the same for Single-1FC and ridge.
* ``table3``: Pool-3FC on wide 5 x 5 features vs Single-3FC on narrow (needs a store with
  wide features: 251,200 values a sample on Inception-v3; on 2 CPU cores it ran on the
  whole-image view with ``--set-option pool_kernels=128``, named in the row).

Every row: ``mlsp.training.crossval.cross_validate``, K folds x S seeds, the same fold
assignment in every row (ids and seed only), so rows are paired; mean and the corrected
repeated k-fold 95% interval (Nadeau-Bengio); paired differences per (seed, fold).  Rows
are resumable (``--out/<set>_<backbone>/row_<name>.json``); ``--only-cached`` tabulates.

    python benchmarks/bench_paper.py --set livec --backbone iv3 \\
        --store feats/livec_iv3.h5 --rows table2 --folds 5 --seeds 0
    python benchmarks/bench_paper.py --only-cached          # the table of every cached row
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


def _shared(name):
    return next((p / "shared" / "data" / name for p in HERE.parents
                 if (p / "shared" / "data" / name / "labels.csv").is_file()),
                HERE.parent.parent / "shared" / "data" / name)


SETS = {"livec": _shared("livec"), "oasis": _shared("oasis")}
#: backbone key -> (mlsp backbone name, alpha, number of levels, Fig. 7's k values)
BACKBONES = {"iv3": ("inception_v3", 1.0, 11, (1, 2, 3, 5, 8)),
             "mnv2": ("mobilenet_v2", 0.35, 18, (1, 2, 3, 5, 8, 13))}
#: The paper's SRCC on AVA with Inception-v3 features (no fine-tuning): Table 2 (features
#: of 256 x 256 rescaled images) and Table 3 (features of the original images, as here).
PAPER = {"single_3fc": "T2 0.676, T3 0.729", "single_3fc_r": "T2 0.676, T3 0.729",
         "multi_3fc_r": "T2 0.673", "single_1fc": "T2 0.644",
         "single_1fc_last5": "T2 0.570", "multi_3fc": "T2 0.673",
         "noaug": "T2 0.668, T3 0.722", "pool_3fc": "T3 0.745"}


def rows_for(bb: str) -> dict:
    """name -> (group, what, trainer options, store variant, reference row)."""
    n_levels, ks = BACKBONES[bb][2], BACKBONES[bb][3]
    ridge = {"head": "ridge", "baseline": False}
    rows = {
        "ridge": ("table2", "ridge, all levels", ridge, "full", "ridge"),
        "single_3fc": ("table2", "Single-3FC, all levels", {"head": "single_3fc"}, "full", "ridge"),
        "single_1fc": ("table2", "Single-1FC, all levels", {"head": "single_1fc"}, "full", "ridge"),
        "single_1fc_last5": ("table2", "Single-1FC, last 5 levels",
                             {"head": "single_1fc", "levels": "-5:"}, "full", "single_1fc"),
        "multi_3fc": ("table2", "Multi-3FC, all levels", {"head": "multi_3fc"}, "full", "ridge"),
        # mlsp's default: ridge or Single-3FC, chosen in every outer fold by a nested 5-fold
        # CV on that fold's training part (mlsp.training.selection)
        "auto": ("table2", "auto (the default: ridge or Single-3FC by nested CV)",
                 {"head": "auto"}, "full", "ridge"),
        # the paper's feeding (sec. 3.1): one random stored augmentation per image and epoch,
        # not all 8 (mlsp's small-set default): 8 times fewer steps, as the "aug" rows take
        "single_3fc_r": ("table2", "Single-3FC, all levels, one random augmentation an epoch",
                         {"head": "single_3fc", "augment": "random"}, "full", "ridge"),
        "multi_3fc_r": ("table2", "Multi-3FC, all levels, one random augmentation an epoch",
                        {"head": "multi_3fc", "augment": "random"}, "full", "single_3fc_r"),
    }
    for k in ks:
        rows[f"last{k}"] = ("fig7", f"Single-3FC, last {k} of {n_levels} levels",
                            {"head": "single_3fc", "levels": f"-{k}:"}, "full", "single_3fc")
    for k in ks:
        rows[f"last{k}_1fc"] = ("fig7_1fc", f"Single-1FC, last {k} of {n_levels} levels",
                                {"head": "single_1fc", "levels": f"-{k}:"}, "full", "single_1fc")
    for k in ks:
        rows[f"last{k}_ridge"] = ("fig7_ridge", f"ridge, last {k} of {n_levels} levels",
                                  {**ridge, "levels": f"-{k}:"}, "full", "ridge")
    one = "one fixed augmentation (crop 0) for train and test"
    rows["noaug"] = ("aug", f"Single-3FC, {one}", {"head": "single_3fc"}, "aug0", "single_3fc_r")
    rows["noaug_1fc"] = ("aug_1fc", f"Single-1FC, {one}", {"head": "single_1fc"}, "aug0",
                         "single_1fc")
    rows["noaug_ridge"] = ("aug_ridge", f"ridge, {one}", ridge, "aug0", "ridge")
    rows["pool_3fc"] = ("table3", "Pool-3FC on wide 5x5 features", {"head": "pool_3fc"},
                        "full", "single_3fc")
    return rows


def last_k(row) -> int | None:
    spec = str(row["options"].get("levels") or "")
    return int(spec[1:-1]) if spec.startswith("-") and spec.endswith(":") else None


def aug0_store(store: Path, out: Path) -> Path:
    """A copy of ``store``'s narrow features with augmentation 0 only (for the ``aug`` row)."""
    from mlsp.stores.features import DONE, FeatureStore

    target = out / (store.stem + "_aug0.h5")
    if target.exists():
        return target
    with FeatureStore.open(store) as src:
        cfg = dict(src.config)
        names = list(src.augmentations)[:1]
        cfg.update(augmentations=names, augmentation_mode="crops[0] only (bench_paper)",
                   pool_wide=0)
        done = src.done_indices()
        narrow = src.read("narrow", slice(None), slice(0, 1))
        h = src.h5["images/height"][:]
        w = src.h5["images/width"][:]
        sc = src.h5["images/scale"][:]
        with FeatureStore.create(target, src.ids, src.paths, cfg, src.levels, 1, 0) as dst:
            dst.write_rows([{"index": int(i), "height": int(h[i]), "width": int(w[i]),
                             "scale": float(sc[i]), "narrow": narrow[i]} for i in done])
    assert all(s == DONE for s in FeatureStore.open(target).status[done])
    return target


def run_row(name, spec, store, labels, folds, seeds, path: Path, extra):
    from mlsp.training.crossval import cross_validate

    group, what, options, variant, ref = spec
    options = {**options, **extra}
    if extra:
        what += " (" + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")"
    t0 = time.monotonic()
    res = cross_validate(store, labels, folds=folds, seeds=seeds, progress=True, **options)
    row = {"row": name, "group": group, "what": what, "options": options, "variant": variant,
           "reference": ref, "store": str(store), "folds": folds, "seeds": list(seeds),
           "summary": res.summary(), "verdict": res.verdict(), "fold_rows": res.rows,
           "seconds": round(time.monotonic() - t0, 1)}
    path.write_text(json.dumps(row, indent=1, default=float))
    return row


def by_fold(row, which="head", metric="srcc"):
    return {(f["seed"], f["fold"]): f.get(metric) for f in row["fold_rows"]
            if f["row"] == which and f.get(metric) is not None}


def paired(a: dict, b: dict, folds: int):
    """Mean and 95% interval of the SRCC difference a - b over shared (seed, fold) pairs
    (corrected repeated k-fold, bounded: :func:`mlsp.evaluation.intervals.paired_difference`)."""
    from mlsp.evaluation.intervals import paired_difference

    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    iv = paired_difference([a[k] for k in shared], [b[k] for k in shared], "srcc",
                           1.0 / (folds - 1))
    return [iv.mean, iv.low, iv.high]


def interval_list(iv) -> list:
    return [iv.mean, iv.low, iv.high]


def ridge_folds(rows: dict):
    """Ridge on all levels, all 8 augmentations: the ``ridge`` row, else the reference any
    full-store, all-levels, narrow run fits on the same folds."""
    if "ridge" in rows:
        return by_fold(rows["ridge"])
    for r in rows.values():
        if r["variant"] == "full" and "levels" not in r["options"] and r["row"] != "pool_3fc":
            return by_fold(r, "baseline_ridge")
    return {}


def table(combo: str, rows: dict) -> list[dict]:
    from mlsp.evaluation.intervals import correlation_interval

    flat = []
    ridge = ridge_folds(rows)
    if ridge and "ridge" not in rows:
        folds = next(iter(rows.values()))["folds"]
        flat.append({"combo": combo, "row": "ridge", "group": "reference",
                     "what": "ridge, all levels (mean of 8 augmentations)",
                     "runs": f"{folds}x{len({k[0] for k in ridge})}",
                     "srcc": interval_list(correlation_interval(list(ridge.values()),
                                                                1 / (folds - 1))),
                     "minus_ridge": None, "reference": "", "minus_ref": None,
                     "ridge_same": None, "paper": "", "k": None, "seconds": None})
    for name, r in rows.items():
        s = r["summary"]
        if r["reference"] == "single_3fc_r" and "single_3fc_r" not in rows:
            r["reference"] = "single_3fc"  # the default feeding (all 8 an epoch) as reference
        ref = rows.get(r["reference"]) if r["reference"] != "ridge" else None
        same = s.get("baseline_ridge", {}).get("srcc")
        if isinstance(same, dict):  # named fields (mean, low, high)
            same = [same.get("mean"), same.get("low"), same.get("high")]
        flat.append({
            "combo": combo, "row": name, "group": r["group"], "what": r["what"],
            "runs": f"{r['folds']}x{len(r['seeds'])}",
            "srcc": interval_list(correlation_interval(list(by_fold(r).values()),
                                                       1 / (r["folds"] - 1))),
            "minus_ridge": None if name == "ridge" else paired(by_fold(r), ridge, r["folds"]),
            "reference": r["reference"],
            "minus_ref": (None if name == "ridge" or r["reference"] == "ridge"
                          else paired(by_fold(r), by_fold(ref), r["folds"]) if ref else None),
            "ridge_same": same, "paper": PAPER.get(name, ""), "k": last_k(r),
            "seconds": r["seconds"]})
    return flat


def backbone_pairs(ridges: dict) -> list[dict]:
    """Ridge of one backbone minus another's on the same set: the photos and folds are the
    same (folds depend on ids and seed only), so the difference is paired."""
    out = []
    names = sorted(ridges)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            if x.split("_")[0] == y.split("_")[0] and ridges[x][0] and ridges[y][0]:
                d = paired(ridges[x][0], ridges[y][0], ridges[x][1])
                if d:
                    out.append({"a": x, "b": y, "srcc": d})
    return out


def fmt(m, signed=False):
    if not m or not math.isfinite(m[0]):
        return "-"
    f = "{:+.3f}" if signed else "{:.3f}"
    lo = "" if not math.isfinite(m[1]) else f" [{f.format(m[1])}, {f.format(m[2])}]"
    return f.format(m[0]) + lo


def write(flat, out: Path):
    with open(out / "paper.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set_backbone", "group", "row", "what", "folds_x_seeds", "srcc", "srcc_lo",
                    "srcc_hi", "minus_ridge", "minus_ridge_lo", "minus_ridge_hi", "reference",
                    "minus_ref", "minus_ref_lo", "minus_ref_hi", "ridge_same_levels", "paper_ava",
                    "seconds"])
        for r in flat:
            w.writerow([r["combo"], r["group"], r["row"], r["what"], r["runs"],
                        *(r["srcc"] or [""] * 3), *(r["minus_ridge"] or [""] * 3),
                        r["reference"], *(r["minus_ref"] or [""] * 3),
                        (r["ridge_same"] or [""])[0], r["paper"], r["seconds"] or ""])
    (out / "paper.json").write_text(json.dumps({"rows": flat}, indent=1, default=float))
    plot(flat, out / "paper.png")


def plot(flat, path):
    from mlsp.evaluation.plots import pyplot

    plt = pyplot()
    combos = sorted({r["combo"] for r in flat})
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.3 * len(flat) + 1.5))
    ax = axes[0]
    shown = [r for r in flat if not r["group"].startswith("fig7") and r["srcc"]]
    for i, r in enumerate(shown):
        m = r["srcc"]
        if all(map(math.isfinite, m)):
            ax.errorbar(m[0], i, xerr=[[m[0] - m[1]], [m[2] - m[0]]], fmt="o", capsize=3,
                        color=f"C{combos.index(r['combo'])}")
    ax.set_yticks(range(len(shown)), [f"{r['combo']}: {r['what']}" for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test-fold SRCC, mean and 95% interval")
    ax = axes[1]
    heads = (("fig7", "Single-3FC", "o-"), ("fig7_1fc", "Single-1FC", "s:"),
             ("fig7_ridge", "ridge", "x--"))
    for c, combo in enumerate(combos):
        n_all = BACKBONES[combo.split("_")[1]][2]
        for group, label, style in heads:
            full = {"fig7": "single_3fc", "fig7_1fc": "single_1fc", "fig7_ridge": "ridge"}[group]
            pts = sorted((r["k"], r["srcc"][0]) for r in flat if r["combo"] == combo
                         and r["group"] == group and r["srcc"])
            pts += [(n_all, r["srcc"][0]) for r in flat
                    if r["combo"] == combo and r["row"] == full and r["srcc"] and pts]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=f"C{c}",
                        label=f"{combo} {label}")
    ax.set_xscale("log")
    ax.set_xlabel("last k levels (Fig. 7)")
    ax.set_ylabel("SRCC")
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def import_quality(src: Path, dst: Path):
    """Rows measured before by ``bench_quality.py`` (OASIS, bundled MobileNetV2-0.35, the
    same fold assignment): copied into this table's format instead of run again."""
    names = {"single_3fc": "single_3fc", "single_1fc": "single_1fc", "multi_3fc": "multi_3fc",
             "pool_3fc_bf16": "pool_3fc"}
    specs = rows_for("mnv2")
    dst.mkdir(parents=True, exist_ok=True)
    for old, new in names.items():
        path = src / f"row_{old}.json"
        if not path.is_file() or (dst / f"row_{new}.json").exists():
            continue
        r = json.loads(path.read_text())
        group, what, _, variant, ref = specs[new]
        what += " (bf16 mixed precision)" if old.endswith("bf16") else ""
        r.update(row=new, group=group, what=what + " [from bench_quality.py]", variant=variant,
                 reference=ref, imported_from=str(path))
        (dst / f"row_{new}.json").write_text(json.dumps(r, indent=1, default=float))
        print(f"imported {path} as {new}")


def select(names, rows):
    groups = {g for g, *_ in rows.values()}
    out = []
    for n in names:
        out += [k for k, v in rows.items() if v[0] == n] if n in groups else [n]
    unknown = [n for n in out if n not in rows]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(rows)} or groups "
                         f"{', '.join(sorted(groups))}")
    return list(dict.fromkeys(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="livec")
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="iv3")
    ap.add_argument("--store", type=Path, help="narrow (+ wide) features of the set's photos")
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--tag", default="", help="names the store's kind in the table, e.g. "
                    "'whole' for features of the whole image (one view, --augment whole)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows", default="table2,fig7,aug,table3")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "paper")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--only-cached", action="store_true", help="tabulate cached rows; run none")
    ap.add_argument("--import-quality", type=Path, metavar="DIR",
                    help="copy OASIS MobileNetV2 rows of bench_quality.py from DIR; run none")
    ap.add_argument("--set-option", action="append", default=[], metavar="KEY=VALUE",
                    help="trainer option for every row run now (selection runs)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.import_quality:
        import_quality(a.import_quality, a.out / "oasis_mnv2")
    elif not a.only_cached:
        if a.store is None or not a.store.is_file():
            raise SystemExit(f"--store: {a.store} is not a file (extract the set first: mlsp "
                             f"extract --list {SETS[a.set] / 'labels.csv'} -o STORE --backbone "
                             f"{BACKBONES[a.backbone][0]} ...)")
        labels = a.labels or SETS[a.set] / "labels.csv"
        seeds = tuple(int(s) for s in a.seeds.split(","))
        extra = {k: json.loads(v) if v[:1] in "0123456789-[{tfn\"" else v
                 for k, _, v in (kv.partition("=") for kv in a.set_option)}
        combo_dir = a.out / "_".join([a.set, a.backbone] + ([a.tag] if a.tag else []))
        combo_dir.mkdir(exist_ok=True)
        specs = rows_for(a.backbone)
        for name in select(a.rows.split(","), specs):
            path = combo_dir / f"row_{name}.json"
            if path.exists() and not a.force:
                continue
            spec = specs[name]
            store = aug0_store(a.store, combo_dir) if spec[3] == "aug0" else a.store
            print(f"== {a.set} {a.backbone} {name}: {spec[1]}", flush=True)
            row = run_row(name, spec, store, labels, a.folds, seeds, path, extra)
            print(f"   {row['verdict']} ({row['seconds']} s)", flush=True)
    flat, ridges = [], {}
    for combo_dir in sorted(p for p in a.out.iterdir() if p.is_dir()):
        bb = (combo_dir.name.split("_") + [""])[1]
        if bb not in BACKBONES:
            continue
        order = list(rows_for(bb))
        rows = {json.loads(p.read_text())["row"]: json.loads(p.read_text())
                for p in combo_dir.glob("row_*.json")}
        rows = {k: rows[k] for k in order if k in rows}
        if rows:
            flat += table(combo_dir.name, rows)
            ridges[combo_dir.name] = (ridge_folds(rows), next(iter(rows.values()))["folds"])
    write(flat, a.out)
    pairs = backbone_pairs(ridges)
    for p in pairs:
        print(f"ridge, {p['a']} - {p['b']} (same photos, same folds): {fmt(p['srcc'], True)}")
    data = json.loads((a.out / "paper.json").read_text())
    (a.out / "paper.json").write_text(json.dumps(dict(data, backbone_pairs=pairs), indent=1,
                                                 default=float))
    print("| set, backbone | row | folds x seeds | SRCC [95%] | - ridge (paired) | "
          "- reference (paired) | ridge, same levels | paper (AVA) | s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in flat:
        ref = f"{fmt(r['minus_ref'], True)} vs {r['reference']}" if r["minus_ref"] else ""
        print(f"| {r['combo']} | {r['what']} | {r['runs']} | {fmt(r['srcc'])} | "
              f"{fmt(r['minus_ridge'], True) if r['minus_ridge'] else ''} | {ref} | "
              f"{fmt(r['ridge_same']) if r['ridge_same'] else ''} | {r['paper']} | "
              f"{r['seconds'] or ''} |")
    print(f"written: {a.out / 'paper.csv'}, paper.json, paper.png")


if __name__ == "__main__":
    main()
