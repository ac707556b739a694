"""Reading stored MLSP features for a head: the chosen levels of one feature kind, as float32
rows, held in RAM when they fit (``memory_limit``), else read from the HDF5 file per batch.

What training feeds (one random augmentation per image and epoch, Hosu et al. 2019 sec.
3.1) and what scoring averages (all stored augmentations but Corner Grid rows,
:func:`test_augmentations`) both read through :class:`StoreFeatures`.  No Keras.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..feature_kinds import feature_parts, pooling_kinds_for
from .features import FeatureStore, StoreError

__all__ = ["StoreFeatures", "test_augmentations", "DEFAULT_MEMORY_LIMIT"]

DEFAULT_MEMORY_LIMIT = 4 * 1024**3


def _as_slice(index: np.ndarray):
    """A slice for a contiguous ascending index (much faster for h5py), else the index."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class StoreFeatures:
    """The features of one store, for the chosen levels, as float32 rows.

    ``kind``: any of :data:`FEATURE_KINDS`: ``"narrow"`` (N, A, C), ``"wide"``,
    ``"wide_fore"``, ``"wide_back"`` (N, A, P, P, C), ``"spp"`` (N, A, 26, C), or
    ``"wide_foreback"`` (N, A, P, P, 2C: fore then back, each with the selected
    channels).  Features whose selected channels fit in ``memory_limit`` bytes (float16) are read
    once, in blocks, into RAM (channel subset applied while reading);
    otherwise rows are read from the file on demand, a batch at a time
    (sorted-index reads; the file is opened once per process, lazily, so
    PyDataset workers can share the object): memory stays bounded by the
    batches in flight, whatever the size of the store (AVA's wide features
    are 1.7 TB).
    """

    def __init__(self, store_path, levels=None, kind: str = "narrow",
                 memory_limit: float | None = DEFAULT_MEMORY_LIMIT, in_memory: bool | None = None,
                 progress: bool = True, block_rows: int = 1024):
        self.path = Path(store_path)
        self.kind, self.parts = kind, feature_parts(kind)
        with FeatureStore.open(self.path) as store:
            for part in self.parts:
                if not store.has(part):
                    raise StoreError(
                        f"{self.path}: has no {part} features" + (
                            " (extracted with wide pooling off)" if part == "wide" else
                            f" (extract with --pooling {','.join(pooling_kinds_for(part))})"
                            if part != "narrow" else ""))
            self.config = store.config
            self.ids = store.ids
            self.status = store.status
            self.augmentations = store.augmentations
            self.levels, self.channel_index = store.select_levels(levels)
            ds = store.dataset(self.parts[0])
            self.n_images, self.n_aug = int(ds.shape[0]), int(ds.shape[1])
            self.item_shape = tuple(int(s) for s in ds.shape[2:-1]) + (
                len(self.channel_index) * len(self.parts),)
        self._channels = _as_slice(self.channel_index)
        self._local = threading.local()
        self._pid = None
        nbytes = self.n_images * self.n_aug * int(np.prod(self.item_shape)) * 2
        if in_memory is None:
            in_memory = memory_limit is None or nbytes < memory_limit
        self.in_memory = bool(in_memory)
        self.data = self._load_all(progress, block_rows) if self.in_memory else None

    # -- file access ----------------------------------------------------------------------
    def _store(self) -> FeatureStore:
        """The store, opened once per process (and thread: h5py serialises reads)."""
        if self._pid != os.getpid():  # forked worker: never reuse the parent's handle
            self._local = threading.local()
            self._pid = os.getpid()
        store = getattr(self._local, "store", None)
        if store is None or not store.is_open:
            store = FeatureStore.open(self.path)
            self._local.store = store
        return store

    def _read(self, store, rows, aug):
        """store[rows, aug, ..., channels] with rows ascending; aug an int or slice; the
        parts of a composite kind concatenated on channels."""
        out = [store.read(part, rows, aug, self._channels) for part in self.parts]
        return out[0] if len(out) == 1 else np.concatenate(out, axis=-1)

    def _load_all(self, progress, block_rows):
        from tqdm.auto import tqdm

        shape = (self.n_images, self.n_aug) + self.item_shape
        out = np.empty(shape, np.float16)
        ds = self._store()
        steps = range(0, self.n_images, block_rows)
        for a in tqdm(steps, desc=f"load {self.path.name}", unit="block",
                      disable=not progress or len(steps) < 2, dynamic_ncols=True):
            b = min(a + block_rows, self.n_images)
            out[a:b] = self._read(ds, slice(a, b), slice(None))
        self.close()
        return out

    def close(self):
        store = getattr(self._local, "store", None)
        if store is not None:
            store.close()
        self._local = threading.local()

    def __getstate__(self):  # picklable for multiprocessing workers: the handle stays behind
        state = self.__dict__.copy()
        state["_local"], state["_pid"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    # -- reading --------------------------------------------------------------------------
    def get(self, rows, aug=None) -> np.ndarray:
        """Features of store ``rows`` as float32.

        ``aug``: None for all augmentations, shape (n, A, ...); an int, or one
        augmentation index per row, shape (n, ...).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if aug is not None and np.ndim(aug) == 0:
            aug = np.full(rows.shape, int(aug), np.int64)
        if self.in_memory:
            x = self.data[rows] if aug is None else self.data[rows, np.asarray(aug)]
            return x.astype(np.float32)
        return self._get_from_file(rows, aug)

    def _get_from_file(self, rows, aug):
        ds = self._store()
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        if aug is None:
            uniq, inverse = np.unique(sorted_rows, return_inverse=True)
            block = self._read(ds, uniq, slice(None)) if uniq.size else \
                np.empty((0, self.n_aug) + self.item_shape, np.float16)
            picked = block[inverse]
        else:
            aug_sorted = np.asarray(aug, np.int64)[order]
            picked = np.empty((rows.size,) + self.item_shape, np.float16)
            for k, (r, a) in enumerate(zip(sorted_rows.tolist(), aug_sorted.tolist())):
                picked[k] = self._read(ds, r, a)  # chunk (1, 1, ...): one chunk per item
        out = np.empty_like(picked, dtype=np.float32)
        out[order] = picked
        return out

    def mean_over_augmentations(self, rows, block: int = 256) -> np.ndarray:
        """Features averaged over the stored augmentations (for linear baselines)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((rows.size,) + self.item_shape, np.float32)
        for a in range(0, rows.size, block):
            out[a:a + block] = self.get(rows[a:a + block]).mean(axis=1)
        return out


def test_augmentations(features) -> list:
    """Indices of the augmentations averaged at test time: all the stored ones except
    Corner Grid rows ("+grid", M+MNet sec. 3.4), which are a training augmentation."""
    names = list(getattr(features, "augmentations", None) or [])
    keep = [i for i, name in enumerate(names) if not str(name).endswith("+grid")]
    return keep if keep else list(range(features.n_aug))
