"""mlsp: image aesthetics assessment with multi-level spatially pooled features.

Pipeline: images -> extract -> stores -> heads -> evaluation (Hosu et al., CVPR 2019).

The public API (see :mod:`mlsp.api` and the README's "Python API"): ``mlsp.extract``,
``mlsp.FeatureStore``, ``mlsp.load_labels``, ``mlsp.train``, ``mlsp.load``,
``mlsp.evaluate``, ``mlsp.HEADS``, ``mlsp.TrainedHead``, ``mlsp.TrainConfig``.
Attributes load on first use (PEP 562): ``import mlsp`` imports neither Keras nor a
backend, so the command line starts fast.
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "extract": ("mlsp.extract", None),  # the package is callable: mlsp.api.extract
    "train": ("mlsp.api", "train"),
    "cross_validate": ("mlsp.api", "cross_validate"),
    "load": ("mlsp.api", "load"),
    "list_models": ("mlsp.zoo", "list_models"),
    "evaluate": ("mlsp.api", "evaluate"),
    "collect_images": ("mlsp.api", "collect_images"),
    "HEADS": ("mlsp.heads.registry", "HEAD_NAMES"),
    "FeatureStore": ("mlsp.stores.features", "FeatureStore"),
    "StoreError": ("mlsp.errors", "StoreError"),
    "load_labels": ("mlsp.labels", "load_labels"),
    "Labels": ("mlsp.labels", "Labels"),
    "TrainedHead": ("mlsp.inference.trained_head", "TrainedHead"),
    "TrainConfig": ("mlsp.training.config", "TrainConfig"),
    "MLSPError": ("mlsp.errors", "MLSPError"),
    "OptionError": ("mlsp.errors", "OptionError"),
}

__all__ = ["__version__", *_LAZY]

#: Entry points that run Keras: the backend is loaded quietly first (:mod:`mlsp.backend`),
#: so that the library prints nothing of its own accord, TensorFlow's start-up log included.
_NEEDS_BACKEND = frozenset({"extract", "train", "cross_validate", "load", "evaluate",
                            "TrainedHead"})


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'mlsp' has no attribute {name!r}")
    module, attr = _LAZY[name]
    if name in _NEEDS_BACKEND:
        from .backend import load_backend

        load_backend()
    value = import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
