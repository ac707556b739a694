"""Extraction speed and storage, measured side by side in one run.

Prints (and writes as JSON with --json):
1. end-to-end extraction rate (decode, crops, backbone, pooling, HDF5 writes)
   versus the backbone's bare forward pass on the same, already decoded crops
   (target: at least 0.9 of it);
2. 100 images of 100 distinct sizes versus 100 images of one size, with the
   same pixel count per image (target: at most 1.2 times the cost): shows that
   a new image size costs no re-tracing or re-compilation;
3. bytes on disk per image versus the raw float16 payload.

    python benchmarks/bench_extract.py                        # MobileNetV2-0.35, bundled weights
    python benchmarks/bench_extract.py --backbone inception_resnet_v2 --weights none -n 20
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def make_images(folder: Path, sizes, seed=0):
    from mlsp.images.sources import ImageItem

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for k, (h, w) in enumerate(sizes):
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{k:04d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        items.append(ImageItem(f"{k:04d}", str(path)))
    return items


def equal_area_sizes(n, height, width):
    """n distinct (h, w) with about height*width pixels each: aspect ratios vary."""
    area = height * width
    sizes, w = [], int(width * 0.8)
    while len(sizes) < n:
        h = int(round(area / w))
        if (h, w) not in sizes:
            sizes.append((h, w))
        w += 1
    return sizes


def bare_forward(model, items, opts):
    """Seconds for the backbone alone on the items' crops (decoded beforehand, not timed)."""
    from mlsp.extract.extractor import prepare, run_model

    batches = [prepare(it.path, opts, model.min_side)[0] for it in items]
    start = time.perf_counter()
    for batch in batches:
        run_model(model, batch, opts.max_batch_pixels)
    return time.perf_counter() - start


def end_to_end(model, items, opts, out):
    from mlsp.extract.extractor import extract

    start = time.perf_counter()
    summary = extract(items, out, opts, model=model, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    assert summary.done == len(items), summary
    return seconds


def main(argv=None):
    from mlsp.extract.extractor import ExtractOptions, bytes_per_image
    from mlsp.extract.model import MLSPModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("-n", type=int, default=100, help="images per set")
    ap.add_argument("--height", type=int, default=497, help="AVA's mean photo is 629 x 497")
    ap.add_argument("--width", type=int, default=629)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs; the median of each is kept")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)

    import keras

    opts = ExtractOptions(backbone=args.backbone, alpha=args.alpha, weights=args.weights)
    model = MLSPModel(args.backbone, args.alpha, args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        same = make_images(tmp / "same", [(args.height, args.width)] * args.n, 2)
        # warm-up: the first call traces the model once, for every size to come
        end_to_end(model, same[:2], opts, tmp / "warm.h5")
        runs = {"bare_distinct": [], "e2e_distinct": [], "e2e_same": [], "bare_same": []}
        # fresh sizes for every distinct-size run, so each one pays for first-time sizes
        pool = equal_area_sizes(2 * args.n * args.repeats, args.height, args.width)
        np.random.default_rng(0).shuffle(pool)
        for r in range(args.repeats):  # interleaved, so machine noise hits all alike
            sizes = pool[2 * r * args.n:2 * (r + 1) * args.n]
            distinct_bare = make_images(tmp / f"db{r}", sizes[:args.n], 10 + r)
            distinct = make_images(tmp / f"de{r}", sizes[args.n:], 20 + r)
            runs["bare_same"].append(bare_forward(model, same, opts))
            runs["e2e_same"].append(end_to_end(model, same, opts, tmp / "same.h5"))
            runs["bare_distinct"].append(bare_forward(model, distinct_bare, opts))
            runs["e2e_distinct"].append(end_to_end(model, distinct, opts, tmp / "distinct.h5"))
        # the median of interleaved repeats: robust to a noisy neighbour on a shared machine
        best = {k: float(np.median(v)) for k, v in runs.items()}
        st = os.stat(tmp / "distinct.h5")
        disk_per_image = st.st_blocks * 512 / args.n
    payload = bytes_per_image(model, opts)
    n = args.n
    fig = {
        "backbone": f"{args.backbone} alpha {args.alpha} ({model.weights.name})",
        "channels": model.channels, "levels": len(model.levels),
        "images_per_set": n, "image_size": f"{args.width}x{args.height}",
        "keras_backend": keras.backend.backend(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "bare_forward_img_per_s": n / best["bare_same"],
        "end_to_end_img_per_s": n / best["e2e_same"],
        "end_to_end_over_bare": best["bare_same"] / best["e2e_same"],
        "distinct_sizes_bare_img_per_s": n / best["bare_distinct"],
        "distinct_sizes_end_to_end_img_per_s": n / best["e2e_distinct"],
        "distinct_over_same_cost": best["e2e_distinct"] / best["e2e_same"],
        "bytes_on_disk_per_image": disk_per_image,
        "raw_float16_bytes_per_image": payload,
        "disk_over_payload": disk_per_image / payload,
        "runs_seconds": runs,
    }
    print(f"backbone {fig['backbone']}: {fig['levels']} levels, {fig['channels']} channels; "
          f"{n} images of {fig['image_size']} (x8 crops), Keras {fig['keras_backend']}, "
          f"{fig['cpu_count']} CPUs")
    print(f"{'measure':<46}{'value':>12}  target")
    rows = [
        ("bare forward pass, img/s", f"{fig['bare_forward_img_per_s']:.2f}", ""),
        ("end-to-end extraction, img/s", f"{fig['end_to_end_img_per_s']:.2f}", ""),
        ("end-to-end / bare forward", f"{fig['end_to_end_over_bare']:.3f}", ">= 0.9"),
        (f"{n} distinct sizes, end-to-end img/s", f"{fig['distinct_sizes_end_to_end_img_per_s']:.2f}", ""),
        ("cost of distinct sizes / one size", f"{fig['distinct_over_same_cost']:.3f}", "<= 1.2"),
        ("bytes on disk per image", f"{disk_per_image:,.0f}", ""),
        ("raw float16 payload per image", f"{payload:,.0f}", ""),
        ("disk / payload", f"{fig['disk_over_payload']:.4f}", "~1"),
    ]
    for name, value, target in rows:
        print(f"{name:<46}{value:>12}  {target}")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))
    return fig


if __name__ == "__main__":
    main()
