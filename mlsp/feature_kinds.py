"""The feature kinds a head can read from a store: one list, without Keras or HDF5.

All but ``wide_foreback`` are datasets ``features/<kind>`` of a store (MLSP narrow and
wide area pooling, Hosu et al. 2019 sec. 3.1; ForePool / BackPool, M+MNet Eq. 1-2; SPP,
MTP-NasNet); ``wide_foreback`` is ``wide_fore`` and ``wide_back`` side by side on channels.
"""
from __future__ import annotations

__all__ = ["KIND_POOLING", "FEATURE_KINDS", "GRID_KINDS", "feature_parts", "pooling_kinds_for"]

#: Feature kind -> the extractor pooling kinds (besides ``area``) it needs.
KIND_POOLING = {"narrow": (), "wide": (), "wide_fore": ("fore",), "wide_back": ("back",),
                "spp": ("spp",), "wide_foreback": ("fore", "back")}
FEATURE_KINDS = tuple(KIND_POOLING)
#: Kinds that are a (P, P, C) grid (the rest: narrow (C,), SPP (26, C)).
GRID_KINDS = ("wide", "wide_fore", "wide_back", "wide_foreback")


def feature_parts(kind: str) -> tuple:
    """The store datasets (``features/<part>``) a feature kind reads, in channel order."""
    if kind not in KIND_POOLING:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {kind!r}")
    return ("wide_fore", "wide_back") if kind == "wide_foreback" else (kind,)


def pooling_kinds_for(kind: str) -> tuple:
    """Extractor pooling kinds (``ExtractOptions.pooling``) that produce ``kind``."""
    feature_parts(kind)
    return ("area",) + KIND_POOLING[kind]
