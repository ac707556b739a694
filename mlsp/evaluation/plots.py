"""Plots a person would rather look at than read: predicted vs true MOS (one panel per
split, SRCC / PLCC in the titles; MLSP sec. 4 reports these correlations) and learning
curves with the learning rate of the MLSP schedule (sec. 3.3).  Matplotlib's Agg backend:
no screen needed."""
from __future__ import annotations

import numpy as np

from .reports import fmt

__all__ = ["plot_scatter", "plot_history", "pyplot", "correlation_axis"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def correlation_axis(ax, axis: str = "y"):
    """Limit a correlation axis to the data's range within [-1, 1] (a correlation cannot
    leave it, so neither may its axis)."""
    get, put = (ax.get_ylim, ax.set_ylim) if axis == "y" else (ax.get_xlim, ax.set_xlim)
    lo, hi = get()
    put(max(lo, -1.0), min(hi, 1.0))


def plot_scatter(path, parts: dict, score_range, title=""):
    """Predicted vs true MOS, one panel per split, SRCC / PLCC in the panel titles."""
    plt = pyplot()
    parts = {k: v for k, v in parts.items() if v is not None and len(v[0])}
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(4.5 * len(parts), 4.3), squeeze=False)
    lo, hi = score_range
    for ax, (name, (t, p, m)) in zip(axes[0], parts.items()):
        ax.scatter(t, p, s=8, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("true MOS")
        ax.set_ylabel("predicted MOS")
        ax.set_title(f"{name} (n={len(t)}): SRCC {fmt(m['srcc'])}, PLCC {fmt(m['plcc'])}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(path, history: dict):
    """Training / validation loss per epoch with the learning rate on a log axis; below,
    the validation SRCC per epoch (the quantity the schedule's checkpoint is judged by)
    when it was recorded."""
    plt = pyplot()
    n = len(history.get("loss", []))
    if not n:
        return None
    ep = np.arange(1, n + 1)
    srcc = history.get("val_srcc")
    has_srcc = srcc is not None and np.isfinite(np.asarray(srcc, float)).any()
    fig, axes = plt.subplots(2 if has_srcc else 1, 1, figsize=(6.5, 6.4 if has_srcc else 4.2),
                             sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(ep, history["loss"], label="train loss")
    if "val_loss" in history:
        ax.plot(ep, history["val_loss"], label="val loss")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    if "lr" in history:
        ax2.plot(ep, history["lr"], "k:", label="learning rate")
        ax2.set_yscale("log")
        ax2.set_ylabel("learning rate")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right")
    if has_srcc:
        ax3 = axes[1, 0]
        v = np.asarray(srcc, float)[:n]
        ax3.plot(ep[:v.size], v, "C2o-", ms=3, label="validation SRCC")
        best = int(np.nanargmax(v))
        ax3.annotate(f"max {v[best]:.3f} (epoch {best + 1})", (best + 1, v[best]),
                     textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
        ax3.set_ylabel("validation SRCC")
        correlation_axis(ax3)
        ax3.legend(loc="lower right")
    axes[-1, 0].set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
