"""Which training defaults suit small labelled sets?  (MLSP sec. 3.3 was tuned on 235k AVA images.)

Builds the built-in synthetic set (known scores from blur / noise / JPEG),
extracts narrow MLSP features with MobileNetV2 (alpha 0.35), then trains
Single-3FC with the paper's settings (lr 1e-4, batch 128, one random stored
augmentation per epoch), with mlsp's defaults (``augment="auto"``: all 8 stored
augmentations per epoch below 20,000 training images), and with one change at a
time on top of the defaults: learning rate 1e-3, first-layer width 512, batch 32
(more steps per epoch).  Prints val / test SRCC (mean and spread over seeds),
the ridge baseline, steps per epoch and the epochs the schedule ran; writes the
table as Markdown and JSON (``--out``).

    .venv/bin/python benchmarks/compare_training_defaults.py --sizes 1000 200 --seeds 0 1
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WEIGHTS = "/work/shared/weights/mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5"

VARIANTS = {  # name: train_head keyword overrides
    "paper (lr 1e-4, batch 128, random)": {"augment": "random"},
    "defaults (auto = all 8 augmentations)": {},
    "defaults + lr 1e-3": {"lr": 1e-3},
    "defaults + width 512": {"width": 512},
    "defaults + batch 32": {"batch_size": 32},
    "paper + lr 1e-3": {"augment": "random", "lr": 1e-3},
}


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
    ap.add_argument("--variants", nargs="+", default=None,
                    help="Subset of the variant names (default: all).")
    ap.add_argument("--out", type=Path, default=None, help="Write <out>.md and <out>.json.")
    args = ap.parse_args(argv)

    import numpy as np

    from mlsp.labels import load_labels
    from mlsp.training.trainer import train_head

    args.work.mkdir(parents=True, exist_ok=True)
    table = []
    for n in args.sizes:
        labels_csv, store = build(args.work, n, seed=0)
        labels = load_labels(labels_csv)
        for name, kw in VARIANTS.items():
            if args.variants and name not in args.variants:
                continue
            vals, tests, ridge, const, epochs, secs, steps = [], [], [], [], [], [], []
            for seed in args.seeds:
                r = train_head(store, labels, head="single_3fc", epochs=args.epochs, seed=seed,
                               test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                               out_dir=args.work / "runs" / f"n{n}" / "".join(
                                   ch if ch.isalnum() else "_" for ch in name) / f"s{seed}",
                               progress=False, plots=False, **kw)
                vals.append(r.metrics["val"]["srcc"])
                tests.append(r.metrics["test"]["srcc"])
                ridge.append(r.metrics["baseline_ridge"]["test"]["srcc"])
                const.append(r.metrics["constant"]["test"]["rmse"])
                epochs.append(r.sidecar["train"]["epochs_run"])
                secs.append(r.seconds)
                t = r.sidecar["train"]
                steps.append(-(-t["n_train"] * (8 if t["augment"] == "all" else 1)
                               // t["batch_size"]))
            row = {"n": n, "setting": name, "seeds": list(args.seeds),
                   "n_train": r.sidecar["train"]["n_train"], "augment": r.sidecar["train"]["augment"],
                   "val_srcc": vals, "test_srcc": tests, "ridge_test_srcc": float(np.mean(ridge)),
                   "constant_test_rmse": float(np.mean(const)), "steps_per_epoch": steps[0],
                   "epochs_run": epochs, "seconds": float(np.mean(secs))}
            table.append(row)
            print(f"n={n:5d} {name:40s} val SRCC {_ms(vals)}  test SRCC {_ms(tests)}  "
                  f"(ridge {row['ridge_test_srcc']:.3f})  steps/epoch {steps[0]}  epochs "
                  f"{np.mean(epochs):.0f}  {row['seconds']:.0f} s", flush=True)
    lines = ["| n (train) | setting | augment | steps/epoch | val SRCC | test SRCC | ridge test SRCC "
             "| epochs run | s/run |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['n']} ({r['n_train']}) | {r['setting']} | {r['augment']} | "
                     f"{r['steps_per_epoch']} | {_ms(r['val_srcc'])} | {_ms(r['test_srcc'])} | "
                     f"{r['ridge_test_srcc']:.3f} | {np.mean(r['epochs_run']):.0f} | "
                     f"{r['seconds']:.0f} |")
    print("\n" + "\n".join(lines))
    if args.out:
        import json

        Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
        Path(f"{args.out}.json").write_text(json.dumps(table, indent=2) + "\n")


def _ms(v):
    import numpy as np

    return f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")


if __name__ == "__main__":
    main()
