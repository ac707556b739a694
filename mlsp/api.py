"""The public Python API (``import mlsp``): extract -> store -> train -> a trained head with
save / load / predict / evaluate.

    import mlsp
    store = mlsp.extract("photos/", "photos.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled")
    head = mlsp.train(store, "labels.csv", head="single_3fc")   # in memory; nothing written
    head.save("model/")
    rows = mlsp.load("model/").predict(["new.jpg"])             # score (+ distribution)

Nothing here prints unless ``progress=True``; bad input raises an exception whose
message is one line naming the file or option (:mod:`mlsp.errors`, StoreError, ...).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["extract", "train", "load", "evaluate", "collect_images"]


def collect_images(images) -> list:
    """ImageItems from a folder (recursively), an image file, a list file (``.csv`` /
    ``.txt``: see :func:`mlsp.images.sources.from_list`), ImageItems, or a list of these."""
    from .images.sources import ImageItem, check_unique, from_folder, from_list

    if isinstance(images, (str, os.PathLike, ImageItem)):
        images = [images]
    items = []
    for x in images:
        if isinstance(x, ImageItem):
            items.append(x)
            continue
        p = Path(x)
        if p.is_dir():
            found = from_folder(p)
            if not found:
                raise FileNotFoundError(f"{p}: no files in this folder (hidden names are skipped)")
            items += found
        elif p.is_file() and p.suffix.lower() in (".csv", ".txt", ".lst"):
            items += from_list(p)
        elif p.is_file():
            items.append(ImageItem(p.stem, str(p)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not items:
        raise ValueError("no input images")
    check_unique(items)
    return items


def extract(images, store, *, progress: bool = False, overwrite: bool = False,
            retry_failed: bool = False, **options) -> Path:
    """Extract MLSP features (Hosu et al. 2019, sec. 3.1) of ``images`` into the HDF5 store
    ``store`` and return its path.  ``images``: see :func:`collect_images`.  ``options``:
    :class:`mlsp.extract.extractor.ExtractOptions` (backbone, alpha, weights, augmentation,
    wide_size, pooling, ...).  Resumes a store of the same configuration; images that fail
    are recorded in the store (``mlsp.FeatureStore(path).info()``), not raised."""
    from .extract.extractor import ExtractOptions
    from .extract.extractor import extract as run

    items = collect_images(images)
    run(items, store, ExtractOptions(**options), progress=progress, overwrite=overwrite,
        retry_failed=retry_failed)
    return Path(store)


def train(store, labels, head: str = "single_3fc", *, progress: bool = False,
          verbose: bool = False, **options):
    """Train ``head`` (one of ``mlsp.HEADS``) on a store's features for ``labels`` (a file
    or :class:`mlsp.labels.Labels`), in memory: nothing is written.  ``options``: those of
    :class:`mlsp.training.config.TrainConfig` (epochs, lr, batch_size, levels, output,
    features, ...).  Returns a :class:`mlsp.trained_head.TrainedHead`; its ``training``
    holds the history, metrics per split and every image's prediction."""
    from .training.trainer import train as run

    return run(store, labels, head=head, progress=progress, verbose=verbose, **options).trained


def load(path):
    """A trained head from its folder (``model.keras`` + ``model.json``)."""
    from .trained_head import TrainedHead

    return TrainedHead.load(path)


def evaluate(model, store, labels, split: str | None = None, out_dir=None) -> dict:
    """Metrics of a trained head (object or folder) on the labelled images of ``store``
    (all, or one ``split``); with ``out_dir`` also evaluation.json, predictions.csv and
    scatter.png there.  Returns ``{"metrics": {...}, "alignment": ..., ...}``."""
    from .trained_head import evaluate_trained

    return evaluate_trained(model, store, labels, out_dir=out_dir, split=split, progress=False)
