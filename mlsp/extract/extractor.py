"""Batch extraction: images -> MLSP features -> feature store, resumable and fault-tolerant.

Hosu et al. 2019, sec. 3.1 / Fig. 1: each image at full resolution, its 8
crop/flip augmentations through the backbone, every block pooled, stored as
float16.  The 8 crops of one image share a size and go through the network as
one batch; decoding and cropping of the next images run in worker threads
while the network works; rows are written by one writer thread in buffered
blocks.  A corrupt image is recorded as failed and the job goes on; running
the same job again resumes at the first image not done.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..images.sources import collect_items
from ..options import check_whole, number, whole
from ..stores.features import (DONE, FAILED, PENDING, FeatureStore, StoreError, acquire_lock,
                               config_mismatch)
from .augment import CROP_MODES, augmentation_names
from .model import SPP_LEVELS, MLSPModel, normalize_pooling
from .worker import RowWriter, image_results, known_failures, prepare, run_model


@dataclass
class ExtractOptions:
    """Everything that decides what the stored features are (plus how fast they come)."""

    backbone: str = "inception_resnet_v2"
    alpha: float = 1.0
    weights: str = "imagenet"
    seed: int = 0  # for weights="none"
    augmentation: str = "crops"  # "crops" (8), "crops+grid" (16: + Corner Grid) or "whole" (1)
    crop_fraction: float = 0.875
    wide_size: int = 5  # 0: narrow features only
    # "area" (narrow + wide, always) plus any of "fore", "back" (M+MNet Eq. 1-2, P x P)
    # and "spp" (MTP-NasNet pyramid, 26 cells), stored beside narrow and wide
    pooling: tuple = ("area",)
    max_side: int | None = None  # optional cap; default full resolution
    max_pixels: int = 200_000_000  # larger images are refused (decompression bombs)
    # speed only, not part of the store's identity:
    workers: int = 2
    prefetch: int = 8
    max_batch_pixels: int = 8_000_000  # split the crops of huge images into smaller passes
    # activations of one forward pass (bytes); a bigger crop is downscaled to fit (its
    # scale is recorded in images/scale); None: a quarter of the machine's RAM
    max_memory: int | None = None
    flush_every: int = 16
    flush_seconds: float = 5.0

    def __post_init__(self):
        """Refuse values that cannot mean anything, naming the option (:mod:`mlsp.options`)."""
        for name, low in (("wide_size", 0), ("workers", 0), ("flush_every", 0),
                          ("max_pixels", 1), ("prefetch", 0), ("max_batch_pixels", 1),
                          ("seed", 0)):
            whole(name, getattr(self, name), low)
        check_whole("max_side", self.max_side, 0, optional=True)  # 0 = no cap
        check_whole("max_memory", self.max_memory, 1, optional=True)
        number("alpha", self.alpha, 0, low_open=True)
        number("crop_fraction", self.crop_fraction, 0, 1, low_open=True)
        number("flush_seconds", self.flush_seconds, 0)


def check_max_side(opts: ExtractOptions, min_side: int) -> None:
    """A ``max_side`` cap whose crops would be smaller than the backbone's minimum input
    cannot be honoured (the minimum rule would upscale again): refuse it up front."""
    if not opts.max_side:
        return
    frac = opts.crop_fraction if opts.augmentation in CROP_MODES else 1.0
    if math.floor(frac * opts.max_side) < min_side:
        need = math.ceil(min_side / frac)
        raise ValueError(f"max_side {opts.max_side} is too small for {opts.backbone}: its "
                         f"inputs need at least {min_side} px, so max_side must be >= {need}")


@dataclass
class ExtractSummary:
    store: str
    images: int
    done: int
    failed: int
    pending: int
    processed_now: int
    failed_now: int
    seconds: float
    failures: list = field(default_factory=list)
    failures_csv: str | None = None  # STORE.failures.csv when this run had failures

    @property
    def images_per_second(self) -> float:
        return self.processed_now / self.seconds if self.seconds > 0 else 0.0


def store_config(model: MLSPModel, opts: ExtractOptions) -> dict:
    import keras

    return {
        "backbone": model.backbone.name,
        "alpha": model.alpha,
        "weights": model.weights.name,
        "weights_sha256": model.weights.sha256,
        "weights_path": str(Path(model.weights.path).resolve()) if model.weights.path else "",
        "weights_seed": model.seed if model.weights.path is None else -1,
        "preprocessing": model.preprocessing,
        "augmentation_mode": opts.augmentation,
        "augmentations": list(augmentation_names(opts.augmentation)),
        "crop_fraction": float(opts.crop_fraction),
        "pool_narrow": 1,
        "pool_wide": int(opts.wide_size),
        "pooling": _pooling_description(model.pooling),
        "pooling_kinds": list(model.pooling),
        "max_side": int(opts.max_side or 0),
        "min_side": int(model.min_side),
        "mlsp_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "backend_version": _backend_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _pooling_description(kinds) -> str:
    text = "area (OpenCV INTER_AREA equivalent)"
    if "fore" in kinds or "back" in kinds:
        text += "; wide_fore/wide_back: M+MNet ForePool/BackPool (Eq. 1-2, adaptive windows)"
    if "spp" in kinds:
        text += f"; spp: area pyramid {'+'.join(f'{v}x{v}' for v in SPP_LEVELS)}"
    return text


def _backend_version() -> str:
    import importlib

    import keras

    name = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(
        keras.backend.backend(), keras.backend.backend())
    try:
        return importlib.import_module(name).__version__
    except Exception:
        return "unknown"


#: Crops above this many pixels are named on the progress bar while they run.
BIG_PIXELS = 4_000_000


def bytes_per_image(model: MLSPModel, opts: ExtractOptions) -> int:
    """Bytes one image takes in the store (float16, every kind, every augmentation)."""
    n_aug = len(augmentation_names(opts.augmentation))
    return 2 * n_aug * sum(int(np.prod(s)) for s in model.feature_shapes.values())


def check_free_space(out, n_images: int, per_image: int, reclaimed: int = 0) -> None:
    """Refuse a job whose rows cannot fit in the free space (the store is sparse: each
    row's bytes are claimed from the file system only when it is written).
    ``reclaimed``: bytes the job frees first (the store ``--overwrite`` replaces)."""
    out = Path(out)
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free + reclaimed
    need = n_images * per_image
    if need > free:
        raise StoreError(f"{out}: {n_images} images need about {_mb(need)} ({_mb(per_image)} "
                         f"each), the file system has {_mb(free)} free; free space, extract "
                         f"fewer (--limit), or skip this check (--no-space-check)")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _resolved(path: str, base: str) -> str:
    return os.path.realpath(os.path.join(base, os.path.expanduser(path)))


def _same_file(old: str, new: str, old_base: str) -> bool:
    """Two spellings of one image file (absolute/relative, another working folder)."""
    if old == new:
        return True
    a, b = _resolved(old, old_base), _resolved(new, os.getcwd())
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_same_list(store: FeatureStore, out, ids, paths) -> None:
    """Resume only the job the store was made for: same ids, same files (compared by
    resolved path, so another spelling of the same paths resumes)."""
    old_ids, old_paths = store.ids, store.paths
    base = str(store.config.get("working_dir") or os.getcwd())
    n_old, first = len(old_ids), None
    for k in range(min(n_old, len(ids))):
        if old_ids[k] != ids[k] or not _same_file(old_paths[k], paths[k], base):
            first = k
            break
    if first is None and n_old == len(ids):
        return
    if first is None:
        first = min(n_old, len(ids))
        what = "the lists differ in length"
    else:
        what = (f"id {old_ids[first]!r} vs {ids[first]!r}" if old_ids[first] != ids[first]
                else f"{old_paths[first]} vs {paths[first]}")
    done = int((store.status == DONE).sum())
    raise StoreError(f"{out}: made from a different image list ({n_old} images in the store, "
                     f"{len(ids)} given; first difference at row {first}: {what}); write to "
                     f"another output path (this store keeps its {done} finished rows)")


def open_or_create_store(out, items, model: MLSPModel, opts: ExtractOptions,
                         retry_failed=False, overwrite=False, extra_config=None,
                         lock=None, space_check=False, limit=None) -> FeatureStore:
    """A new store, or the existing one if it was made by the same job (resume).

    ``lock``: the writer's lock, already held (else taken here); the store keeps it.
    ``space_check``: refuse when the pending rows (at most ``limit``) cannot fit.
    """
    out = Path(out)
    config = {**store_config(model, opts), **(extra_config or {})}
    ids = [it.id for it in items]
    paths = [str(it.path) for it in items]
    own = lock is None
    lock = lock or acquire_lock(out)
    try:
        if out.exists() and not overwrite:
            store = FeatureStore.open(out, "r+", lock=lock)
            try:
                diff = config_mismatch(store.config, config)
                if diff:
                    raise StoreError(f"{out}: made with a different configuration "
                                     f"({'; '.join(diff)}); write to another output path")
                _check_same_list(store, out, ids, paths)
                if retry_failed:
                    store.reset_failed()
                if space_check:
                    n = int((store.status == PENDING).sum())
                    check_free_space(out, n if limit is None else min(n, limit),
                                     bytes_per_image(model, opts))
            except BaseException:
                store.lock = None  # the caller's lock: released by the caller
                store.close()
                raise
            return store
        if space_check:
            check_free_space(out, len(ids) if limit is None else min(len(ids), limit),
                             bytes_per_image(model, opts),
                             out.stat().st_blocks * 512 if out.exists() else 0)
        if out.exists():
            out.unlink()
        extra = {k: v for k, v in model.feature_shapes.items() if k not in ("narrow", "wide")}
        return FeatureStore.create(out, ids, paths, {**config, "working_dir": os.getcwd()},
                                   model.levels, len(augmentation_names(opts.augmentation)),
                                   opts.wide_size, extra=extra, lock=lock)
    except BaseException:
        if own:
            lock.release()
        raise


def _failures_csv(out, failures) -> str | None:
    """``STORE.failures.csv``: this run's failed images (id, path, error), or None."""
    if not failures:
        return None
    log = Path(str(out) + ".failures.csv")
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "path", "error"])
        writer.writeheader()
        writer.writerows(failures)
    return str(log)


def summarize(store: FeatureStore, out, items, writer: RowWriter, start: float) -> ExtractSummary:
    """The run's summary; this run's failures also go to ``STORE.failures.csv``."""
    status = store.status
    failures = [{"id": items[i].id, "path": str(items[i].path), "error": reason}
                for i, reason in writer.failures]
    return ExtractSummary(
        store=str(out), images=int(status.size), done=int((status == DONE).sum()),
        failed=int((status == FAILED).sum()), pending=int((status == PENDING).sum()),
        processed_now=writer.done_now + len(failures), failed_now=len(failures),
        seconds=time.monotonic() - start, failures=failures,
        failures_csv=_failures_csv(out, failures))


def build_options(opts: ExtractOptions | None, options: dict) -> ExtractOptions:
    if opts is not None and options:
        raise TypeError(f"give ExtractOptions or keyword options, not both ({', '.join(options)})")
    return opts if opts is not None else ExtractOptions(**options)


def open_job(out, items, opts: ExtractOptions, model, retry_failed, overwrite, extra_config,
             space_check, limit):
    """``(model, store, lock)`` for an extraction job, either engine: the output is locked
    first (a busy store or a folder that refuses writes fails before the model is built),
    then the model is built (or ``model`` checked against ``opts``) and the store opened or
    created.  On any failure the lock is released."""
    pooling = normalize_pooling(opts.pooling)
    lock = acquire_lock(out)
    try:
        if model is None:
            model = MLSPModel(opts.backbone, opts.alpha, opts.weights, opts.wide_size,
                              opts.seed, pooling=pooling)
        elif model.pooling != pooling:
            raise ValueError(f"the model pools {','.join(model.pooling)}, the options ask for "
                             f"{','.join(pooling)}")
        elif {"fore", "back"} & set(pooling) and model.wide_size != opts.wide_size:
            raise ValueError(f"the model pools to {model.wide_size}x{model.wide_size}, the "
                             f"options ask for wide size {opts.wide_size}")
        check_max_side(opts, model.min_side)
        store = open_or_create_store(out, items, model, opts, retry_failed, overwrite,
                                     extra_config, lock=lock, space_check=space_check,
                                     limit=limit)
    except BaseException:
        lock.release()
        raise
    return model, store, lock


def extract(items, out, opts: ExtractOptions | None = None, model: MLSPModel | None = None,
            retry_failed=False, overwrite=False, progress=True, limit=None,
            extra_config=None, space_check=True, **options) -> ExtractSummary:
    """Extract MLSP features of ``items`` into the store ``out``; resumable.

    ``items``: a list of :class:`~mlsp.images.sources.ImageItem`, or what
    :func:`~mlsp.images.sources.collect_items` takes (a folder, an image file, a list
    of those).  Options: ``opts`` (:class:`ExtractOptions`) or its fields as keywords
    (``backbone="mobilenet_v2", alpha=0.35, weights="bundled"``).  Resumes an existing
    store made by the same configuration and image list; ``limit`` stops after that
    many images; ``extra_config`` adds root attributes (e.g. the shard of a sharded
    job); ``space_check`` refuses a job that cannot fit in the free space.  The output
    is locked (one writer) before the model is built, so a busy store or a folder that
    refuses writes fails at once.  This run's failures go to ``STORE.failures.csv``.
    """
    from tqdm.auto import tqdm

    opts = build_options(opts, options)
    limit = check_whole("limit", limit, 1, optional=True)
    items = collect_items(items, allow_empty=True)
    model, store, lock = open_job(out, items, opts, model, retry_failed, overwrite,
                                  extra_config, space_check, limit)
    try:
        pending, known = known_failures(items, np.flatnonzero(store.status == PENDING))
        if limit is not None:
            pending = pending[:limit]
        jobs = [(int(i), str(items[i].path)) for i in pending]
        start = time.monotonic()
        writer = RowWriter(store, opts.flush_every, opts.flush_seconds)
        for result in known:
            writer.put(result)
        bar = tqdm(total=len(jobs), unit="img", disable=not progress, dynamic_ncols=True,
                   desc=f"extract {Path(out).name}")
        try:
            with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
                def working_on(result):  # a big image can take minutes: say so
                    if result.crops is not None and result.crops[0].size > 3 * BIG_PIXELS:
                        name = Path(items[result.index].path).name
                        bar.set_postfix_str(f"working on {name} ({result.width}x"
                                            f"{result.height})", refresh=True)

                for result in image_results(model, jobs, opts, pool, opts.prefetch,
                                            on_start=working_on):
                    writer.put(result)
                    if not result.ok and progress:  # else only in the store and summary
                        bar.write(f"skipped {items[result.index].path}: {result.error}")
                    bar.update(1)
                    bar.set_postfix(failed=len(writer.failures))
        finally:
            bar.close()
            writer.close()  # what was handed over is written (or the write error raised)
        return summarize(store, out, items, writer, start)
    finally:
        store.close()


__all__ = ["ExtractOptions", "ExtractSummary", "extract", "open_job", "prepare", "run_model",
           "open_or_create_store", "store_config", "bytes_per_image",
           "check_free_space", "summarize"]
