"""Heads on MLSP features (Hosu et al. 2019, sec. 3.2), the EMD loss and a classic baseline.

Attributes load on first use (PEP 562), so ``mlsp.heads.registry`` (the list of heads)
is importable without Keras.
"""
from importlib import import_module

_HOMES = {"HEADS": "models", "ALL_HEADS": "models", "build_head": "models",
          "fc3": "blocks", "pool_module": "blocks", "emd_loss": "losses",
          "re_emd_loss": "losses", "fit_baseline": "baseline", "REGISTRY": "registry",
          "HEAD_NAMES": "registry", "get_head": "registry"}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
