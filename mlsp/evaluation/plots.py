"""Plots a person would rather look at than read: predicted vs true MOS (one panel per
split, SRCC / PLCC in the titles; MLSP sec. 4 reports these correlations) and learning
curves with the learning rate of the MLSP schedule (sec. 3.3).  Matplotlib's Agg backend:
no screen needed."""
from __future__ import annotations

import numpy as np

from .reports import fmt

__all__ = ["plot_scatter", "plot_history", "pyplot"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    """Training / validation loss per epoch, learning rate on a log axis."""
    plt = pyplot()
    n = len(history.get("loss", []))
    if not n:
        return None
    ep = np.arange(1, n + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(ep, history["loss"], label="train loss")
    if "val_loss" in history:
        ax.plot(ep, history["val_loss"], label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    if "lr" in history:
        ax2.plot(ep, history["lr"], "k:", label="learning rate")
        ax2.set_yscale("log")
        ax2.set_ylabel("learning rate")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
