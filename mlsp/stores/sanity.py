"""Sanity of a store's header before anything is read from it.

A damaged or hostile header may declare any size: reading ``images/status`` of a store that
claims billions of rows would allocate gigabytes.  Every row of ``images/`` (and every
level) costs at least one byte in the file (ids and paths are stored for real; only the
feature chunks are sparse), so a file that declares more rows than it has bytes is damaged.
"""
from __future__ import annotations

import os

import h5py

from .errors import StoreDamagedError

__all__ = ["check_declared_rows"]


def check_declared_rows(h5: h5py.File, path) -> None:
    """Raise StoreDamagedError (one line) when the ``images``/``levels`` tables are missing,
    disagree on their length, or declare more rows than the file has bytes."""
    size = os.stat(path).st_size
    rows = {}
    for group in ("images", "levels"):
        if group not in h5:
            raise StoreDamagedError(f"{path}: damaged store: no '{group}' group")
        for name, ds in h5[group].items():
            if not isinstance(ds, h5py.Dataset) or not ds.shape:
                raise StoreDamagedError(f"{path}: damaged store: {group}/{name} is not a table")
            rows.setdefault(group, {})[name] = int(ds.shape[0])
    for group, counts in rows.items():
        if len(set(counts.values())) > 1:
            raise StoreDamagedError(f"{path}: damaged store: the {group} tables disagree on "
                                    f"their length ({counts})")
        n = next(iter(counts.values()), 0)
        if n > size:
            raise StoreDamagedError(f"{path}: damaged store: the header declares {n:,} {group} "
                                    f"rows, which cannot fit in its {size:,} bytes")
