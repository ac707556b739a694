"""One image through the pipeline, and the one writer of finished rows.

Both engines (local threads, :mod:`mlsp.extract.ray_engine` actors) schedule
:func:`image_results` (decode ahead in threads, then per image: scale, crops,
forward pass, or the reason it failed) and hand its :class:`ImageResult` items
to a :class:`RowWriter` (buffered, crash-safe writes in one thread, the flush
policy, the counts of the run).  Nothing here decides which images to do.
"""
from __future__ import annotations

import collections
import math
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..images.decode import ImageDecodeError, decode_image
from .augment import CROP_MODES, augment, fit_scale, rescale

__all__ = ["ImageResult", "prepare", "activation_bytes_per_pixel", "default_max_memory",
           "load_image", "run_model", "forward", "image_results", "RowWriter",
           "known_failures"]


class SizeRefused(ValueError):
    """A size rule (max side, minimum input, memory budget) refuses the image."""

    def __init__(self, reason, height, width):
        super().__init__(reason)
        self.reason, self.height, self.width = reason, height, width


def default_max_memory() -> int:
    """A quarter of the machine's RAM: the activation budget of one forward pass."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 1024 ** 3


def activation_bytes_per_pixel(model) -> float:
    """Bytes of activations one input pixel costs in the backbone (float32).

    The sum, over the backbone's layers, of each output's channels divided by its
    stride squared (walked from the input: a layer's stride multiplies its input's).
    A sum over all layers bounds the peak (not every tensor is alive at once): for
    MobileNetV2-0.35 it is 188 floats a pixel, against a measured peak RSS growth of
    0.8 to 1.1 times that (500 to 2000 px inputs).  For Inception-v3 the sum (414 floats)
    is about 25 times the measured peak, which shrank 12 MP photos to 3.8 MP under the
    default budget; the backbone's measured ``peak_share`` (0.2 there,
    :data:`mlsp.extract.backbones.PEAK_MEASURED`) scales the sum."""
    cached = getattr(model, "_mlsp_bytes_per_pixel", None)
    if cached:
        return cached
    inner = [layer for layer in model.model.layers if hasattr(layer, "layers")]
    net = inner[0] if inner else model.model
    stride = {id(t): 1 for t in net.inputs}
    floats = 0.0
    for layer in net.layers:
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        s = max([stride.get(id(t), 1) for t in ins] or [1])
        st = getattr(layer, "strides", None) or 1
        s *= st[0] if isinstance(st, (tuple, list)) else st
        outs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for t in outs:
            stride[id(t)] = s
            if len(t.shape) == 4 and t.shape[-1]:
                floats += t.shape[-1] / s ** 2
    backbone = getattr(model, "backbone", None)
    value = 4.0 * floats * float(getattr(backbone, "peak_share", 1.0) or 1.0)
    try:
        model._mlsp_bytes_per_pixel = value
    except AttributeError:
        pass
    return value


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def prepare(path: str, opts, min_side: int, bytes_per_pixel: float = 0.0):
    """Decode, rescale if a rule says so, augment: (batch, height, width, scale).

    With ``bytes_per_pixel`` (:func:`activation_bytes_per_pixel`), a crop whose
    forward pass would need more than ``opts.max_memory`` is downscaled just enough
    (the factor is the recorded scale), or refused when even the backbone's smallest
    input would not fit."""
    image = decode_image(path, max_pixels=opts.max_pixels)
    height, width = image.shape[:2]
    try:
        scale = fit_scale(height, width, min_side, opts.max_side, opts.augmentation,
                          opts.crop_fraction)
    except ValueError as err:
        raise SizeRefused(str(err), height, width) from None
    if bytes_per_pixel:
        scale = _fit_memory(height, width, scale, min_side, opts, bytes_per_pixel)
    batch = augment(rescale(image, scale), opts.augmentation, opts.crop_fraction)
    return batch, height, width, scale


def _fit_memory(height, width, scale, min_side, opts, bytes_per_pixel) -> float:
    budget = opts.max_memory or default_max_memory()
    frac = opts.crop_fraction if opts.augmentation in CROP_MODES else 1.0
    need = (height * scale * frac) * (width * scale * frac) * bytes_per_pixel
    if need <= budget:
        return scale
    fitted = scale * math.sqrt(budget / need) * 0.999
    if math.floor(min(height, width) * fitted * frac) < min_side:
        raise SizeRefused(f"one crop needs about {_gb(need)} of activations, above the memory "
                          f"budget of {_gb(budget)} (--max-memory) even at the backbone's "
                          f"smallest input", height, width)
    return fitted
@dataclass
class ImageResult:
    """One image's outcome: float16 features per kind, or the reason it failed."""

    index: int
    height: int = 0
    width: int = 0
    scale: float = 1.0
    features: dict | None = None
    error: str | None = None
    crops: np.ndarray | None = None  # between decoding and the forward pass only

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> dict:
        return {"index": self.index, "height": self.height, "width": self.width,
                "scale": self.scale, **self.features}


def load_image(index: int, path: str, opts, min_side: int,
               bytes_per_pixel: float = 0.0) -> ImageResult:
    """Decode and augment one image; any failure becomes its recorded reason."""
    try:
        crops, h, w, s = prepare(path, opts, min_side, bytes_per_pixel)
        return ImageResult(index, h, w, s, crops=crops)
    except SizeRefused as err:
        return ImageResult(index, err.height, err.width, error=err.reason)
    except ImageDecodeError as err:
        return ImageResult(index, error=getattr(err, "cause", None) or str(err))
    except Exception as err:  # never let one file end the batch job
        return ImageResult(index, error=f"{type(err).__name__}: {err}")


def run_model(model, batch: np.ndarray, max_batch_pixels: int) -> dict:
    """Forward the crops of one image, in as few passes as ``max_batch_pixels`` allows."""
    per_crop = batch.shape[1] * batch.shape[2]
    step = max(1, min(len(batch), max_batch_pixels // max(per_crop, 1)))
    if step >= len(batch):
        return model(batch)
    parts = [model(batch[k:k + step]) for k in range(0, len(batch), step)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def forward(model, result: ImageResult, max_batch_pixels: int) -> ImageResult:
    """The backbone on a loaded image's crops: features as float16, or the failure."""
    crops, result.crops = result.crops, None
    if result.error is not None:
        return result
    try:
        feats = run_model(model, crops, max_batch_pixels)
        result.features = {k: np.asarray(v).astype(np.float16) for k, v in feats.items()}
    except Exception as err:  # e.g. out of memory on a giant image
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result.error = f"backbone failed on {crops.shape[2]}x{crops.shape[1]} crops: {first}"
    return result


def image_results(model, jobs, opts, pool, ahead: int, on_start=None):
    """Yield an :class:`ImageResult` per ``(index, path)`` job, in order; up to ``ahead``
    images are decoded in ``pool`` (threads) while the network works.

    Crops are kept within ``opts.max_memory`` of activations (downscaled, or failed),
    and a forward pass takes at most as many crops as that budget holds.
    ``on_start(result)`` is called before each forward pass (a progress bar names a
    big image there)."""
    per_pixel = activation_bytes_per_pixel(model)
    budget = opts.max_memory or default_max_memory()
    max_batch_pixels = max(1, min(opts.max_batch_pixels, int(budget // per_pixel)))
    window, todo = collections.deque(), iter(jobs)

    def refill():
        while len(window) < max(1, ahead):
            job = next(todo, None)
            if job is None:
                return
            index, path = job
            window.append(pool.submit(load_image, int(index), str(path), opts, model.min_side,
                                      per_pixel))

    refill()
    try:
        while window:
            loaded = window.popleft().result()
            refill()
            if on_start is not None:
                on_start(loaded)
            yield forward(model, loaded, max_batch_pixels)
    finally:  # stopped early (Ctrl-C, a write error): drop what was decoded ahead
        for future in window:
            future.cancel()


def known_failures(items, pending):
    """Split ``pending`` rows into those to open and the :class:`ImageResult` failures of
    items that carry their ``error`` already (a folder that cannot be listed, a name that is
    not UTF-8): those are recorded with that reason, never opened."""
    bad = [int(i) for i in pending if getattr(items[int(i)], "error", None)]
    if not bad:
        return pending, []
    keep = np.setdiff1d(np.asarray(pending, dtype=np.int64), bad)
    return keep, [ImageResult(i, error=str(items[i].error)) for i in bad]


class RowWriter(threading.Thread):
    """Owns the store while extracting: results are buffered and written by one thread,
    every ``flush_every`` images or ``flush_seconds`` (a crash loses at most those).

    A failed write (full disk) stops the writer; the next :meth:`put` or :meth:`close`
    raises it, and nothing after it is written.
    """

    def __init__(self, store, flush_every: int, flush_seconds: float):
        super().__init__(daemon=True, name="mlsp-writer")
        self.store, self.flush_every, self.flush_seconds = store, flush_every, flush_seconds
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, 2 * flush_every))
        self.error: BaseException | None = None
        self.done_now = 0
        self.failures: list[tuple] = []  # (index, reason) of this run's failures
        self.start()

    def run(self):
        rows, failures, last = [], [], time.monotonic()
        while True:
            item = self.queue.get()
            if item is not None:
                (rows if item.ok else failures).append(item)
            due = (len(rows) + len(failures) >= self.flush_every
                   or time.monotonic() - last >= self.flush_seconds or item is None)
            if due and (rows or failures):
                try:
                    self.store.write_block([r.row() for r in rows],
                                           [(r.index, r.error, r.height, r.width)
                                            for r in failures])
                except BaseException as err:  # report to the caller, stop writing
                    self.error = err
                    return
                rows, failures, last = [], [], time.monotonic()
            if item is None:
                return

    def put(self, result: ImageResult) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(result, timeout=0.5)
                break
            except queue.Full:
                continue
        if result.ok:
            self.done_now += 1
        else:
            self.failures.append((result.index, result.error))

    def close(self) -> None:
        """Write what is buffered and stop; raises the write error if there was one."""
        if self.is_alive():
            while self.error is None:
                try:
                    self.queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.join()
        if self.error is not None:
            raise self.error
