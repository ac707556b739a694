"""Scoring with a trained head moved to :mod:`mlsp.trained_head` (the trained-head object,
:class:`~mlsp.trained_head.TrainedHead`); these names are kept for existing callers."""
from ..trained_head import expand_inputs, find_weights, predict_images, predict_store  # noqa: F401

__all__ = ["predict_images", "predict_store", "find_weights", "expand_inputs"]
