"""Comparisons a paper can print: several heads (or option sets) cross-validated on the
same folds, each with its mean and 95% interval, and the paired difference to a chosen
reference (``mlsp compare``).

Every run goes through :func:`mlsp.training.crossval.cross_validate` with the same
``folds`` and ``seeds``; the fold assignment depends on the ids and the seed only, so
fold j of seed s holds the same test images in every run and the differences are paired
(per fold, run minus reference), which removes the fold-to-fold difficulty both share.
Intervals: :mod:`mlsp.evaluation.intervals` (Fisher z for correlations, log for errors,
the corrected repeated k-fold t of Nadeau and Bengio 2003 on those scales; differences of
correlations on the r scale, clipped to [-2, 2]).

Writes ``compare.csv`` (one row a run, flat), ``compare.json`` (named fields: mean, low,
high, n_folds, method), ``compare_folds.csv`` (every fold's metrics), ``compare_oof.csv``
(out-of-fold predictions of the first seed, one column a run), ``compare.png`` (SRCC bars
with intervals and the reference line) and ``compare_scatter.png`` (out-of-fold predicted
vs true MOS, one panel a run).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..evaluation.intervals import (as_interval, best_and_indistinguishable, interval_text,
                                    paired_difference)
from ..evaluation.reports import write_json

__all__ = ["compare", "parse_runs", "comparison_lines"]

METRICS = ("srcc", "plcc", "rmse")


def parse_runs(heads) -> dict:
    """``"ridge,single_3fc"`` / a list of head names / ``{name: options}`` -> ``{name:
    options}`` (options include ``head``; a name alone is a head with its defaults)."""
    if isinstance(heads, dict):
        runs = {str(k): dict(v or {}) for k, v in heads.items()}
        for name, opts in runs.items():
            opts.setdefault("head", name)
        return runs
    names = heads.split(",") if isinstance(heads, str) else list(heads)
    names = [str(n).strip().replace("-", "_") for n in names if str(n).strip()]
    if not names:
        raise ValueError("--heads: give at least one head")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--heads: {dup[0]!r} given twice")
    return {n: {"head": n} for n in names}


def compare(store, labels, heads=("ridge", "single_3fc"), reference=None, folds: int = 5,
            seeds=(0,), out_dir=None, progress: bool = True, fit=None, **options) -> dict:
    """Cross-validate every run on the same folds; the comparison as a JSON-ready dict.

    ``heads``: names (``"ridge,single_3fc,multi_3fc"``) or ``{name: trainer options}``.
    ``reference``: the run every other is differenced against (default: the first).
    ``options`` go to every run (epochs, lr, levels, ...); ``fit`` replaces the trainer
    (tests).  With ``out_dir`` the files listed in the module docstring are written.
    """
    from .crossval import cross_validate

    runs = parse_runs(heads)
    reference = next(iter(runs)) if reference is None else str(reference).replace("-", "_")
    if reference not in runs:
        raise ValueError(f"--reference {reference!r} is not among the runs "
                         f"({', '.join(runs)})")
    if int(folds) < 2:
        raise ValueError(f"--folds must be at least 2 for a comparison, got {folds}")
    seeds = tuple(int(s) for s in (seeds if np.ndim(seeds) else [seeds]))
    results = {}
    for name, opts in runs.items():
        if progress:
            print(f"== {name}: {folds} folds x {len(seeds)} seed(s)", flush=True)
        results[name] = cross_validate(store, labels, folds=folds, seeds=seeds, fit=fit,
                                       progress=progress, **{**options, **opts})
    report = _report(results, runs, reference, folds, seeds)
    if out_dir is not None:
        report["files"] = [str(p) for p in write_comparison(out_dir, report, results)]
    return report


def _report(results, runs, reference, folds, seeds) -> dict:
    tf = next(iter(results.values())).test_fraction
    ref = results[reference]
    rows = []
    for name, res in results.items():
        s = res.summary()
        row = {"name": name, "options": runs[name], "is_reference": name == reference,
               "seconds": round(res.seconds, 1),
               **{m: s["head"].get(m) for m in METRICS},
               "out_of_fold": res.oof_metrics()}
        for m in ("srcc", "plcc"):
            row[f"minus_reference_{m}"] = None if name == reference else paired_difference(
                res.fold_values("head", m), ref.fold_values("head", m), m, tf).as_dict()
        rows.append(row)
    d = best_and_indistinguishable({n: r.fold_values("head", "srcc")
                                    for n, r in results.items()}, "srcc", tf)
    return {"folds": int(folds), "seeds": list(seeds), "reference": reference,
            "test_fraction": tf, "metric_for_best": "srcc", "best": d["best"],
            "indistinguishable_from_best": d["indistinguishable"], "runs": rows,
            "interval": "95%; correlations: Fisher z, corrected repeated k-fold t "
                        "(Nadeau-Bengio), tanh back; errors: log scale; differences: "
                        "paired per fold on the r scale, clipped to [-2, 2]",
            "ridge_baseline": {"srcc": ref.summary()["baseline_ridge"].get("srcc")}}


def comparison_lines(report) -> list[str]:
    """The lines a person reads after ``mlsp compare``."""
    ref = report["reference"]
    lines = [f"{report['folds']} folds x {len(report['seeds'])} seed(s), the same folds for "
             f"every run; mean [95% interval]; difference to {ref} paired over folds:"]
    width = max(len(r["name"]) for r in report["runs"])
    for r in report["runs"]:
        d = as_interval(r["minus_reference_srcc"])
        diff = "reference" if d is None else (
            f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] vs {ref} "
            f"({_word(d)})")
        lines.append(f"  {r['name']:{width}s} SRCC {interval_text(r['srcc'])}  PLCC "
                     f"{interval_text(r['plcc'])}  SRCC {diff}")
    same = report["indistinguishable_from_best"]
    lines.append(f"best: {report['best']}; indistinguishable from it: "
                 f"{', '.join(same) if same else 'none'}")
    return lines


def _word(d) -> str:
    if not math.isfinite(d.low):
        return "untested"
    return "better" if d.low > 0 else "worse" if d.high < 0 else "indistinguishable"


def write_comparison(out_dir, report, results) -> list:
    """compare.csv / .json / _folds.csv / _oof.csv / .png / _scatter.png in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["name", "is_reference"]
    for m in METRICS + ("minus_reference_srcc", "minus_reference_plcc"):
        cols += [m, f"{m}_low", f"{m}_high"]
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + ["n_folds", "seconds"])
        for r in report["runs"]:
            vals = []
            for m in METRICS + ("minus_reference_srcc", "minus_reference_plcc"):
                i = as_interval(r[m])
                vals += ["", "", ""] if i is None else [i.mean, i.low, i.high]
            w.writerow([r["name"], r["is_reference"], *vals,
                        (r["srcc"] or {}).get("n_folds", ""), r["seconds"]])
    write_json(out / "compare.json", report)
    with open(out / "compare_folds.csv", "w", newline="") as f:
        keys = ["run"]
        for res in results.values():
            for row in res.rows:
                keys += [k for k in row if k not in keys]
        w = csv.DictWriter(f, keys)
        w.writeheader()
        for name, res in results.items():
            w.writerows({"run": name, **row} for row in res.rows)
    first = {n: res.oof[res.seeds[0]] for n, res in results.items()}
    o0 = next(iter(first.values()))
    with open(out / "compare_oof.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "fold", "mos_true", *first])
        for i, id_ in enumerate(o0["ids"]):
            w.writerow([id_, int(o0["fold"][i]), f"{o0['mos_true'][i]:.6f}",
                        *(f"{o['mos_pred'][i]:.6f}" for o in first.values())])
    files = [out / n for n in ("compare.csv", "compare.json", "compare_folds.csv",
                               "compare_oof.csv")]
    files.append(_plot_bars(out / "compare.png", report))
    files.append(_plot_oof(out / "compare_scatter.png", report, first))
    return files


def _plot_bars(path, report):
    """SRCC of each run, mean and 95% interval; the reference's mean and interval as a
    band; each bar labelled with its paired difference to the reference."""
    from ..evaluation.plots import correlation_axis, pyplot

    plt = pyplot()
    rows = report["runs"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(rows) + 2), 4.2))
    x = np.arange(len(rows))
    m = [as_interval(r["srcc"]) for r in rows]
    ys = np.array([np.nan if i is None else i.mean for i in m])
    err = [[y - (i.low if i else np.nan) for y, i in zip(ys, m)],
           [(i.high if i else np.nan) - y for y, i in zip(ys, m)]]
    colors = ["grey" if r["is_reference"] else "C0" for r in rows]
    ax.bar(x, ys, 0.6, yerr=err, capsize=5, color=colors, alpha=0.8)
    ref = as_interval(next(r for r in rows if r["is_reference"])["srcc"])
    if ref and math.isfinite(ref.mean):
        ax.axhline(ref.mean, color="k", ls="--", lw=0.9,
                   label=f"reference {report['reference']}: {interval_text(ref)}")
        if math.isfinite(ref.low):
            ax.axhspan(ref.low, ref.high, color="grey", alpha=0.15)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=15)
    ax.set_ylabel("test-fold SRCC (mean, 95% interval)")
    lo = np.nanmin([i.low for i in m if i and math.isfinite(i.low)] or [np.nanmin(ys)])
    ax.set_ylim(max(-1.0, min(0.0, lo - 0.05)), 1.0)
    correlation_axis(ax)
    base = ax.get_ylim()[0]
    for xi, r, y in zip(x, rows, ys):  # inside the bar: its mean and difference
        d = as_interval(r["minus_reference_srcc"])
        text = f"{y:.3f}" + ("\n(reference)" if d is None else
                             f"\n{d.mean:+.3f}\n[{d.low:+.3f}, {d.high:+.3f}]")
        if np.isfinite(y):
            ax.text(xi, base + 0.35 * (y - base), text, ha="center", va="center", fontsize=7)
    ax.set_title(f"{report['folds']} folds x {len(report['seeds'])} seed(s), same folds; "
                 f"difference to the reference paired", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _plot_oof(path, report, first):
    """Out-of-fold predicted vs true MOS of each run (first seed), with the OOF SRCC."""
    from ..evaluation.plots import plot_scatter

    o0 = next(iter(first.values()))
    t = np.asarray(o0["mos_true"], float)
    oof = {r["name"]: r["out_of_fold"] for r in report["runs"]}
    seed = str(report["seeds"][0])
    parts = {name: (t, np.asarray(o["mos_pred"], float),
                    oof[name].get(seed) or oof[name].get(int(seed)))
             for name, o in first.items()}
    lo, hi = float(np.min(t)), float(np.max(t))
    return Path(plot_scatter(path, parts, (lo, hi), "out-of-fold predictions "
                             f"(seed {seed}): every image scored by the fold that held it out"))
