"""Scale figures: extraction rate on AVA-like photos and one training epoch at AVA scale.

MLSP (Hosu et al. 2019, sec. 1) reports, on a 2017 GPU, under a minute per
narrow-feature epoch and about ten minutes per wide-feature epoch on AVA
(~224,000 training images).  This script measures, with whatever Keras backend
and device it finds:

* ``extract``: images/s of the MLSP model (default InceptionResNetV2, random
  weights: speed does not depend on weight values) on photos of AVA-like
  sizes (about 629x497, long side <= 800), each a distinct size, 8 crops each;
  reported separately for first-time sizes and for repeated sizes, since JAX
  and XLA compile once per input shape.
* ``narrow``: one epoch of Single-3FC on (samples, C) features, batch 128.
* ``wide``: one epoch of Pool-3FC on (samples, 5, 5, C) features, batch 128.

Training features are synthetic (a pool of distinct random batches cycled
through, already in memory): this measures the head's compute, not disk I/O.
GPU memory (peak, when the backend can tell) is printed too.

    python benchmarks/bench_scale.py --parts extract,narrow,wide             # CPU-sized defaults
    KERAS_BACKEND=jax python benchmarks/bench_scale.py --ava-scale          # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def device_name() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return ", ".join(str(d.device_kind) for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return ", ".join(g.name for g in gpus) or "cpu"
    except Exception:
        pass
    return platform.processor() or platform.machine()


def peak_gpu_memory_gb():
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats.get("peak_bytes_in_use", 0) / 2**30 or None
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
    except Exception:
        return None
    return None


def ava_like_sizes(n, seed=0):
    """Distinct (h, w) around AVA's mean 629x497 with the long side at most 800."""
    rng = np.random.default_rng(seed)
    sizes = set()
    while len(sizes) < n:
        long = int(rng.integers(560, 801))
        short = int(long * rng.uniform(0.55, 0.85))
        sizes.add((short, long) if rng.random() < 0.75 else (long, short))
    return sorted(sizes)


def bench_extract(args):
    from mlsp.extract.augment import crops_and_flips
    from mlsp.extract.model import MLSPModel

    model = MLSPModel(args.backbone, args.alpha, args.weights, wide_size=5)
    rng = np.random.default_rng(0)
    sizes = ava_like_sizes(args.images)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    model(crops_and_flips(images[0]))  # trace / warm-up
    start = time.perf_counter()
    for img in images:
        model(crops_and_flips(img))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for img in images:  # the same sizes again: whatever was compiled is reused
        model(crops_and_flips(img))
    again = time.perf_counter() - start
    return {"backbone": args.backbone, "channels": model.channels, "images": len(images),
            "first_time_sizes_img_per_s": len(images) / first,
            "repeated_sizes_img_per_s": len(images) / again}


def bench_epoch(args, kind):
    import keras

    from mlsp.heads import build_head

    channels = args.channels
    head = "single_3fc" if kind == "narrow" else "pool_3fc"
    model = build_head(head, channels)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile="auto")
    shape = (channels,) if kind == "narrow" else (5, 5, channels)
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((args.batch,) + shape, dtype=np.float32) for _ in range(4)]
    targets = rng.standard_normal((args.batch, 1)).astype(np.float32)
    steps = max(1, args.samples // args.batch)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return pool[i % len(pool)], targets

    model.fit(Batches(), epochs=1, steps_per_epoch=2, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(Batches(), epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"head": head, "channels": channels, "samples": steps * args.batch,
            "epoch_seconds": seconds, "samples_per_s": steps * args.batch / seconds,
            "params": model.count_params()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="extract,narrow,wide")
    ap.add_argument("--ava-scale", action="store_true",
                    help="224,000 training samples, 16,928 channels, 200 photos, InceptionResNetV2")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--weights", default="none")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--channels", type=int, default=None)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    big = args.ava_scale
    args.backbone = args.backbone or ("inception_resnet_v2" if big else "mobilenet_v2")
    if args.backbone == "mobilenet_v2" and args.alpha == 1.0 and not big:
        args.alpha = 0.35
    args.images = args.images or (200 if big else 10)
    args.samples = args.samples or (224_000 if big else 4096)
    args.channels = args.channels or (16928 if big else 1824)

    import keras

    result = {"keras_backend": keras.backend.backend(), "device": device_name(),
              "cpu_count": os.cpu_count()}
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        result[part] = bench_extract(args) if part == "extract" else bench_epoch(args, part)
        result[part]["wall_seconds"] = time.perf_counter() - t0
        print(part, json.dumps(result[part]), flush=True)
    result["peak_gpu_memory_gb"] = peak_gpu_memory_gb()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
