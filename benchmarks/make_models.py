"""Make mlsp's shipped models (``mlsp models``): ``quality`` on LIVE Challenge, ``beauty`` on
OASIS, both on the bundled ImageNet MobileNetV2-0.35 narrow MLSP features (offline).

For each model the head is chosen by cross-validation, never by hand:

1. ridge and Single-3FC (MLSP Fig. 4b, the small-set defaults) are cross-validated on the
   same K folds x S seeds (:func:`mlsp.training.crossval.cross_validate`; the fold
   assignment depends on the ids and the seed only, so the two are paired);
2. Single-3FC is chosen only if its mean test-fold SRCC is higher AND the 95% corrected
   repeated k-fold interval of the paired difference (Nadeau and Bengio 2003) excludes 0
   AND its shipped files stay under ``--max-mb`` (its weights are stored twice: in
   model.keras and inside model.onnx); otherwise ridge (closed form, a few kB);
3. the winner is trained on every photo of the set (Single-3FC keeps 10% for its schedule),
   saved to ``mlsp/data/models/NAME/`` (model.keras + model.json), exported as one ONNX
   scorer with the bundled backbone inside (model.onnx, :mod:`mlsp.inference.onnx`), and
   described in zoo.json (figures, and the winner's out-of-fold scores of the set's photos,
   sorted: the reference a percentile is read against) and MODEL_CARD.md.

    python benchmarks/make_models.py                               # extracts if needed
    python benchmarks/make_models.py --store quality=/work/cache/feats/livec_mnv2.h5 \\
        --store beauty=/work/cache/feats/oasis_mnv2.h5 --seeds 0,1,2

Without ``--store``, the features are extracted from ``../shared/data/<set>`` with the
bundled weights into ``--work`` (resumable).  Cross-validation results are cached in
``--results`` (``cv_<model>_<head>.json``); ``--force`` reruns them.  ``--cv-file
MODEL:HEAD=FILE`` takes a candidate's fold rows from an earlier run instead (this script's
JSON, or a row of ``bench_quality.py``, whose folds are the same: they depend on the ids
and the seed only); ``--neural-seeds`` sets Single-3FC's seeds apart from ridge's (cheap).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # model_cards.py, beside this script


def _shared(name: str) -> Path:
    """``shared/data/<name>`` in a folder above the checkout (the project's layout)."""
    for p in HERE.parents:
        if (p / "shared" / "data" / name / "labels.csv").is_file():
            return p / "shared" / "data" / name
    return ROOT.parent / "shared" / "data" / name


#: model name -> what the card and ``mlsp models`` say about it
SETS = {
    "quality": {"data": "livec", "task": "technical quality of photos (sharpness, noise, "
                "exposure, compression)", "scale": [0.0, 100.0],
                "scale_text": "LIVE Challenge MOS, 0 (bad) to 100 (excellent)"},
    "beauty": {"data": "oasis", "task": "how beautiful people find a photo's content",
               "scale": [1.0, 7.0], "scale_text": "OASIS beauty rating, 1 (not at all "
               "beautiful) to 7 (very beautiful)"},
}
CANDIDATES = ("ridge", "single_3fc")


def _extract(name: str, work: Path) -> Path:
    import mlsp

    data = _shared(SETS[name]["data"])
    out = work / f"{SETS[name]['data']}_mnv2.h5"
    print(f"{name}: extracting {data} -> {out} (bundled MobileNetV2-0.35, narrow, 8 crops)",
          flush=True)
    return mlsp.extract(str(data / "labels.csv"), out, backbone="mobilenet_v2", alpha=0.35,
                        weights="bundled", wide_size=0, progress=True)


def _cv(name, head, store, labels, folds, seeds, results: Path, force: bool) -> dict:
    """Cross-validation of one head: per-fold rows and seed 0's out-of-fold scores."""
    from mlsp.training.crossval import cross_validate

    path = results / f"cv_{name}_{head}.json"
    if path.is_file() and not force:
        saved = json.loads(path.read_text())
        if saved["folds"] == folds and saved["seeds"] == list(seeds):
            print(f"{name} {head}: read {path}", flush=True)
            return saved
    res = cross_validate(store, labels, folds=folds, seeds=seeds, head=head, progress=True)
    o = res.oof[seeds[0]]
    out = {"model": name, "head": head, "folds": folds, "seeds": list(seeds),
           "rows": [r for r in res.rows if r["row"] == "head"],
           "summary": res.summary()["head"], "oof_srcc": {str(s): m["srcc"] for s, m in
                                                        res.oof_metrics().items()},
           "oof": {"ids": [str(i) for i in o["ids"]],
                   "mos_true": [float(v) for v in o["mos_true"]],
                   "mos_pred": [float(v) for v in o["mos_pred"]]},
           "seconds": res.seconds}
    results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    return out


def _read_cv(name, head, path: Path) -> dict:
    """A candidate's fold rows from an earlier run: this script's cv JSON, or a row JSON of
    ``bench_quality.py`` (fold_rows with row 'head', oof metrics per seed)."""
    d = json.loads(Path(path).read_text())
    if "fold_rows" in d:
        d = {"model": name, "head": head, "folds": d["folds"], "seeds": d["seeds"],
             "rows": [r for r in d["fold_rows"] if r["row"] == "head"],
             "ridge_rows": [r for r in d["fold_rows"] if r["row"] == "baseline_ridge"],
             "summary": d["summary"]["head"],
             "oof_srcc": {k: v["srcc"] for k, v in d["oof"].items()}, "oof": None,
             "seconds": d.get("seconds"), "source": str(path)}
    print(f"{name} {head}: fold rows from {path}", flush=True)
    return d


def single_3fc_bytes(channels: int) -> int:
    """Bytes of Single-3FC's float32 weights on ``channels`` features, stored twice."""
    from mlsp.heads.registry import get_head

    return 2 * 4 * int(get_head("single_3fc").build((channels,), "mos").count_params())


def choose(ridge: dict, neural: dict | None, folds: int, neural_bytes: int,
           max_mb: float) -> tuple[str, list, str]:
    """(winner, paired difference neural - ridge of test-fold SRCC [mean, low, high], why)."""
    from mlsp.evaluation.intervals import paired_difference

    if neural is None:
        return "ridge", [math.nan] * 3, "Single-3FC was not cross-validated in this run" + (
            f"; its weights ({neural_bytes / 1e6:.0f} MB) would exceed the {max_mb:g} MB "
            f"limit anyway" if neural_bytes > max_mb * 1e6 else "")
    key = lambda r: (r["seed"], r["fold"])  # noqa: E731
    a = {key(r): r["srcc"] for r in ridge["rows"]}
    b = {key(r): r["srcc"] for r in neural["rows"]}
    common = sorted(set(a) & set(b))
    iv = paired_difference([b[k] for k in common], [a[k] for k in common], "srcc",
                           1.0 / (folds - 1))
    diff = [iv.mean, iv.low, iv.high]
    pairs = f"paired over {len(common)} test folds"
    if not (diff[0] > 0 and diff[1] > 0):
        return "ridge", diff, f"Single-3FC is not clearly better ({pairs})"
    if neural_bytes > max_mb * 1e6:
        return "ridge", diff, (f"Single-3FC is better ({pairs}) but its weights would add "
                               f"{neural_bytes / 1e6:.0f} MB to the package (limit {max_mb:g}"
                               f" MB); a smaller or float16 variant needs its own CV first")
    return "single_3fc", diff, f"Single-3FC is better ({pairs})"


def _fmt(v) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _train_final(name, head, store, labels, folder: Path) -> dict:
    import mlsp

    t0 = time.monotonic()
    trained = mlsp.train(store, labels, head=head, seed=0)
    trained.sidecar["name"] = name
    for f in folder.glob("model.*"):
        f.unlink()
    trained.save(folder)
    params = int(trained.model.count_params())
    return {"params": params, "seconds": time.monotonic() - t0,
            "n_train": trained.sidecar["train"]["n_train"]}


def _export(folder: Path) -> Path:
    from mlsp.inference.onnx import SHIPPED_ONNX, export_onnx

    return export_onnx(folder, folder / SHIPPED_ONNX, weights="bundled", tta="crops")


def make(name, store, folds, seeds, results, out_root, force, neural_seeds=None,
         cv_files=None, skip=(), max_mb=25.0) -> dict:
    spec = SETS[name]
    data = _shared(spec["data"])
    labels = str(data / "labels.csv")
    cvs = {}
    for h in CANDIDATES:
        given = (cv_files or {}).get(f"{name}:{h}")
        if given:
            cvs[h] = _read_cv(name, h, given)
        elif f"{name}:{h}" not in skip:
            cvs[h] = _cv(name, h, store, labels, folds,
                         neural_seeds if h != "ridge" and neural_seeds else seeds,
                         results, force)
    _check_same_folds(cvs)
    from mlsp.stores.features import FeatureStore

    with FeatureStore.open(store) as fs:
        channels = sum(lv.channels for lv in fs.levels)
    winner, diff, why = choose(cvs["ridge"], cvs.get("single_3fc"), folds,
                               single_3fc_bytes(channels), max_mb)
    for h, cv in cvs.items():
        s = cv["summary"]
        print(f"{name} {h:<10} SRCC {_fmt(s['srcc'])}  PLCC {_fmt(s['plcc'])}  "
              f"({cv['folds']}x{len(cv['seeds'])} folds)", flush=True)
    print(f"{name}: Single-3FC - ridge SRCC {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"
          f" -> {winner}: {why}", flush=True)
    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    final = _train_final(name, winner, store, labels, folder)
    onnx_path = _export(folder)
    if not cvs[winner].get("oof"):
        raise SystemExit(f"{name}: {winner}'s out-of-fold scores (the percentile reference) "
                         f"are not in its fold rows; cross-validate it here")
    ref = sorted(round(v, 4) for v in cvs[winner]["oof"]["mos_pred"] if math.isfinite(v))
    figures = {h: {"srcc": cv["summary"]["srcc"], "plcc": cv["summary"]["plcc"],
                   "oof_srcc": cv["oof_srcc"], "folds": cv["folds"], "seeds": cv["seeds"],
                   "source": cv.get("source", "this run")} for h, cv in cvs.items()}
    zoo = {"name": name, "task": spec["task"], "scale": spec["scale"],
           "scale_text": spec["scale_text"], "backbone": "mobilenet_v2 alpha 0.35 (bundled "
           "ImageNet weights)", "head": winner, "data": spec["data"],
           "n_photos": len(cvs[winner]["oof"]["ids"]),
           "cv": {"folds": cvs[winner]["folds"], "seeds": cvs[winner]["seeds"]},
           "figures": figures, "difference_single_3fc_minus_ridge": diff, "choice": why,
           "single_3fc_bytes": single_3fc_bytes(channels),
           "params": final["params"], "n_train_final": final["n_train"],
           "reference_scores": ref}
    (folder / "zoo.json").write_text(json.dumps(zoo, indent=1))
    sizes = {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.is_file()}
    from model_cards import write_card  # beside this script

    write_card(folder / "MODEL_CARD.md", zoo, sizes, data)
    sizes = {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.is_file()}
    print(f"{name}: {winner} trained on {final['n_train']} photos ({final['params']:,} "
          f"parameters, {final['seconds']:.0f} s); {onnx_path.name}; files "
          + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()), flush=True)
    return {"name": name, "winner": winner, "difference": diff, "why": why,
            "figures": figures, "sizes": sizes, "params": final["params"]}


def _check_same_folds(cvs) -> None:
    """Fold rows taken from another run carry that run's ridge rows: on the same folds they
    are this run's ridge rows (a check that the pairing is real)."""
    other = [cv for cv in cvs.values() if cv.get("ridge_rows")]
    if not other or "ridge" not in cvs:
        return
    mine = {(r["seed"], r["fold"]): r["srcc"] for r in cvs["ridge"]["rows"]}
    theirs = {(r["seed"], r["fold"]): r["srcc"] for r in other[0]["ridge_rows"]}
    common = set(mine) & set(theirs)
    gap = max((abs(mine[k] - theirs[k]) for k in common), default=math.nan)
    print(f"ridge test-fold SRCC here vs in {other[0]['source']}: {len(common)} common folds,"
          f" largest difference {gap:.2g}", flush=True)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="quality,beauty", help="Models to make (comma list).")
    ap.add_argument("--store", action="append", default=[], metavar="NAME=STORE",
                    help="Use this feature store for NAME instead of extracting.")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2", help="Comma list of CV seeds (partitions).")
    ap.add_argument("--neural-seeds", default="0", help="Seeds of Single-3FC's CV (slower).")
    ap.add_argument("--cv-file", action="append", default=[], metavar="MODEL:HEAD=FILE",
                    help="A candidate's fold rows from an earlier run.")
    ap.add_argument("--skip", action="append", default=[], metavar="MODEL:HEAD",
                    help="Do not cross-validate this candidate (then ridge is shipped).")
    ap.add_argument("--max-mb", type=float, default=25.0,
                    help="Largest size a shipped head's weights may add to the package.")
    ap.add_argument("--work", type=Path, default=ROOT / "mlsp-make-models")
    ap.add_argument("--results", type=Path, default=HERE / "results" / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "mlsp" / "data" / "models")
    ap.add_argument("--force", action="store_true", help="Rerun cached cross-validations.")
    args = ap.parse_args(argv)
    stores = dict(s.split("=", 1) for s in args.store)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    report = []
    for name in args.only.split(","):
        if name not in SETS:
            ap.error(f"--only: unknown model {name!r} (known: {', '.join(SETS)})")
        store = stores.get(name) or _extract(name, args.work)
        report.append(make(name, store, args.folds, seeds, args.results, args.out, args.force,
                           tuple(int(x) for x in args.neural_seeds.split(",")),
                           dict(c.split("=", 1) for c in args.cv_file), set(args.skip),
                           args.max_mb))
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "models.json"  # one entry a model: a run of one updates its own
    saved = json.loads(path.read_text()) if path.is_file() else []
    saved = {r["name"]: r for r in (saved if isinstance(saved, list) else [])}
    saved.update({r["name"]: r for r in report})
    path.write_text(json.dumps(list(saved.values()), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
