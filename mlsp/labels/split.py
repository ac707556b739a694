"""The one place where labels meet a store and are split: align by id, then split.

Every caller (``mlsp.train``, ``mlsp train``, cross-validation, the ablations) goes through
:func:`align_and_split`, so the same labels, store and seed give the same train / val / test
images through every door.  Splitting before aligning would draw the validation share from
labels that have no features (images missing from the store, failed or pending), and the
parts would differ with the store's coverage.  The split itself is MLSP sec. 3.3's: the
images outside the test part are drawn at random into 'val' (5% in the paper; 10% on small
sets, :func:`mlsp.training.config.regime`) and 'train'.
"""
from __future__ import annotations

import numpy as np

from .align import aligned_labels

__all__ = ["align_and_split", "split_labels", "draw_test_ids"]


def split_labels(lab, val_fraction, seed, test_ids=None):
    """``lab.with_split`` with ``val_fraction="auto"`` resolved by the number of images
    left for training and validation (:func:`mlsp.training.config.regime`)."""
    from ..training.config import AUTO, regime

    if val_fraction == AUTO:
        val_fraction = regime(int((~lab.test_mask(test_ids)).sum()))["val_fraction"]
    return lab.with_split(val_fraction=float(val_fraction), seed=seed, test_ids=test_ids)


def draw_test_ids(lab, test_fraction, seed) -> list:
    """``round(test_fraction * n)`` ids drawn at random (sorted ids, seeded) as a test part."""
    ids = np.array(sorted(lab.ids), dtype=object)
    k = int(round(float(test_fraction) * len(ids)))
    return list(np.random.default_rng([int(seed), 7]).permutation(ids)[:k])


def align_and_split(labels, store, val_fraction="auto", seed: int = 0, test_ids=None,
                    test_fraction: float = 0.0):
    """``(labels, Alignment)``: ``labels`` (a file or :class:`~mlsp.labels.Labels`) matched
    to the images extracted in the open ``store``, then split train / val / test.

    The test part: ``test_ids`` when given, else the labels' own 'test' rows, else (with
    ``test_fraction``) a seeded draw; a labels split that already has 'val' rows is kept.
    """
    lab, al = aligned_labels(labels, store)
    if test_ids is None and test_fraction and not np.any(lab.split_mask("test")):
        test_ids = draw_test_ids(lab, test_fraction, seed)
    return split_labels(lab, val_fraction, seed, test_ids), al
