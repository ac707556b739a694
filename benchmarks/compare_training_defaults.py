"""Which training defaults suit small labelled sets?  (MLSP sec. 3.3 was tuned on 235k AVA images.)

Builds the built-in synthetic set (known scores from blur / noise / JPEG),
extracts narrow MLSP features with MobileNetV2 (alpha 0.35), then trains
Single-3FC with the paper's settings and one change at a time:
learning rate 1e-4 vs 1e-3, one random stored augmentation per epoch vs all 8,
first-layer width 2048 vs 512.  Prints val / test SRCC (plus the ridge baseline
and the number of epochs the schedule ran).

    .venv/bin/python benchmarks/compare_training_defaults.py --sizes 200 1000
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WEIGHTS = "/work/shared/weights/mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5"

VARIANTS = [  # name, train_head keyword overrides
    ("paper (lr 1e-4, random, 2048)", {}),
    ("lr 1e-3", {"lr": 1e-3}),
    ("augment all", {"augment": "all"}),
    ("width 512", {"width": 512}),
    ("batch 32", {"batch_size": 32}),
    ("normalize inputs", {"normalize_inputs": True}),
]


def build(work: Path, n: int, seed: int):
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.extract.model import MLSPModel
    from mlsp.images.sources import from_list
    from mlsp.images.synthetic import make_synthetic_set

    folder = work / f"syn{n}"
    labels = make_synthetic_set(folder, n=n, seed=seed)
    store = work / f"syn{n}.h5"
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS, wide_size=0)
    model = MLSPModel("mobilenet_v2", 0.35, WEIGHTS, wide_size=0)
    t = time.monotonic()
    s = extract(from_list(labels), store, opts, model=model, progress=False)  # resumes
    print(f"{store.name}: {s.done} images extracted ({s.failed} failed, "
          f"{s.processed_now} now) in {time.monotonic() - t:.0f} s", flush=True)
    return labels, store


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mlsp-bench-defaults"))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    args = ap.parse_args(argv)

    import numpy as np

    from mlsp.labels import load_labels
    from mlsp.training.trainer import train_head

    args.work.mkdir(parents=True, exist_ok=True)
    table = []
    for n in args.sizes:
        labels_csv, store = build(args.work, n, seed=0)
        labels = load_labels(labels_csv)
        for name, kw in VARIANTS:
            vals, tests, ridge, const, epochs, secs = [], [], [], [], [], []
            for seed in args.seeds:
                r = train_head(store, labels, head="single_3fc", epochs=args.epochs, seed=seed,
                               test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                               out_dir=args.work / f"n{n}" / name.split(" (")[0].replace(" ", "_")
                               .replace("+", "").replace("__", "_") / f"s{seed}",
                               progress=False, plots=False, **kw)
                vals.append(r.metrics["val"]["srcc"])
                tests.append(r.metrics["test"]["srcc"])
                ridge.append(r.metrics["baseline_ridge"]["test"]["srcc"])
                const.append(r.metrics["constant"]["test"]["rmse"])
                epochs.append(r.sidecar["train"]["epochs_run"])
                secs.append(r.seconds)
            row = (n, name, np.mean(vals), np.mean(tests), np.mean(ridge), np.mean(const),
                   np.mean(epochs), np.mean(secs))
            table.append(row)
            print(f"n={n:5d} {name:32s} val SRCC {row[2]:.3f}  test SRCC {row[3]:.3f}  "
                  f"(ridge {row[4]:.3f})  epochs {row[6]:.0f}  {row[7]:.0f} s", flush=True)
    print("\n| n | setting | val SRCC | test SRCC | ridge test SRCC | constant test RMSE | epochs | s |")
    print("|---|---|---|---|---|---|---|---|")
    for n, name, v, t, rr, c, e, s in table:
        print(f"| {n} | {name} | {v:.3f} | {t:.3f} | {rr:.3f} | {c:.3f} | {e:.0f} | {s:.0f} |")


if __name__ == "__main__":
    main()
