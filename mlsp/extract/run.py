"""``mlsp.extract``: extraction from Python in one call -- images (a folder, files, a list
file, ImageItems) into a feature store (Hosu et al. 2019, sec. 3.1)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["extract"]


def extract(images, store, *, progress: bool = False, overwrite: bool = False,
            retry_failed: bool = False, **options) -> Path:
    """Extract MLSP features (Hosu et al. 2019, sec. 3.1) of ``images`` into the HDF5 store
    ``store`` and return its path.  ``images``: see :func:`mlsp.images.sources.collect_items`.  ``options``:
    :class:`mlsp.extract.extractor.ExtractOptions` (backbone, alpha, weights, augmentation,
    wide_size, pooling, ...).  Resumes a store of the same configuration; images that fail
    are recorded in the store (``mlsp.FeatureStore(path).info()``), not raised."""
    from .extractor import ExtractOptions
    from .extractor import extract as run

    from ..images.sources import collect_items

    items = collect_items(images)
    run(items, store, ExtractOptions(**options), progress=progress, overwrite=overwrite,
        retry_failed=retry_failed)
    return Path(store)
