"""What a cross-validation run writes and prints: the fold ensemble (model.keras +
model.json), cv_folds.csv (every fold's metrics for the head, ridge and the constant),
cv_summary.json (means with 95% intervals, out-of-fold metrics, the verdict against ridge),
oof_predictions.csv, cv_folds.png (each fold's SRCC, head against ridge) and oof_scatter.png
(out-of-fold predicted vs true MOS)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..evaluation.intervals import as_interval, interval_text
from ..evaluation.plots import correlation_axis, plot_scatter, pyplot
from ..evaluation.reports import fmt, write_json
from ..inference.model_format import write_model

__all__ = ["write_cv_report", "summary_lines", "interval_text", "saved_line"]


def summary_lines(result) -> list[str]:
    """The lines a person reads after ``mlsp train --folds``."""
    s = result.summary()
    n = len(result.seeds) * result.folds
    lines = [saved_line(result), f"{result.folds} folds x {len(result.seeds)} seed(s) = {n} test folds; mean "
             f"[95% interval, corrected for overlapping training sets]:"]
    for row, label in (("head", "head"), ("baseline_ridge", "ridge"), ("constant", "constant")):
        m = s.get(row, {})
        lines.append(f"  {label:8s} SRCC {interval_text(m.get('srcc'))}  PLCC "
                     f"{interval_text(m.get('plcc'))}  RMSE {interval_text(m.get('rmse'))}")
    verdict = result.verdict()
    if verdict:
        lines.append(verdict)
    if result.held_out:
        h = result.held_out
        lines.append(f"held-out test split (n={h['n']}), fold ensemble: SRCC {fmt(h['srcc'])} "
                     f"PLCC {fmt(h['plcc'])} RMSE {fmt(h['rmse'])}")
    return lines


def saved_line(result) -> str:
    """What model.keras is, and whether that model lost to ridge on these very folds."""
    heads = [sc.get("head", "head") for _, sc in result.models]
    kinds = {h: heads.count(h) for h in heads}
    what = ", ".join(f"{h} x{c}" for h, c in kinds.items())
    line = (f"saved: the ensemble of the {len(heads)} fold models of seed {result.seeds[0]} "
            f"({what})")
    s = result.summary()
    h = as_interval(s["head"].get("srcc"))
    r = as_interval(s["baseline_ridge"].get("srcc"))
    if set(result.model_counts()) != {"ridge"} and h and r and h.mean < r.mean:
        line += (f"; it LOST to ridge on these folds (SRCC {h.mean:.3f} vs {r.mean:.3f}): "
                 f"consider --head ridge")
    return line


def write_cv_report(out, result, plots: bool = True) -> list:
    """Write a :class:`~mlsp.training.crossval.CVResult` into ``out``; the files written."""
    out = Path(out)
    trained = result.trained  # mlsp.cross_validate built it already
    model, sidecar = (trained.model, trained.sidecar) if trained else result.ensemble()
    files = write_model(out, model, dict(sidecar, cross_validation={
        "folds": result.folds, "seeds": list(result.seeds), "summary": result.summary(),
        "fold_models": [sc.get("head") for _, sc in result.models],
        "selected_by": [sc.get("selected_by") for _, sc in result.models]}))
    keys = []
    for r in result.rows:
        keys += [k for k in r if k not in keys]
    with open(out / "cv_folds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(result.rows)
    write_json(out / "cv_summary.json", {
        "folds": result.folds, "seeds": list(result.seeds), "summary": result.summary(),
        "out_of_fold": result.oof_metrics(), "verdict": result.verdict(),
        "held_out_test": result.held_out, "options": result.options,
        "seconds": result.seconds})
    with open(out / "oof_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "seed", "fold", "mos_true", "mos_pred"])
        for s, o in result.oof.items():
            for i, id_ in enumerate(o["ids"]):
                w.writerow([id_, s, int(o["fold"][i]), f"{o['mos_true'][i]:.6f}",
                            f"{o['mos_pred'][i]:.6f}"])
    files += [out / "cv_folds.csv", out / "cv_summary.json", out / "oof_predictions.csv"]
    if plots:
        files.append(_plot_folds(out / "cv_folds.png", result))
        s0 = result.seeds[0]
        o, m = result.oof[s0], result.oof_metrics()[int(s0)]
        scatter = plot_scatter(out / "oof_scatter.png",
                               {f"out-of-fold, seed {s0}": (o["mos_true"], o["mos_pred"], m)},
                               sidecar.get("score_range") or (float(np.min(o["mos_true"])),
                                                              float(np.max(o["mos_true"]))),
                               "every image scored by the fold model that held it out")
        files += [scatter] if scatter else []
    return files


def _plot_folds(path, result):
    """Each test fold's SRCC for the head and ridge, with the means and their intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    s = result.summary()
    for k, (row, label) in enumerate((("head", "head"), ("baseline_ridge", "ridge"))):
        v = np.array([np.nan if x is None else x for x in result.values(row, "srcc")], float)
        ax.plot(np.full(v.size, k) + np.linspace(-0.15, 0.15, v.size), v, "o", alpha=0.5,
                color=f"C{k}")
        m = as_interval(s.get(row, {}).get("srcc"))
        if m and all(map(math.isfinite, (m.mean, m.low, m.high))):
            ax.errorbar(k + 0.3, m.mean, yerr=[[m.mean - m.low], [m.high - m.mean]], fmt="s",
                        capsize=4, color=f"C{k}", label=f"{label}: {interval_text(m)}")
    ax.set_xticks([0, 1], ["head", "ridge"])
    ax.set_ylabel("test-fold SRCC")
    correlation_axis(ax)
    ax.set_title(f"{result.folds}-fold CV x {len(result.seeds)} seed(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
