"""``mlsp.extract``: extraction from Python in one call -- images (a folder, files, a list
file, ImageItems) into a feature store (Hosu et al. 2019, sec. 3.1)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["collect_images", "extract"]


#: Files given among the images that are read as lists of images, not as images.
LIST_SUFFIXES = (".csv", ".txt", ".lst")


def collect_images(images) -> list:
    """ImageItems from a folder (recursively), an image file, a list file (``.csv`` /
    ``.txt``: see :func:`mlsp.images.sources.from_list`), ImageItems, or a list of these
    (:func:`mlsp.images.sources.collect_items` does the work, as for ``mlsp extract``)."""
    from ..images.sources import ImageItem, check_unique, collect_items

    if isinstance(images, (str, os.PathLike, ImageItem)):
        images = [images]
    images = list(images)

    def is_list(x):
        return not isinstance(x, ImageItem) and Path(x).is_file() and \
            Path(x).suffix.lower() in LIST_SUFFIXES

    rest = [x for x in images if not is_list(x)]
    items = collect_items(rest) if rest else []
    for x in filter(is_list, images):
        items += collect_items(list_file=x)
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
