"""The registry's builders (:mod:`.registry`): one signature for every head."""
from __future__ import annotations

from .blocks import DEFAULT_DROPOUT

__all__ = ["mlsp_head", "mnet_head", "multitask_head", "cells_head", "ridge_head"]


def mlsp_head(spec, item_shape, output, n_bins, *, features, level_channels, wide_size, width,
              dropout, seed, n_tags, pool_kernels=None):
    """The MLSP paper's heads (sec. 3.2, Table 1), :func:`.models.build_mlsp_head`."""
    from .models import build_mlsp_head

    return build_mlsp_head(spec.name, item_shape[-1], level_channels=level_channels,
                      wide_size=item_shape[0] if len(item_shape) == 3 else wide_size,
                      output=output, n_bins=n_bins, width=width,
                      dropout=dropout or DEFAULT_DROPOUT, seed=seed, pool_kernels=pool_kernels)


def mnet_head(spec, item_shape, output, n_bins, *, features, level_channels, wide_size, width,
              dropout, seed, n_tags, pool_kernels=None):
    """M+MNet's fusion head; on ``wide_foreback`` its two branches read fore and back."""
    from .mnet import build_mnet

    foreback = features == "wide_foreback"
    return build_mnet(item_shape[-1] // (2 if foreback else 1), wide_size, output, n_bins,
                      source="foreback" if foreback else "area", width=width,
                      dropout=dropout or DEFAULT_DROPOUT, seed=seed)


def multitask_head(spec, item_shape, output, n_bins, *, features, level_channels, wide_size,
                   width, dropout, seed, n_tags, pool_kernels=None):
    """MTP-NasNet's training model (Eq. 1); its ``.inference`` is the saved net."""
    from .multitask import MultiTaskModel, build_multitask_net

    net = build_multitask_net(item_shape[-1], n_bins, n_tags, width,
                              dropout or DEFAULT_DROPOUT, seed)
    return MultiTaskModel(net, n_bins, n_tags)


def cells_head(spec, item_shape, output, n_bins, *, features, level_channels, wide_size, width,
               dropout, seed, n_tags, pool_kernels=None):
    """The neutral per-cell head of the pooling ablation (:mod:`.cells`)."""
    from .cells import build_cells_3fc

    return build_cells_3fc(item_shape, output, n_bins, width or 512,
                           dropout=dropout or DEFAULT_DROPOUT, seed=seed)


def ridge_head(spec, item_shape, output, n_bins, *, features, level_channels, wide_size,
               width, dropout, seed, n_tags, pool_kernels=None):
    """A linear head, ``Standardize`` then one Dense unit, whose weights are set in closed
    form by ridge regression (:func:`mlsp.training.fit.fit_ridge`), not by descent."""
    import keras

    from ..layers.standardize import Standardize

    inp = keras.Input((int(item_shape[-1]),), dtype="float32", name="features")
    x = Standardize(name="standardize")(inp)
    out = keras.layers.Dense(1, name="output")(x)
    return keras.Model(inp, out, name="ridge")
