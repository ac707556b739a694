"""Keras (TensorFlow) vs onnxruntime: scoring photos with a trained model, side by side.

    mlsp demo --out /tmp/d                     # or any trained model folder
    flock /tmp/mlsp-heavy.lock python benchmarks/bench_onnx.py /tmp/d/single_3fc \
        /work/shared/data/oasis/images --n 40 --json bench_onnx.json

Both runtimes score the same files end to end (decode, size rules, 8 crops, backbone,
head, average), after 2 warm-up images; the export's own time is given apart.  Also
the ONNX graph with ``tta="whole"`` (one pass per image).  Prints one line per runtime
and the largest score difference; writes ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--n", type=int, default=40, help="Images timed (after 2 warm-up images).")
    ap.add_argument("--json", default="bench_onnx.json")
    a = ap.parse_args()

    import keras
    import onnxruntime

    from mlsp.inference.onnx import cached_export
    from mlsp.inference.scoring import expand_inputs
    from mlsp.inference.trained_head import predict_images

    items = expand_inputs(a.photos)[: a.n + 2]
    warm, timed = [i.path for i in items[:2]], [i.path for i in items[2:]]
    results = {"model": a.model, "images": len(timed), "cpu_count": os.cpu_count(),
               "machine": platform.processor() or platform.machine(),
               "keras_version": keras.__version__, "backend": keras.backend.backend(),
               "onnxruntime": onnxruntime.__version__}
    for tta in ("crops", "whole"):
        t = time.perf_counter()
        cached_export(a.model, None, tta)
        results[f"export_{tta}_s"] = round(time.perf_counter() - t, 2)
    scores = {}
    for name, kwargs in (("keras", {}), ("onnx", {"runtime": "onnx"})):
        predict_images(a.model, warm, progress=False, **kwargs)
        t = time.perf_counter()
        rows = predict_images(a.model, timed, progress=False, **kwargs)
        s = time.perf_counter() - t
        scores[name] = np.array([r["score"] for r in rows], float)
        results[name] = {"seconds": round(s, 3), "images_per_s": round(len(timed) / s, 2),
                         "ms_per_image": round(1000 * s / len(timed), 1)}
    from mlsp.inference.onnx import predict_onnx

    predict_onnx(a.model, items[:2], tta="whole", progress=False)
    t = time.perf_counter()
    whole = predict_onnx(a.model, items[2:], tta="whole", progress=False)
    s = time.perf_counter() - t
    results["onnx_whole"] = {"seconds": round(s, 3), "images_per_s": round(len(timed) / s, 2),
                             "ms_per_image": round(1000 * s / len(timed), 1)}
    results["max_abs_diff_keras_onnx"] = float(np.max(np.abs(scores["keras"] - scores["onnx"])))
    w = np.array([r["score"] for r in whole], float)
    results["max_abs_diff_crops_whole"] = float(np.max(np.abs(scores["keras"] - w)))
    results["speedup_onnx"] = round(results["keras"]["seconds"] / results["onnx"]["seconds"], 2)
    for name in ("keras", "onnx", "onnx_whole"):
        r = results[name]
        print(f"{name:<11} {r['ms_per_image']:8.1f} ms/image  {r['images_per_s']:6.2f} img/s")
    print(f"onnx (8 crops) is {results['speedup_onnx']}x the Keras speed; largest score "
          f"difference {results['max_abs_diff_keras_onnx']:.2e} over {len(timed)} images; "
          f"whole-image vs 8 crops differ by up to {results['max_abs_diff_crops_whole']:.3f}; "
          f"export {results['export_crops_s']} s")
    with open(a.json, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
