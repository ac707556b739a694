"""Do a MOS column and vote columns speak of the same scale?

A MOS on 0-100 beside vote counts over bins 1-5 would train on one scale and report metrics
against the other, silently meaningless: :func:`check_same_scale` refuses them in one line.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_same_scale"]


def check_same_scale(path, names, bin_scores, mos, distribution) -> None:
    """The MOS must lie within the bins' scores (half a bin of slack); a MOS that is not
    exactly the votes' mean (another aggregation, rounding) is accepted."""
    k = np.asarray(bin_scores, dtype=np.float64)
    valid = np.isfinite(mos) & np.isfinite(distribution).all(axis=1)
    if not valid.any():
        return
    lo, hi = float(mos[valid].min()), float(mos[valid].max())
    if lo >= k[0] - 0.5 and hi <= k[-1] + 0.5:
        return
    means = distribution[valid] @ k
    cols = f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]
    raise ValueError(f"{path}: the MOS column and the vote columns {cols} are on different "
                     f"scales: MOS spans {lo:g}..{hi:g}, the votes score bins "
                     f"{k[0]:g}..{k[-1]:g} (their means span {means.min():.3g}.."
                     f"{means.max():.3g}); rescale the MOS to the bins' scale or remove one "
                     f"of them")
