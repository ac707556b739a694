"""Re-export of :mod:`mlsp.layers.pooling`, the pooling layers' home (heads import them
from there without importing the extraction package)."""
from ..layers.pooling import (AreaPooling2D, BackPool2D, ForeBackPool2D, ForePool2D,  # noqa: F401
                              SOFTMAX_EPS, SpatialPyramidPooling, adaptive_window, area_resize,
                              area_weights_numpy, fore_pool, window_membership_numpy)

__all__ = ["AreaPooling2D", "BackPool2D", "ForeBackPool2D", "ForePool2D", "SOFTMAX_EPS",
           "SpatialPyramidPooling", "adaptive_window", "area_resize", "area_weights_numpy",
           "fore_pool", "window_membership_numpy"]
