"""Machine-readable results: JSON (NaN -> null), predictions.csv, history.csv, and the one
number formatter the printed lines use."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..outputs import atomic_path, write_atomic

__all__ = ["fmt", "jsonable", "write_json", "write_predictions", "write_history"]


def fmt(x, digits=3) -> str:
    """A metric for people: ``digits`` decimals, ``-`` for a missing or NaN value."""
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def jsonable(x):
    """``x`` with numpy values as Python ones and non-finite floats as None (valid JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path, obj):
    """Written whole or not at all (:func:`mlsp.outputs.write_atomic`)."""
    write_atomic(path, json.dumps(jsonable(obj), indent=2) + "\n", Path(path).name)


def write_predictions(path, ids, split, mos_true, mos_pred, dist_pred, extra=None):
    """id, split, true and predicted MOS (then per-photo uncertainty columns such as
    ``spread`` / ``score_std`` from ``extra``, and the predicted distribution p1..pK)."""
    extra = extra or {}
    with atomic_path(path, Path(path).name) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        k = 0 if dist_pred is None else dist_pred.shape[1]
        w.writerow(["id", "split", "mos_true", "mos_pred", *extra,
                    *(f"p{i + 1}" for i in range(k))])
        for i in range(len(ids)):
            row = [ids[i], split[i], f"{mos_true[i]:.6f}", f"{mos_pred[i]:.6f}",
                   *(f"{v[i]:.6f}" for v in extra.values())]
            if k:
                row += [f"{v:.6f}" for v in dist_pred[i]]
            w.writerow(row)


def write_history(path, history: dict):
    """One row per epoch (1-based), one column per recorded quantity."""
    with atomic_path(path, Path(path).name) as tmp, open(tmp, "w", newline="") as f:
        keys = list(history)
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history.get("loss", []))):
            w.writerow([e + 1, *(history[k][e] if e < len(history[k]) else "" for k in keys)])
