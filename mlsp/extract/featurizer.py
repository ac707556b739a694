"""Images to pooled MLSP features in memory: the one featurizer.

The local engine, the Ray actors (:mod:`.ray_engine`) and prediction all run images
through :func:`mlsp.extract.worker.image_results` (decode ahead, the size and memory
rules, the 8 crops, one forward pass; Hosu et al. 2019 sec. 3.1); :class:`Featurizer`
is that path for callers that keep the features in memory instead of writing a store,
built from options or from the settings a trained head recorded
(:func:`options_from_features`, the inverse of :func:`.extractor.store_config`).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .extractor import ExtractOptions, store_config
from .model import MLSPModel
from .worker import image_results

__all__ = ["Featurizer", "options_from_features"]


def options_from_features(features: dict) -> ExtractOptions:
    """The ExtractOptions that reproduce a store's (or a sidecar's recorded) identity
    settings: backbone, weights seed, crops, pooling kinds and sizes."""
    mode = features.get("augmentation_mode", "crops")
    return ExtractOptions(
        backbone=features["backbone"], alpha=float(features["alpha"]),
        # Corner Grid rows ("crops+grid") train a head; scores average the plain crops
        augmentation={"crops+grid": "crops"}.get(mode, mode),
        pooling=tuple(features.get("pooling_kinds") or ("area",)),
        crop_fraction=float(features.get("crop_fraction", 0.875)),
        wide_size=int(features.get("pool_wide", 0) or 0),
        max_side=int(features.get("max_side") or 0) or None,
        seed=max(0, int(features.get("weights_seed", 0) or 0)),
    )


class Featurizer:
    """An MLSP model and its options: ``results(paths)`` yields one
    :class:`~mlsp.extract.worker.ImageResult` per path (float16 features per pooling
    kind, exactly as a store holds them, or the reason the image failed)."""

    def __init__(self, opts: ExtractOptions, model: MLSPModel | None = None, weights=None):
        self.opts = opts
        self.model = model if model is not None else MLSPModel(
            opts.backbone, opts.alpha, opts.weights if weights is None else weights,
            opts.wide_size, opts.seed, pooling=opts.pooling)

    @property
    def levels(self):
        return self.model.levels

    def config(self) -> dict:
        """The store configuration these features would have (for compatibility checks)."""
        return store_config(self.model, self.opts)

    def results(self, paths):
        """ImageResults of ``paths`` in order (decoding ``opts.workers`` images ahead)."""
        jobs = list(enumerate(str(p) for p in paths))
        with ThreadPoolExecutor(max_workers=max(1, self.opts.workers),
                                thread_name_prefix="mlsp-decode") as pool:
            yield from image_results(self.model, jobs, self.opts, pool,
                                     max(1, self.opts.workers))
