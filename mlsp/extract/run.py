"""``mlsp.extract``: extraction from Python in one call -- images (a folder, files, a list
file, ImageItems) into a feature store (Hosu et al. 2019, sec. 3.1)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["collect_images", "extract"]


def collect_images(images) -> list:
    """ImageItems from a folder (recursively), an image file, a list file (``.csv`` /
    ``.txt``: see :func:`mlsp.images.sources.from_list`), ImageItems, or a list of these."""
    from ..images.sources import ImageItem, check_unique, from_folder, from_list

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
    from .extractor import ExtractOptions
    from .extractor import extract as run

    items = collect_images(images)
    run(items, store, ExtractOptions(**options), progress=progress, overwrite=overwrite,
        retry_failed=retry_failed)
    return Path(store)
