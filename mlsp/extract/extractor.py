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

import collections
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..images.decode import ImageDecodeError, decode_image
from ..stores.features import FeatureStore, StoreError, config_mismatch
from .augment import CROP_MODES, augment, augmentation_names, fit_scale, rescale
from .model import SPP_CELLS, SPP_LEVELS, MLSPModel, normalize_pooling


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
    flush_every: int = 16
    flush_seconds: float = 5.0

    def __post_init__(self):
        """Refuse values that cannot mean anything, naming the option."""
        def whole(name, low):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {v!r}")

        whole("wide_size", 0)
        whole("workers", 0)
        whole("flush_every", 0)
        whole("max_pixels", 1)
        if self.max_side is not None:
            whole("max_side", 0)  # 0 = no cap
        if not 0 < float(self.crop_fraction) <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")


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


def prepare(path: str, opts: ExtractOptions, min_side: int):
    """Decode, rescale if a rule says so, augment: (batch, height, width, scale)."""
    image = decode_image(path, max_pixels=opts.max_pixels)
    height, width = image.shape[:2]
    try:
        scale = fit_scale(height, width, min_side, opts.max_side, opts.augmentation,
                          opts.crop_fraction)
    except ValueError as err:
        raise _SizeRefused(str(err), height, width) from None
    batch = augment(rescale(image, scale), opts.augmentation, opts.crop_fraction)
    return batch, height, width, scale


class _SizeRefused(ValueError):
    def __init__(self, reason, height, width):
        super().__init__(reason)
        self.reason, self.height, self.width = reason, height, width


def _load(index, path, opts, min_side):
    try:
        batch, h, w, s = prepare(path, opts, min_side)
        return index, batch, h, w, s, None
    except _SizeRefused as err:
        return index, None, err.height, err.width, 1.0, err.reason
    except ImageDecodeError as err:
        return index, None, 0, 0, 1.0, getattr(err, "cause", None) or str(err)
    except Exception as err:  # never let one file end the batch job
        return index, None, 0, 0, 1.0, f"{type(err).__name__}: {err}"


class _Writer(threading.Thread):
    """Owns the HDF5 file while extracting: buffered, crash-safe writes in one thread."""

    def __init__(self, store: FeatureStore, flush_every: int, flush_seconds: float):
        super().__init__(daemon=True, name="mlsp-writer")
        self.store, self.flush_every, self.flush_seconds = store, flush_every, flush_seconds
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, 2 * flush_every))
        self.error: BaseException | None = None

    def run(self):
        rows, failures, last = [], [], time.monotonic()
        while True:
            item = self.queue.get()
            if item is not None:
                (rows if item[0] == "row" else failures).append(item[1])
            due = (len(rows) + len(failures) >= self.flush_every
                   or time.monotonic() - last >= self.flush_seconds or item is None)
            if due and (rows or failures):
                try:
                    self.store.write_rows(rows)
                    self.store.mark_failed(failures)
                except BaseException as err:  # report to the main thread, stop writing
                    self.error = err
                    return
                rows, failures, last = [], [], time.monotonic()
            if item is None:
                return

    def put(self, item):
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=1.0)
                return
            except queue.Full:
                continue


def open_or_create_store(out, items, model: MLSPModel, opts: ExtractOptions,
                         retry_failed=False, overwrite=False, extra_config=None) -> FeatureStore:
    """A new store, or the existing one if it was made by the same job (resume)."""
    out = Path(out)
    config = {**store_config(model, opts), **(extra_config or {})}
    ids = [it.id for it in items]
    paths = [str(it.path) for it in items]
    if out.exists() and not overwrite:
        store = FeatureStore.open(out, "r+")
        diff = config_mismatch(store.config, config)
        if diff:
            store.close()
            raise StoreError(f"{out}: made with a different configuration ({'; '.join(diff)}); "
                             f"use another output path or --overwrite")
        if store.ids != ids or store.paths != paths:
            n_old = store.n_images
            old_ids, old_paths = store.ids, store.paths
            store.close()
            first = next((k for k in range(min(n_old, len(ids)))
                          if old_ids[k] != ids[k] or old_paths[k] != paths[k]), min(n_old, len(ids)))
            raise StoreError(f"{out}: made from a different image list ({n_old} images in the "
                             f"store, {len(ids)} given; first difference at row {first}); "
                             f"use another output path or --overwrite")
        if retry_failed:
            store.reset_failed()
        return store
    if out.exists():
        out.unlink()
    extra = {k: v for k, v in model.feature_shapes.items() if k not in ("narrow", "wide")}
    return FeatureStore.create(out, ids, paths, config, model.levels,
                               len(augmentation_names(opts.augmentation)), opts.wide_size,
                               extra=extra)


def run_model(model: MLSPModel, batch: np.ndarray, max_batch_pixels: int) -> dict:
    """Forward the crops of one image, in as few passes as ``max_batch_pixels`` allows."""
    per_crop = batch.shape[1] * batch.shape[2]
    step = max(1, min(len(batch), max_batch_pixels // max(per_crop, 1)))
    if step >= len(batch):
        return model(batch)
    parts = [model(batch[k:k + step]) for k in range(0, len(batch), step)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def extract(items, out, opts: ExtractOptions | None = None, model: MLSPModel | None = None,
            retry_failed=False, overwrite=False, progress=True, limit=None,
            extra_config=None) -> ExtractSummary:
    """Extract MLSP features of ``items`` (ImageItem list) into the store ``out``.

    Resumes an existing store made by the same configuration and image list;
    ``limit`` stops after that many images (for tests and trial runs);
    ``extra_config`` adds root attributes (e.g. the shard of a sharded job).
    """
    from tqdm.auto import tqdm

    opts = opts or ExtractOptions()
    pooling = normalize_pooling(opts.pooling)
    if model is None:
        model = MLSPModel(opts.backbone, opts.alpha, opts.weights, opts.wide_size, opts.seed,
                          pooling=pooling)
    elif model.pooling != pooling:
        raise ValueError(f"the model pools {','.join(model.pooling)}, the options ask for "
                         f"{','.join(pooling)}")
    elif {"fore", "back"} & set(pooling) and model.wide_size != opts.wide_size:
        raise ValueError(f"the model pools to {model.wide_size}x{model.wide_size}, the options "
                         f"ask for wide size {opts.wide_size}")
    check_max_side(opts, model.min_side)
    store = open_or_create_store(out, items, model, opts, retry_failed, overwrite, extra_config)
    pending = np.flatnonzero(store.status == 0)
    if limit is not None:
        pending = pending[:limit]
    paths = [str(it.path) for it in items]
    writer = _Writer(store, opts.flush_every, opts.flush_seconds)
    writer.start()
    failures_now, done_now, start = [], 0, time.monotonic()
    bar = tqdm(total=len(pending), unit="img", disable=not progress, dynamic_ncols=True,
               desc=f"extract {Path(out).name}")
    try:
        with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
            window = collections.deque()
            todo = iter(pending.tolist())

            def refill():
                while len(window) < max(1, opts.prefetch):
                    i = next(todo, None)
                    if i is None:
                        return
                    window.append(pool.submit(_load, i, paths[i], opts, model.min_side))

            refill()
            while window:
                index, batch, h, w, s, reason = window.popleft().result()
                refill()
                if reason is None:
                    try:
                        feats = run_model(model, batch, opts.max_batch_pixels)
                    except Exception as err:  # e.g. out of memory on a giant image
                        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                        reason = f"backbone failed on {batch.shape[2]}x{batch.shape[1]} crops: {first}"
                if reason is None:
                    row = {"index": index, "height": h, "width": w, "scale": s,
                           **{k: v.astype(np.float16) for k, v in feats.items()}}
                    writer.put(("row", row))
                    done_now += 1
                else:
                    writer.put(("failed", (index, reason, h, w)))
                    failures_now.append({"id": items[index].id, "path": paths[index],
                                         "error": reason})
                    bar.write(f"skipped {paths[index]}: {reason}")
                bar.update(1)
                bar.set_postfix(failed=len(failures_now))
    finally:
        bar.close()
        writer.put(None)
        writer.join()
        status = store.status
        store.close()
    if writer.error is not None:
        raise writer.error
    return ExtractSummary(
        store=str(out), images=int(status.size), done=int((status == 1).sum()),
        failed=int((status == -1).sum()), pending=int((status == 0).sum()),
        processed_now=done_now + len(failures_now), failed_now=len(failures_now),
        seconds=time.monotonic() - start, failures=failures_now,
    )


def megabytes_per_image(channels: int, n_aug: int, wide_size: int,
                        pooling=("area",)) -> float:
    """Raw float16 payload of one image in the store, in MB."""
    kinds = normalize_pooling(pooling)
    cells = 1 + wide_size * wide_size * (1 + ("fore" in kinds) + ("back" in kinds))
    cells += SPP_CELLS if "spp" in kinds else 0
    return n_aug * channels * 2 * cells / 1e6


__all__ = ["ExtractOptions", "ExtractSummary", "extract", "prepare", "run_model",
           "open_or_create_store", "store_config", "megabytes_per_image"]
