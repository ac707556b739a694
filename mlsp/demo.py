"""The built-in default job: generated photos with a known score, through the whole pipeline.

Runs offline: the default backbone is the ImageNet MobileNetV2-0.35 shipped
with mlsp.  The images are procedural scenes with graded blur, noise and JPEG
compression whose true score is a known function of the degradation
(``mlsp.images.synthetic``), so a working pipeline must recover it.
"""
from __future__ import annotations

import json
from pathlib import Path


def run_demo(out="mlsp-demo", n_images=160, backbone="mobilenet_v2", alpha=0.35, weights="bundled",
             progress=True, echo=print):
    from .extract.extractor import ExtractOptions, extract
    from .images.sources import from_list
    from .images.synthetic import make_synthetic_set
    from .stores.features import FeatureStore

    out = Path(out)
    labels = make_synthetic_set(out / "images", n=n_images, seed=0)
    echo(f"generated {n_images} images with known scores: {labels}")
    items = from_list(labels)
    opts = ExtractOptions(backbone=backbone, alpha=alpha, weights=weights)
    store_path = out / "features.h5"
    summary = extract(items, store_path, opts, progress=progress)
    with FeatureStore.open(store_path) as fs:
        info = fs.info()
    cfg = info["config"]
    echo(f"weights used: {cfg['backbone']} alpha {cfg['alpha']}, {cfg['weights']} "
         f"(sha256 {cfg['weights_sha256'][:16]}...)")
    echo(f"store {store_path}: {info['done']} done, {info['failed']} failed, "
         f"{info['levels']} levels, {info['channels']} channels, "
         f"{len(info['augmentations'])} augmentations, {info['bytes_on_disk'] / 1e6:.1f} MB on disk; "
         f"{summary.images_per_second:.1f} img/s this run")
    report = {"store": info, "labels": str(labels)}
    from .labels import load_labels
    from .training.trainer import train_head

    # a quarter of the images held out as the test set, 15% of the rest for validation
    result = train_head(store_path, load_labels(labels), head="single_3fc",
                        out_dir=out / "single_3fc", progress=progress, seed=0,
                        test_fraction=0.25, val_fraction=0.15)
    report["training"] = result.metrics
    if not progress:  # with progress on, train_head has printed the summary already
        echo("Single-3FC on the stored features (test = held-out generated photos):")
        echo(result.summary())
    echo(f"model, metrics.json, predictions.csv, scatter.png, learning_curves.png in "
         f"{out / 'single_3fc'}")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    echo(f"report: {out / 'report.json'}")
    return report
