"""``mlsp.extract``: extraction from Python in one call -- images (a folder, files, a list
file, ImageItems) into a feature store (Hosu et al. 2019, sec. 3.1) -- and
:func:`run_extraction`, the one place that decides the engine and the shard, which both
``mlsp.extract`` and ``mlsp extract`` call."""
from __future__ import annotations

from pathlib import Path

from ..errors import OptionError
from ..vocabulary import ENGINES, check_choice

__all__ = ["extract", "run_extraction", "select_shard"]


def select_shard(items, shard):
    """``(items, extra store config)`` of shard ``"K/N"`` (or ``(K, N)``) of the list:
    the K-th (0-based) of N contiguous blocks (:func:`mlsp.stores.merge.shard_items`)."""
    from ..stores.merge import parse_shard, shard_items

    if shard is None:
        return items, None
    text = shard if isinstance(shard, str) else "/".join(str(v) for v in shard)
    try:
        return shard_items(items, *parse_shard(text))
    except ValueError as err:
        raise OptionError(str(err)) from None


def run_extraction(items, store, opts, *, engine: str = "local", extra_config=None,
                   ray_address=None, ray_actors=None, ray_gpus_per_actor: float = 0,
                   progress: bool = False, overwrite: bool = False, retry_failed: bool = False,
                   limit=None, space_check: bool = True):
    """Extract ``items`` (ImageItems) into ``store`` with ``opts`` (ExtractOptions) on the
    chosen engine (``local``: threads in this process; ``ray``: Ray actors); the
    :class:`~mlsp.extract.extractor.ExtractSummary`."""
    check_choice("engine", engine, ENGINES)
    if engine != "ray" and (ray_address or ray_actors or ray_gpus_per_actor):
        raise OptionError("ray_address / ray_actors / ray_gpus_per_actor need engine='ray'")
    common = dict(progress=progress, retry_failed=retry_failed, overwrite=overwrite,
                  limit=limit, extra_config=extra_config, space_check=space_check)
    if engine == "ray":
        from .ray_engine import extract_with_ray  # imports no Ray itself

        return extract_with_ray(items, store, opts, address=ray_address, num_actors=ray_actors,
                                num_gpus_per_actor=ray_gpus_per_actor, **common)
    from .extractor import extract as run

    return run(items, store, opts, **common)


def extract(images, store, *, progress: bool = False, overwrite: bool = False,
            retry_failed: bool = False, engine: str = "local", shard=None, limit=None,
            space_check: bool = True, ray_address=None, ray_actors=None,
            ray_gpus_per_actor: float = 0, **options) -> Path:
    """Extract MLSP features (Hosu et al. 2019, sec. 3.1) of ``images`` into the HDF5 store
    ``store`` and return its path.  ``images``: see :func:`mlsp.images.sources.collect_items`.
    ``options``: :class:`mlsp.extract.extractor.ExtractOptions` (backbone, alpha, weights,
    augmentation, wide_size, pooling, max_side, workers, max_memory, ...).  ``engine``:
    ``"local"`` or ``"ray"`` (with ``ray_address``, ``ray_actors``, ``ray_gpus_per_actor``);
    ``shard="K/N"``: only the K-th of N blocks of the list (join with ``mlsp merge``).
    Resumes a store of the same configuration; images that fail are recorded in the store
    (``mlsp.FeatureStore(path).info()``), not raised."""
    from ..images.sources import collect_items
    from ..vocabulary import check_pooling
    from .extractor import ExtractOptions

    if "pooling" in options:
        options["pooling"] = check_pooling(options["pooling"], options.get("wide_size", 5))
    items, extra = select_shard(collect_items(images), shard)
    run_extraction(items, store, ExtractOptions(**options), engine=engine, extra_config=extra,
                   ray_address=ray_address, ray_actors=ray_actors,
                   ray_gpus_per_actor=ray_gpus_per_actor, progress=progress,
                   overwrite=overwrite, retry_failed=retry_failed, limit=limit,
                   space_check=space_check)
    return Path(store)
