"""Inception-v3 (real ImageNet weights) at the paper's size: speed, memory, store, ONNX.

One run, four parts (``--parts``), figures printed and written to ``--json``:

* ``ratio``: mlsp's full extraction path (decode, 8 crops, backbone, 11 taps pooled,
  float16 store) against the bare backbone (``keras.applications.InceptionV3``, no taps,
  no pooling) on the same crops decoded beforehand: images/s of each and their ratio.
* ``large``: one synthetic 12 MP and one 24 MP photo (a real photo upscaled, plus noise,
  saved as JPEG), each extracted in its own subprocess at full resolution: wall time and
  peak RSS (``resource.getrusage``, the whole process, model included), and the scale the
  extractor's memory rule applied.  ``--large-augment whole`` (one pass) keeps this part
  within minutes on 2 cores; "crops" runs the 8 crops (each a separate pass there too:
  larger than ``max_batch_pixels``), so its time is about 8 x 0.77 that of "whole".
* ``store``: bytes per image, narrow and wide 5 x 5, by the extractor's row size rule
  (``bytes_per_image``: 8 augmentations x channels x float16).
* ``onnx``: an Inception-v3 scorer (a ridge head on real features of ``--store``, trained
  now into a temporary folder, never kept) exported to ONNX; time per photo with
  onnxruntime against TensorFlow (``predict_images``), and the largest score difference.

    python benchmarks/bench_iv3_speed.py --weights ~/.cache/mlsp-test-weights/inception_v3_tf2015_notop.h5 \\
        --store livec_iv3.h5 --labels ../shared/data/livec/labels.csv --json iv3_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
LIVEC = next((p / "shared" / "data" / "livec" for p in HERE.parents
              if (p / "shared" / "data" / "livec" / "labels.csv").is_file()),
             HERE.parent.parent / "shared" / "data" / "livec")
SIZES = {"12MP": (3000, 4000), "24MP": (4000, 6000)}


def photos(n):
    return sorted((LIVEC / "images").glob("*.png"))[:n]


def part_ratio(weights, n):
    import keras

    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.extract.model import MLSPModel
    from mlsp.extract.worker import prepare
    from mlsp.images.sources import ImageItem

    opts = ExtractOptions(backbone="inception_v3", weights=weights, wide_size=0)
    model = MLSPModel("inception_v3", 1.0, weights, wide_size=0)
    bare = keras.applications.InceptionV3(include_top=False, weights=weights)
    items = [ImageItem(p.stem, str(p)) for p in photos(n + 1)]
    batches = [prepare(it.path, opts, model.min_side)[0] for it in items]
    with tempfile.TemporaryDirectory() as tmp:
        extract(items[:1], Path(tmp) / "warm.h5", opts, model=model, progress=False)
        bare.predict(batches[0].astype("float32") / 127.5 - 1, verbose=0)  # warm-up
        t = time.perf_counter()
        for b in batches[1:]:
            bare.predict(b.astype("float32") / 127.5 - 1, verbose=0)
        t_bare = time.perf_counter() - t
        t = time.perf_counter()
        s = extract(items[1:], Path(tmp) / "f.h5", opts, model=model, progress=False)
        t_e2e = time.perf_counter() - t
        assert s.done == n, s
    shape = tuple(batches[1].shape)
    return {"images": n, "crops_shape": list(shape), "bare_img_per_s": n / t_bare,
            "extract_img_per_s": n / t_e2e, "extract_over_bare_time": t_e2e / t_bare,
            "taps": len(model.levels), "channels": model.channels}


def make_large(folder: Path, name, size):
    import cv2
    import numpy as np

    src = cv2.imread(str(photos(1)[0]))
    h, w = size
    img = cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += np.random.default_rng(0).normal(0, 6, img.shape).astype(np.float32)
    path = folder / f"{name}.jpg"
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _one_large(weights, path, augment, out, max_memory=None):
    """Subprocess body: build the model, extract one photo, report time and peak RSS."""
    t0 = time.perf_counter()
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.extract.model import MLSPModel
    from mlsp.extract.worker import activation_bytes_per_pixel
    from mlsp.images.sources import ImageItem
    from mlsp.stores.features import FeatureStore

    model = MLSPModel("inception_v3", 1.0, weights, wide_size=0)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t1 = time.perf_counter()
    opts = ExtractOptions(backbone="inception_v3", weights=weights, wide_size=0,
                          augmentation=augment, workers=1, max_memory=max_memory)
    s = extract([ImageItem("big", str(path))], out, opts, model=model, progress=False)
    t2 = time.perf_counter()
    with FeatureStore.open(out) as fs:
        scale = float(fs.h5["images/scale"][0])
        size = [int(fs.h5["images/height"][0]), int(fs.h5["images/width"][0])]
    print(json.dumps({"done": s.done, "failed": s.failed, "errors": [str(f) for f in s.failures],
                      "model_build_s": t1 - t0, "extract_s": t2 - t1, "scale": scale,
                      "height_width": size, "augmentation": augment, "max_memory": max_memory,
                      "activation_bytes_per_pixel": activation_bytes_per_pixel(model),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rss_after_model_bytes": rss_model}))


def part_large(weights, augment, timeout, max_memory=None, sizes=tuple(SIZES)):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in sizes:
            path = make_large(tmp, name, SIZES[name])
            cmd = [sys.executable, __file__, "--one-large", str(path), "--weights", weights,
                   "--large-augment", augment, "--out-store", str(tmp / f"{name}.h5")]
            if max_memory:
                cmd += ["--large-max-memory", str(max_memory)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                out[name] = json.loads(lines[-1]) if lines else {"error": p.stderr[-2000:]}
            except subprocess.TimeoutExpired:
                out[name] = {"error": f"not finished within {timeout} s (named, not measured)"}
            out[name]["jpeg_bytes"] = path.stat().st_size
            print(name, json.dumps(out[name]), flush=True)
    return out


def part_store():
    """Bytes per image by the extractor's own row size rule, narrow only and narrow + wide."""
    from types import SimpleNamespace

    from mlsp.extract.extractor import ExtractOptions, bytes_per_image

    out = {}
    for wide in (0, 5):
        shapes = {"narrow": (10048,), **({"wide": (wide, wide, 10048)} if wide else {})}
        opts = ExtractOptions(backbone="inception_v3", weights="none", wide_size=wide)
        out["narrow" if not wide else "narrow_and_wide_5x5"] = bytes_per_image(
            SimpleNamespace(feature_shapes=shapes), opts)
    return out


def part_onnx(weights, store, labels, n):
    import numpy as np

    from mlsp.inference.onnx import export_onnx
    from mlsp.inference.trained_head import predict_images
    from mlsp.training.trainer import train_head

    files = [str(p) for p in photos(n + 2)]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "iv3_ridge"
        train_head(store, labels, head="ridge", out_dir=model_dir, progress=False, plots=False)
        t = time.perf_counter()
        export_onnx(model_dir, model_dir / "model.crops.onnx", weights=weights)
        res["export_s"] = time.perf_counter() - t
        res["onnx_bytes"] = (model_dir / "model.crops.onnx").stat().st_size
        scores = {}
        for runtime in ("keras", "onnx"):
            predict_images(model_dir, files[:2], weights=weights, progress=False, runtime=runtime)
            t = time.perf_counter()
            rows = predict_images(model_dir, files[2:], weights=weights, progress=False,
                                  runtime=runtime)
            res[f"{runtime}_s_per_photo"] = (time.perf_counter() - t) / n
            scores[runtime] = np.array([r["score"] for r in rows], float)
        res["max_abs_score_diff"] = float(np.abs(scores["keras"] - scores["onnx"]).max())
        res["photos"] = n
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(Path.home() / ".cache" / "mlsp-test-weights"
                                             / "inception_v3_tf2015_notop.h5"))
    ap.add_argument("--parts", default="store,ratio,onnx,large")
    ap.add_argument("--n", type=int, default=8, help="photos timed in ratio / onnx")
    ap.add_argument("--store", type=Path, help="Inception-v3 features of --labels (onnx part)")
    ap.add_argument("--labels", type=Path, default=LIVEC / "labels.csv")
    ap.add_argument("--large-augment", default="whole", choices=("whole", "crops"))
    ap.add_argument("--large-timeout", type=int, default=300)
    ap.add_argument("--large-sizes", default="12MP,24MP")
    ap.add_argument("--large-max-memory", type=int, default=None,
                    help="bytes of activations a pass may take (default: the extractor's, a "
                         "quarter of RAM; a larger photo is downscaled to fit)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "iv3_speed.json")
    ap.add_argument("--one-large", help=argparse.SUPPRESS)
    ap.add_argument("--out-store", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one_large:
        return _one_large(a.weights, a.one_large, a.large_augment, a.out_store,
                          a.large_max_memory)
    if not Path(a.weights).is_file():
        raise SystemExit(f"--weights: {a.weights} not found (make it: python "
                         f"../shared/tools/inception_v3_weights.py --out DIR)")
    import keras

    fig = {"cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "keras_backend": keras.backend.backend(), "load_average_start": os.getloadavg()}
    parts = a.parts.split(",")
    if "store" in parts:
        fig["store_bytes_per_image"] = part_store()
        print("store", fig["store_bytes_per_image"], flush=True)
    if "ratio" in parts:
        fig["ratio"] = part_ratio(a.weights, a.n)
        print("ratio", fig["ratio"], flush=True)
    if "onnx" in parts:
        if a.store is None:
            fig["onnx"] = {"error": "not run: needs --store with Inception-v3 features"}
        else:
            fig["onnx"] = part_onnx(a.weights, a.store, a.labels, a.n)
        print("onnx", fig["onnx"], flush=True)
    if "large" in parts:
        fig["large"] = part_large(a.weights, a.large_augment, a.large_timeout,
                                  a.large_max_memory, a.large_sizes.split(","))
    fig["load_average_end"] = os.getloadavg()
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(fig, indent=1, default=float))
    print(json.dumps(fig, indent=1, default=float))


if __name__ == "__main__":
    main()
