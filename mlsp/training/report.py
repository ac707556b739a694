"""The files of a training run: the model and its sidecar, metrics.json, history.csv,
predictions.csv and the plots (predicted vs true MOS per split; learning curves)."""
from __future__ import annotations

from pathlib import Path

from ..evaluation.plots import plot_history, plot_scatter
from ..evaluation.reports import write_history, write_json, write_predictions
from ..inference.model_format import write_model

__all__ = ["write_training_report"]


def write_training_report(out, result, store_name: str, plots: bool = True) -> list:
    """Write a :class:`~mlsp.training.trainer.TrainResult` into ``out``; the files written."""
    out = Path(out)
    files = write_model(out, result.model, result.sidecar)
    write_json(out / "metrics.json", result.metrics)
    write_history(out / "history.csv", result.history)
    p = result.predictions
    write_predictions(out / "predictions.csv", p["ids"], p["split"], p["mos_true"],
                      p["mos_pred"], p["dist_pred"])
    files += [out / "metrics.json", out / "history.csv", out / "predictions.csv"]
    if plots:
        sc, tr = result.sidecar, result.sidecar["train"]
        head, objective, loss = sc["head"], tr["objective"], tr["loss"]
        what = head if (objective, loss) in (("mlsp", "mse"), ("mlsp", "emd")) else \
            f"{head} ({objective}, {loss})"
        parts = {}
        for part in ("val", "test"):
            m = p["split"] == part
            if result.metrics.get(part) is not None:
                parts[part] = (p["mos_true"][m], p["mos_pred"][m], result.metrics[part])
        p1 = plot_scatter(out / "scatter.png", parts, sc["score_range"], f"{what} on {store_name}")
        p2 = plot_history(out / "learning_curves.png", result.history)
        files += [f for f in (p1, p2) if f]
    return files
