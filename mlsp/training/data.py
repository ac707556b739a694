"""Feeding stored MLSP features to a head: in RAM when they fit, else from the HDF5 file.

Hosu et al. 2019, sec. 3.1: "During training AQA on features, a single random
augmentation per epoch is drawn for each image from among the 8 stored [...].
At test time, the final score for an image is calculated by averaging the
predictions over all stored augmentations."  :class:`FeatureSequence` does the
former (or feeds all augmentations, ``augment="all"``);
:func:`mlsp.inference.scoring.predict_averaged` the latter, both reading through
:class:`mlsp.stores.reader.StoreFeatures`.  Only ``keras.utils.PyDataset`` and numpy are used, so any Keras
backend can consume the batches.
"""
from __future__ import annotations

import math
import threading
import time
import weakref

import keras
import numpy as np

from ..stores.reader import StoreFeatures

__all__ = ["FeatureSequence", "FeedStats", "FeedTimer", "AUGMENT_MODES"]

AUGMENT_MODES = ("random", "all", "first", "patches")

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
