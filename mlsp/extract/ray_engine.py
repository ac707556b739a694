"""Extraction on Ray (``mlsp extract --engine ray``): many model replicas, one writer.

Same job, same store as :func:`mlsp.extract.extractor.extract` (the "local"
engine), spread over a pool of Ray actors on one machine or a cluster:

* The driver opens or creates the store exactly as the local engine does
  (:func:`open_or_create_store`: same configuration and image-list checks, same
  resume rule: only rows with status 0 are processed; ``retry_failed`` and
  ``overwrite`` as there).  It alone writes the HDF5 file.
* A Ray Dataset of the pending ``(row index, path)`` pairs
  (``ray.data.from_items``, blocks of ``batch_images`` items) goes through
  ``map_batches`` with a callable class on a fixed actor pool
  (``compute=ray.data.ActorPoolStrategy(size=num_actors)``).  Each actor builds
  one :class:`MLSPModel` in ``__init__`` (checked against the driver's: weights
  SHA-256, a checksum of all weights, levels, Keras backend) and, per image,
  decodes and augments with :func:`prepare` and runs :func:`run_model`; it
  returns float16 features, or the failure reason, per image.
* The driver consumes the results as they stream in (``iter_batches``) and
  writes them with ``FeatureStore.write_block`` in buffered
  blocks of ``opts.flush_every`` images (or every ``opts.flush_seconds``), so a
  crash loses at most those, as with the local engine.

Memory is bounded everywhere, whatever the number of images:

* input: the pending list is tiny (an int and a path per image);
* each actor: one model, at most ``opts.workers`` decoded and augmented images
  (decoding runs in ``opts.workers`` threads while the network works) and the
  outputs of one batch (``batch_images`` images of float16 features);
* in flight: at most ``num_actors x 2`` batches are submitted to the actors
  (``max_tasks_in_flight_per_actor=2``), and finished batches wait in the object
  store only up to a budget (Ray Data's streaming executor stops feeding the
  actors when the budget is used; see ``_object_store_budget``) until the
  driver takes them; output blocks are capped at 32 MB
  (``target_max_block_size``);
* driver: one prefetched batch plus at most ``opts.flush_every`` buffered images.

Weights: the actors load the very file the driver resolved (``--weights PATH``,
``bundled``), so on a real cluster the weights file and the images must be on a
filesystem every node sees at the same path (NFS, a shared mount), and mlsp
must be installed, at the same version, on every node.  ``weights="imagenet"``
is resolved again on each node from Keras' cache (``~/.keras/models`` or
``$KERAS_HOME/models``): fill that cache on every node (or let nodes download).
Whatever the source, an actor whose weights differ from the driver's refuses to
start, so a store never mixes features of two models.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..stores.features import PENDING
from .augment import augmentation_names
from ..images.sources import collect_items
from ..options import check_whole
from .extractor import ExtractOptions, ExtractSummary, build_options, open_job, summarize
from ..errors import BackendUnavailableError
from .extractor import bytes_per_image as store_bytes_per_image
from .model import MLSPModel, normalize_pooling
from .worker import ImageResult, RowWriter, image_results, known_failures

__all__ = ["extract_with_ray", "RayUnavailableError"]

#: Cap on one output block (features of up to ``batch_images`` images).
TARGET_MAX_BLOCK_BYTES = 32 * 1024 ** 2
#: Batches submitted to one actor ahead of the one it is working on (pipelining).
TASKS_IN_FLIGHT_PER_ACTOR = 2


class RayUnavailableError(BackendUnavailableError):
    """Ray is not installed (``pip install 'mlsp[ray]'``)."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the data extra lacks it)
    except ImportError as err:
        raise RayUnavailableError(
            f"--engine ray needs Ray Data ({err}); install it with: pip install 'mlsp[ray]' "
            f"(or pip install 'ray[data]')") from None
    return ray


# -- the actor ---------------------------------------------------------------------------

def _weights_checksum(model: MLSPModel) -> float:
    """A cheap fingerprint of every weight (float64 sum of absolute values)."""
    return float(sum(np.abs(np.asarray(w, dtype=np.float64)).sum()
                     for w in model.model.get_weights()))


class MLSPActor:
    """Ray Data callable class: one MLSPModel per actor; a batch of (index, path) in,
    per image float16 features or a failure reason out."""

    def __init__(self, opts: ExtractOptions, weights, expected: dict):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        if keras.backend.backend() != expected["backend"]:
            raise RuntimeError(f"this Ray worker runs Keras on {keras.backend.backend()}, the "
                               f"driver on {expected['backend']}: set KERAS_BACKEND alike")
        self.opts = opts
        self.model = MLSPModel(opts.backbone, opts.alpha, weights, opts.wide_size, opts.seed,
                               pooling=normalize_pooling(opts.pooling))
        m = self.model
        got = {"sha256": m.weights.sha256, "levels": [lv.name for lv in m.levels],
               "channels": m.channels}
        for key, value in got.items():
            if value != expected[key]:
                raise RuntimeError(f"this Ray worker's model differs from the driver's in {key}: "
                                   f"{value!r} != {expected[key]!r} (same weights file and mlsp "
                                   f"version on every node?)")
        checksum = _weights_checksum(m)
        if not math.isclose(checksum, expected["checksum"], rel_tol=1e-9, abs_tol=1e-9):
            raise RuntimeError(f"this Ray worker's weights differ from the driver's (checksum "
                               f"{checksum!r} != {expected['checksum']!r})")
        self.shapes = m.feature_shapes
        self.n_aug = len(augmentation_names(opts.augmentation))
        self.pool = ThreadPoolExecutor(max_workers=max(1, opts.workers),
                                       thread_name_prefix="mlsp-decode")

    def __call__(self, batch: dict) -> dict:
        index = np.asarray(batch["index"], dtype=np.int64)
        paths = [str(p) for p in batch["path"]]
        n = len(index)
        out = {
            "index": index,
            "ok": np.zeros(n, dtype=bool),
            "error": np.array([""] * n, dtype=object),
            "height": np.zeros(n, dtype=np.int32),
            "width": np.zeros(n, dtype=np.int32),
            "scale": np.ones(n, dtype=np.float32),
        }
        for kind, shape in self.shapes.items():
            out[kind] = np.zeros((n, self.n_aug) + tuple(shape), dtype=np.float16)
        # the local engine's per-image worker; results come back in job order
        results = image_results(self.model, zip(index.tolist(), paths), self.opts, self.pool,
                                self.opts.workers)
        for k, result in enumerate(results):
            out["height"][k], out["width"][k], out["scale"][k] = (
                result.height, result.width, result.scale)
            if result.ok:
                for kind in self.shapes:
                    out[kind][k] = result.features[kind]
                out["ok"][k] = True
            else:
                out["error"][k] = str(result.error)
        return out


# -- the driver --------------------------------------------------------------------------

def _connect(ray, address):
    """Attach to Ray; True when this call started a local instance (to shut down later)."""
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    if not (address or os.environ.get("RAY_ADDRESS")):
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
        return True
    # "auto", "HOST:PORT" (a cluster made with `ray start`) or "ray://HOST:10001" (Ray
    # Client); None here means $RAY_ADDRESS, which ray.init reads itself
    ray.init(address=address or None, **quiet)
    return False


def _default_actors(ray, num_gpus_per_actor) -> int:
    res = ray.cluster_resources()
    if num_gpus_per_actor:
        gpus = res.get("GPU", 0)
        if gpus < num_gpus_per_actor:
            raise RuntimeError(f"the Ray cluster has {gpus:g} GPUs; {num_gpus_per_actor:g} per "
                               f"actor asked for")
        return max(1, int(gpus // num_gpus_per_actor))
    # each actor's backend already uses several cores; two per actor is a fair default
    return max(1, int(res.get("CPU", 1)) // 2)


def _object_store_budget(num_actors, batch_images, bytes_per_image) -> int:
    """Object store memory the results may occupy before Ray Data stops feeding actors."""
    per_batch = max(1, batch_images) * bytes_per_image
    return int(max(256 * 1024 ** 2, 2 * (TASKS_IN_FLIGHT_PER_ACTOR + 1) * num_actors * per_batch))


def _hide_gpus_from_driver():
    """The driver only builds a model to describe the store; keep it off the GPUs the
    actors need (TensorFlow would otherwise reserve all of their memory)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        try:
            import tensorflow as tf

            tf.config.set_visible_devices([], "GPU")
        except (RuntimeError, ValueError):  # already initialized: nothing to do safely
            pass


def extract_with_ray(items, out, opts: ExtractOptions | None = None, address=None,
                     num_actors=None, num_gpus_per_actor=0, batch_images=4, progress=True,
                     retry_failed=False, overwrite=False, limit=None,
                     extra_config=None, space_check=True, **options) -> ExtractSummary:
    """Extract MLSP features of ``items`` into the store ``out`` on a Ray actor pool.

    The store is the local engine's (same layout, attributes and row contents) and
    is resumed the same way (see :func:`mlsp.extract.extractor.extract`).

    ``address``: None starts a local Ray instance (all cores, no dashboard) unless
    Ray is already initialized in this process or ``RAY_ADDRESS`` is set; "auto"
    or "HOST:PORT" attaches to a running cluster (``ray start --head``);
    "ray://HOST:10001" uses Ray Client.  ``num_actors``: model replicas
    (default: one per GPU with ``num_gpus_per_actor``, else one per two CPUs).
    ``batch_images``: images per Ray task and per result block.
    """
    import keras

    ray = _import_ray()
    opts = build_options(opts, options)
    limit = check_whole("limit", limit, 1, optional=True)
    items = collect_items(items, allow_empty=True)
    if batch_images < 1:
        raise ValueError("batch_images must be at least 1")
    if num_gpus_per_actor:
        _hide_gpus_from_driver()
    model, store, lock = open_job(out, items, opts, None, retry_failed, overwrite,
                                  extra_config, space_check, limit)
    start = time.monotonic()
    started_ray = False
    writer = RowWriter(store, opts.flush_every, opts.flush_seconds)
    try:
        pending, known = known_failures(items, np.flatnonzero(store.status == PENDING))
        if limit is not None:
            pending = pending[:limit]
        for result in known:
            writer.put(result)
        paths = [str(it.path) for it in items]
        shapes = model.feature_shapes
        bytes_per_image = store_bytes_per_image(model, opts)
        expected = {"backend": keras.backend.backend(), "sha256": model.weights.sha256,
                    "levels": [lv.name for lv in model.levels], "channels": model.channels,
                    "checksum": _weights_checksum(model)}
        # "imagenet" is found again on each node (Keras cache); a file is read where it is
        weights = opts.weights if model.weights.name == "imagenet" else model.weights
        del model
        try:
            if len(pending):
                started_ray = _connect(ray, address)
                actors = int(num_actors or _default_actors(ray, num_gpus_per_actor))
                with warnings.catch_warnings():  # Ray Data's own deprecation notices
                    warnings.filterwarnings("ignore", category=DeprecationWarning,
                                            module=r"ray\.data\.context")
                    ds = _dataset(ray, pending, paths, opts, weights, expected, actors,
                                  num_gpus_per_actor, batch_images, bytes_per_image)
                    _consume(ds, writer, items, shapes, progress, len(pending), Path(out).name)
        finally:
            writer.close()  # what arrived is kept, whatever stopped the stream
        return summarize(store, out, items, writer, start)
    finally:
        store.close()
        if started_ray:
            ray.shutdown()


def _dataset(ray, pending, paths, opts, weights, expected, actors, num_gpus_per_actor,
             batch_images, bytes_per_image):
    import keras

    ctx = ray.data.DataContext.get_current()
    saved = {}

    def setting(name, value):
        if hasattr(ctx, name):
            saved[name] = getattr(ctx, name)
            setattr(ctx, name, value)

    # a Dataset seals a copy of the current context when it is made: set, build, restore
    setting("target_max_block_size", TARGET_MAX_BLOCK_BYTES)
    setting("enable_progress_bars", False)  # mlsp draws its own bar
    setting("print_on_execution_start", False)
    saved["execution_options"] = ctx.execution_options
    options = copy.deepcopy(ctx.execution_options)
    options.preserve_order = False  # rows carry their index; any order is fine
    options.resource_limits = options.resource_limits.__class__.for_limits(
        object_store_memory=_object_store_budget(actors, batch_images, bytes_per_image))
    ctx.execution_options = options
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
    try:
        rows = [{"index": int(i), "path": paths[i]} for i in pending]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch_images)))
        env = {"KERAS_BACKEND": keras.backend.backend(),
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        if not num_gpus_per_actor:  # Ray leaves GPUs visible to actors that asked for none
            env["CUDA_VISIBLE_DEVICES"] = ""
        return ds.map_batches(
            MLSPActor,
            fn_constructor_kwargs={"opts": opts, "weights": weights, "expected": expected},
            batch_size=batch_images,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                size=actors, max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT_PER_ACTOR),
            num_cpus=1,
            num_gpus=num_gpus_per_actor or None,
            runtime_env={"env_vars": env},
        )
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def _consume(ds, writer: RowWriter, items, shapes, progress, total, name):
    """Hand the actors' results, as they stream in, to the local engine's writer."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True,
               desc=f"extract {name} (ray)")
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for k in range(len(batch["index"])):
                ok = bool(batch["ok"][k])
                result = ImageResult(
                    int(batch["index"][k]), int(batch["height"][k]), int(batch["width"][k]),
                    float(batch["scale"][k]),
                    features={kind: batch[kind][k] for kind in shapes} if ok else None,
                    error=None if ok else str(batch["error"][k]))
                writer.put(result)
                if not ok and progress:
                    bar.write(f"skipped {items[result.index].path}: {result.error}")
                bar.update(1)
                bar.set_postfix(failed=len(writer.failures))
    finally:
        bar.close()
