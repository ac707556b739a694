"""Feeding stored MLSP features to a head: in RAM when they fit, else from the HDF5 file.

Hosu et al. 2019, sec. 3.1: "During training AQA on features, a single random
augmentation per epoch is drawn for each image from among the 8 stored [...].
At test time, the final score for an image is calculated by averaging the
predictions over all stored augmentations."  :class:`FeatureSequence` does the
former (or feeds all augmentations, ``augment="all"``), :func:`predict_averaged`
the latter.  Only ``keras.utils.PyDataset`` and numpy are used, so any Keras
backend can consume the batches.
"""
from __future__ import annotations

import math
import os
import threading
import time
import weakref
from pathlib import Path

import keras
import numpy as np

from ..feature_kinds import FEATURE_KINDS, feature_parts, pooling_kinds_for  # noqa: F401
from ..stores.features import FeatureStore, StoreError

__all__ = ["StoreFeatures", "FeatureSequence", "FeedStats", "FeedTimer", "predict_averaged",
           "AUGMENT_MODES", "FEATURE_KINDS", "feature_parts", "pooling_kinds_for"]

AUGMENT_MODES = ("random", "all", "first", "patches")
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


class FeedStats:
    """Thread-safe accounting of a feeder: time spent preparing batches and the
    number of batches alive at once (a batch counts from its creation in
    ``__getitem__`` until the consumer drops it, i.e. until Keras has copied
    it to the device; the prefetch queue holds at most ``max_queue_size``).

    Every batch is counted from :meth:`acquire` (before it is made) to :meth:`release`
    (when the consumer drops it, via a finalizer set by :meth:`record`).  ``max_live``
    adds back-pressure: ``acquire`` holds a feeder thread while that many batches are
    alive, so memory stays bounded even where the consumer keeps batches longer than
    the queue (JAX's asynchronous dispatch runs ahead of the computation and keeps
    each step's input until it has run).  The wait gives up after ``timeout`` seconds
    (then collects garbage once and goes on), so a consumer that never releases
    cannot deadlock training."""

    def __init__(self, max_live: int | None = None, timeout: float = 5.0):
        self.max_live, self.timeout = max_live, float(timeout)
        # re-entrant: a batch's finalizer may run (garbage collection) while this thread
        # already holds the lock
        self._cond = threading.Condition(threading.RLock())
        self.reset()

    def reset(self):
        with self._cond:
            self.seconds, self.batches, self.samples = 0.0, 0, 0
            self.live, self.peak_live = 0, 0
            self.waited_s = 0.0

    def acquire(self):
        """Count a batch about to be made, first waiting (at most ``timeout`` seconds)
        while ``max_live`` batches are alive; the check and the count are one step, so
        racing feeder threads cannot overshoot."""
        t0 = time.perf_counter()
        with self._cond:
            if not self.max_live or self._cond.wait_for(
                    lambda: self.live < self.max_live, self.timeout):
                return self._count(t0)
        import gc

        gc.collect()  # timed out: batches held only by reference cycles go now
        with self._cond:
            self._count(t0)

    def _count(self, t0):
        self.waited_s += time.perf_counter() - t0
        self.live += 1
        self.peak_live = max(self.peak_live, self.live)

    def release(self):
        """A batch is gone (dropped by the consumer, or never made)."""
        with self._cond:
            self.live -= 1
            self._cond.notify()

    def record(self, seconds, x):
        """The acquired batch ``x`` took ``seconds`` to make; released when it is dropped."""
        with self._cond:
            self.seconds += seconds
            self.batches += 1
            self.samples += len(x)
        weakref.finalize(x, self.release)

    def snapshot(self) -> dict:
        with self._cond:
            return {"seconds": self.seconds, "batches": self.batches, "samples": self.samples,
                    "live": self.live, "peak_live": self.peak_live, "waited_s": self.waited_s}


class FeatureSequence(keras.utils.PyDataset):
    """Batches ``(features float32, targets)`` of the given store rows.

    ``augment``: ``"random"`` draws one stored augmentation per image and epoch
    (MLSP sec. 3.1; seeded by ``seed + epoch``), ``"all"`` feeds every
    augmentation of every image as its own sample, ``"first"`` always the first
    (the un-augmented one for ``whole`` stores).  ``shuffle`` reorders the
    samples every epoch (seed + epoch).  ``workers``/``use_multiprocessing``
    are PyDataset's: batches are prepared ahead while the model trains.
    ``multiple_of``: every batch size is a multiple of it (the last, short
    batch is cut down; data-parallel training needs batches that split evenly
    across devices).  ``stats`` (:class:`FeedStats`) accounts for the time spent
    preparing batches and the batches alive at once.  ``"patches"`` feeds every
    augmentation of an image together, as one (A, ...) sample (the patches of the
    multi-patch objectives, :mod:`.objectives`); ``batch_size`` then counts images.
    ``sample_weights`` (one per row) come as a third element: each sample's image's.
    """

    def __init__(self, features: StoreFeatures, rows, targets=None, batch_size: int = 128,
                 augment: str = "random", shuffle: bool = True, seed: int = 0,
                 workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10,
                 multiple_of: int = 1, sample_weights=None):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        if augment not in AUGMENT_MODES:
            raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {augment!r}")
        self.features = features
        self.rows = np.asarray(rows, np.int64)
        self.targets = None if targets is None else np.asarray(targets, np.float32)
        if self.targets is not None and len(self.targets) != len(self.rows):
            raise ValueError(f"{len(self.rows)} rows but {len(self.targets)} targets")
        self.sample_weights = None if sample_weights is None else \
            np.asarray(sample_weights, np.float32)
        if self.sample_weights is not None and len(self.sample_weights) != len(self.rows):
            raise ValueError(f"{len(self.rows)} rows but {len(self.sample_weights)} weights")
        self.batch_size, self.augment, self.shuffle = int(batch_size), augment, shuffle
        self.seed, self.epoch = int(seed), 0
        self._plan_epoch, self._plan = None, None
        self.multiple_of = max(1, int(multiple_of))
        if self.batch_size % self.multiple_of:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of {self.multiple_of}")
        # back-pressure: the queue, one batch per worker, and a few in the consumer's hands
        self.max_live = int(max_queue_size) + max(1, int(workers)) + 4
        self.stats = FeedStats(self.max_live)

    # -- the epoch's sample list ----------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return self.rows.size * (self.features.n_aug if self.augment == "all" else 1)

    def plan(self, epoch: int | None = None):
        """(item, augmentation) pairs of an epoch in feeding order; item indexes ``rows``."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan_epoch == epoch:
            return self._plan
        rng = np.random.default_rng([self.seed, epoch])
        n, a = self.rows.size, self.features.n_aug
        if self.augment == "all":
            items, augs = np.repeat(np.arange(n), a), np.tile(np.arange(a), n)
        elif self.augment == "random":
            items, augs = np.arange(n), rng.integers(0, a, size=n)
        else:  # "first"; "patches" ignores augs
            items, augs = np.arange(n), np.zeros(n, np.int64)
        if self.shuffle:
            perm = rng.permutation(items.size)
            items, augs = items[perm], augs[perm]
        self._plan_epoch, self._plan = epoch, (items, augs)
        return self._plan

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    # -- PyDataset ------------------------------------------------------------------------
    def __len__(self):
        n = self.n_samples - self.n_samples % self.multiple_of
        return math.ceil(n / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        self.stats.acquire()
        t0 = time.perf_counter()
        try:
            items, augs = self.plan()
            start = index * self.batch_size
            stop = min(start + self.batch_size, self.n_samples)
            stop -= (stop - start) % self.multiple_of
            it, au = items[start:stop], augs[start:stop]
            x = self.features.get(self.rows[it], None if self.augment == "patches" else au)
        except BaseException:
            self.stats.release()
            raise
        self.stats.record(time.perf_counter() - t0, x)
        if self.targets is None:
            return (x,)
        if self.sample_weights is None:
            return x, self.targets[it]
        return x, self.targets[it], self.sample_weights[it]


class FeedTimer(keras.callbacks.Callback):
    """Adds the feeder's figures to every epoch's logs (hence the training history):
    ``train_s`` (wall time of the training part of the epoch), ``feed_s`` (time
    spent preparing its batches, summed over feeder threads), ``feed_share``
    (``feed_s / train_s``: the share of step time that would be spent waiting
    for data without prefetching; an upper bound of the actual wait, which
    prefetching hides while the share stays below ~1), ``peak_batches``
    (most batches alive at once) and ``held_s`` (time feeder threads were held
    because ``max_live`` batches were alive: the consumer, not the feeder, was behind)."""

    def __init__(self, sequence: "FeatureSequence"):
        super().__init__()
        self.sequence = sequence
        self._t0 = self._t1 = None
        self._s0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._t1 = time.perf_counter(), None
        self._s0 = self.sequence.stats.snapshot()

    def on_test_begin(self, logs=None):
        if self._t0 is not None and self._t1 is None:
            self._t1 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self._t0 is None:
            return
        train_s = (self._t1 or time.perf_counter()) - self._t0
        s = self.sequence.stats.snapshot()
        feed_s = s["seconds"] - self._s0["seconds"]
        logs["train_s"] = train_s
        logs["feed_s"] = feed_s
        logs["feed_share"] = feed_s / train_s if train_s > 0 else 0.0
        logs["peak_batches"] = float(s["peak_live"])
        logs["held_s"] = s["waited_s"] - self._s0["waited_s"]  # feeder held by back-pressure


def test_augmentations(features) -> list:
    """Indices of the augmentations averaged at test time: all the stored ones except
    Corner Grid rows ("+grid", M+MNet sec. 3.4), which are a training augmentation."""
    names = list(getattr(features, "augmentations", None) or [])
    keep = [i for i, name in enumerate(names) if not str(name).endswith("+grid")]
    return keep if keep else list(range(features.n_aug))


def predict_averaged(model, features: StoreFeatures, rows, batch_size: int = 128) -> np.ndarray:
    """Per-image model outputs averaged over all stored augmentations (MLSP sec. 3.1).

    Returns (n, outputs) float64: every augmentation of every row is scored,
    then the A predictions of an image are averaged (Corner Grid rows excluded).
    """
    rows = np.asarray(rows, np.int64)
    keep = test_augmentations(features)
    a = len(keep)
    per_batch = max(1, batch_size // a)
    outs = []
    for s in range(0, rows.size, per_batch):
        x = features.get(rows[s:s + per_batch])  # (b, A, ...)
        if a != x.shape[1]:
            x = x[:, keep]
        b = x.shape[0]
        y = model.predict_on_batch(x.reshape((b * a,) + x.shape[2:]))
        y = keras.ops.convert_to_numpy(y).reshape(b, a, -1)
        outs.append(y.astype(np.float64).mean(axis=1))
    if not outs:
        return np.zeros((0, int(model.output.shape[-1])), np.float64)
    return np.concatenate(outs)
