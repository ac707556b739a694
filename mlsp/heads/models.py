"""Shallow heads on MLSP features (Hosu et al. 2019, sec. 3.2, Figs. 3-6, Table 1).

Backend-agnostic Keras 3 (``keras.layers`` only).  ``output="mos"`` gives a
linear (B, 1) score, trained with MSE as in the paper (sec. 3.3);
``output="distribution"`` gives a (B, n_bins) softmax for an EMD loss
(NIMA / M+MNet Eq. 3), an extension beyond the MLSP paper.
"""
from __future__ import annotations

import keras
from keras import layers

from ..feature_kinds import GRID_KINDS
from .blocks import DEFAULT_DROPOUT, POOL_KERNELS, Seeds, dense, fc3, final, pool_module
from .registry import REGISTRY, get_head

__all__ = ["build_head", "build_mlsp_head", "HEADS", "EXTRA_HEADS", "ALL_HEADS"]

#: The heads of the MLSP paper (Table 1), from the registry (:mod:`mlsp.heads.registry`,
#: every head with its feature kinds and outputs).
HEADS = tuple(n for n, s in REGISTRY.items() if s.builder.endswith(":mlsp_head"))
#: Heads from later papers, also built by :func:`build_head`: the M+MNet fusion head
#: (:mod:`mlsp.heads.mnet`, wide input) and the MTP-NasNet multi-task head
#: (:mod:`mlsp.heads.multitask`, narrow input; ``build_head`` gives its inference net).
EXTRA_HEADS = tuple(n for n, s in REGISTRY.items()
                    if s.builder.endswith((":mnet_head", ":multitask_head")))
ALL_HEADS = HEADS + EXTRA_HEADS


def build_head(name, channels, level_channels=None, wide_size=5, output="mos", n_bins=10,
               width=None, dropout=DEFAULT_DROPOUT, seed=None, pool_kernels=None) -> keras.Model:
    """The test-time Keras model of head ``name`` (one of :data:`ALL_HEADS`) on stored
    features of ``channels`` channels (a ``(wide_size, wide_size, channels)`` grid for the
    wide heads), built through the registry (:mod:`.registry`): the MLSP heads by
    :func:`build_mlsp_head`, M+MNet's fusion head and MTP-NasNet's multi-task net (its
    distribution output) by their own modules."""
    if name not in ALL_HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(ALL_HEADS)}")
    if output not in ("mos", "distribution"):
        raise ValueError(f"output must be 'mos' or 'distribution', got {output!r}")
    spec = get_head(name)
    if output not in spec.outputs:
        raise ValueError(f"the {name} head predicts {' / '.join(spec.outputs)} "
                         f"(output={spec.outputs[0]!r})")
    c, p = int(channels), int(wide_size)
    item_shape = (p, p, c) if spec.default_features in GRID_KINDS else (c,)
    model = spec.build(item_shape, output, n_bins, level_channels=level_channels,
                       wide_size=p, width=width, dropout=dropout, seed=seed,
                       pool_kernels=pool_kernels)
    return model.inference if spec.trains_itself else model


def build_mlsp_head(name, channels, level_channels=None, wide_size=5, output="mos", n_bins=10,
                    width=None, dropout=DEFAULT_DROPOUT, seed=None,
                    pool_kernels=None) -> keras.Model:
    """Build one MLSP head (sec. 3.2, Table 1); the output layer is named "output".

    - ``single_1fc`` (Fig. 4a): one Dense on the narrow (GAP) features.
    - ``single_3fc`` (Fig. 4b): 3FC with X = 2048 (``width`` overrides X).
    - ``multi_3fc`` (Fig. 5): the narrow input split by ``level_channels``, one
      3FC per level with X = that level's channels, per-level predictions
      combined by a learned linear layer (Dense, no activation).  For
      distributions the per-level pre-softmax logits are combined, then softmax.
    - ``pool_3fc`` (Fig. 6): (wide_size, wide_size, channels) input, the modified
      Inception module (:func:`pool_module`, 3072 channels), global average
      pooling, 3FC with X = 2048 (``width`` overrides).  Note: the caption of
      Fig. 6 says X = 3072 (the concat width); we follow the project spec
      (X = 2048, the Single-3FC setting); pass ``width=3072`` for the caption's.
      ``pool_kernels`` (default 1024 a column, Fig. 6) narrows the module: on a few
      hundred photos of Inception-v3's 10,048 channels its 1x1 convolutions hold 26 M
      weights, and 128 a column cut the cost about 8-fold.

    Narrow heads take a (channels,) float32 input named "features"; pool_3fc
    a (wide_size, wide_size, channels) input named "features".
    """
    if name not in HEADS:
        raise ValueError(f"not an MLSP head: {name!r}; choose one of {', '.join(HEADS)}")
    if output not in ("mos", "distribution"):
        raise ValueError(f"output must be 'mos' or 'distribution', got {output!r}")
    channels = int(channels)
    seeds = Seeds(seed)
    if name == "pool_3fc":
        inp = keras.Input((int(wide_size), int(wide_size), channels), dtype="float32",
                          name="features")
        x = pool_module(inp, seeds, int(pool_kernels or POOL_KERNELS))
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = fc3(x, width or 2048, dropout, seeds)
        return keras.Model(inp, final(x, output, n_bins, seeds), name=name)

    inp = keras.Input((channels,), dtype="float32", name="features")
    if name == "single_1fc":
        return keras.Model(inp, final(inp, output, n_bins, seeds), name=name)
    if name == "single_3fc":
        x = fc3(inp, width or 2048, dropout, seeds)
        return keras.Model(inp, final(x, output, n_bins, seeds), name=name)

    # multi_3fc
    if not level_channels:
        raise ValueError("multi_3fc needs level_channels (each level's channel count)")
    level_channels = [int(c) for c in level_channels]
    if sum(level_channels) != channels or min(level_channels) <= 0:
        raise ValueError(f"level_channels {level_channels} must be positive and sum to "
                         f"channels={channels}")
    units = 1 if output == "mos" else int(n_bins)
    outs, start = [], 0
    for i, c in enumerate(level_channels):
        stop = start + c
        xi = inp[:, start:stop]  # a serialisable GetItem op (no Lambda layer)
        xi = fc3(xi, c, dropout, seeds, prefix=f"level{i}_fc")
        outs.append(dense(units, seeds, f"level{i}_out")(xi))  # pre-softmax logits
        start = stop
    x = outs[0] if len(outs) == 1 else layers.Concatenate(name="levels_concat")(outs)
    if output == "mos":
        out = dense(1, seeds, "output")(x)
    else:
        logits = dense(units, seeds, "combine")(x)
        out = layers.Activation("softmax", name="output")(logits)
    return keras.Model(inp, out, name=name)
