"""How long `mlsp predict` takes with a shipped model, start-up included: before (the Keras
path, what `mlsp predict` always did: TensorFlow imported, the backbone built) and after
(the model's own model.onnx through onnxruntime, no Keras), on 1 and on 40 photos, side by
side in one run.  Each cell: the median wall time of ``--repeats`` fresh processes.

    python benchmarks/bench_predict_startup.py                 # LIVE Challenge photos
    python benchmarks/bench_predict_startup.py --photos DIR --repeats 3

Writes ``benchmarks/results/predict_startup.json`` (every run's time) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIVEC = next((p / "shared" / "data" / "livec" / "images" for p in HERE.parents
              if (p / "shared" / "data" / "livec" / "images").is_dir()),
             ROOT.parent / "shared" / "data" / "livec" / "images")
RUNTIMES = {"keras (before)": "keras", "onnxruntime (after)": "auto"}


def _run(model, runtime, folder) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child process: user + system)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "mlsp.cli", "predict", model, str(folder), "--runtime",
           runtime, "-o", os.devnull]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    return seconds, cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=LIVEC, help="Folder of photos to take from.")
    ap.add_argument("--model", default="quality")
    ap.add_argument("--sizes", default="1,40")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "predict_startup.json")
    args = ap.parse_args(argv)
    pool = sorted(p for p in args.photos.iterdir() if p.is_file())
    sizes = [int(s) for s in args.sizes.split(",")]
    runs, cpu = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for n in sizes:
            folders[n] = Path(tmp) / f"n{n}"
            folders[n].mkdir()
            for p in pool[:n]:
                shutil.copy(p, folders[n] / p.name)
        for r in range(args.repeats):  # interleaved, so a load change hits every cell
            for n in sizes:
                for label, runtime in RUNTIMES.items():
                    t, c = _run(args.model, runtime, folders[n])
                    runs.setdefault(f"{label} / {n}", []).append(t)
                    cpu.setdefault(f"{label} / {n}", []).append(c)
                    print(f"repeat {r + 1}: {label:<20} {n:>3} photos  {t:6.1f} s wall, "
                          f"{c:6.1f} s CPU", flush=True)
    table = {k: statistics.median(v) for k, v in runs.items()}
    cpu_table = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"\nmlsp predict {args.model}: median of {args.repeats} fresh processes, wall s "
          f"(CPU s: user + system)")
    print(f"{'photos':>7}  " + "  ".join(f"{label:>24}" for label in RUNTIMES) + "  speed-up")
    for n in sizes:
        a, b = (table[f"{label} / {n}"] for label in RUNTIMES)
        ca, cb = (cpu_table[f"{label} / {n}"] for label in RUNTIMES)
        print(f"{n:>7}  {f'{a:.1f} ({ca:.1f})':>24}  {f'{b:.1f} ({cb:.1f})':>24}  "
              f"{a / b:7.1f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "model": args.model, "photos": str(args.photos), "sizes": sizes,
        "repeats": args.repeats, "median_seconds": table, "runs": runs,
        "median_cpu_seconds": cpu_table, "cpu_runs": cpu,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_end": load}}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
