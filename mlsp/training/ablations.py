"""Ablations for the extensions: pooling kinds (M+MNet Table 4 / MTP-NasNet SPP) and
training objectives / losses (Sheng et al. Table 2; M+MNet Table 6).

``ablate_pooling`` trains the same head (:func:`mlsp.heads.cells.build_cells_3fc`,
a per-cell 1x1 layer + 3FC, which takes both P x P grids and SPP's 26 cells) on each
feature kind of one store: ``wide`` (area, MLSP), ``wide_fore`` (ForePool, M+MNet Eq. 1),
``wide_back`` (BackPool, Eq. 2), ``spp`` (MTP-NasNet 1x1 + 3x3 + 4x4), skipping kinds the
store lacks (noted in the CSV).  ``ablate_objective`` trains one head with the MLSP
default (one random augmentation per epoch, MSE) and MP_avg / MP_min / MP_ada
(all augmentations as patches), and, when the labels have distributions, with
MSE / EMD / Re-EMD under the MLSP objective.  Each writes a CSV and a PNG bar chart.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..evaluation.intervals import best_and_indistinguishable, interval_text
from ..evaluation.plots import correlation_axis, pyplot
from ..evaluation.reports import fmt, write_json
from ..stores.features import FeatureStore

__all__ = ["ablate_levels", "ablate_pooling", "ablate_objective", "POOLING_KINDS",
           "parse_ks", "decide"]

POOLING_KINDS = (("area", "wide"), ("fore", "wide_fore"), ("back", "wide_back"), ("spp", "spp"))
_METRICS = ("srcc", "plcc", "accuracy", "rmse", "emd")


def _row(res, **extra):
    row = dict(extra)
    row["channels"] = res.sidecar["channels"]
    row["epochs_run"] = res.sidecar["train"]["epochs_run"]
    row["seconds"] = round(res.seconds, 1)
    for part in ("val", "test"):
        m = res.metrics.get(part) or {}
        for k in _METRICS:
            row[f"{part}_{k}"] = m.get(k)
        row[f"ridge_{part}_srcc"] = ((res.metrics.get("baseline_ridge") or {}).get(part)
                                     or {}).get("srcc")
    return row


def _fold_key(key) -> str:
    return f"seed{key[0]}/fold{key[1]}"


def _flat(row, prefix, intervals):
    for k, m in intervals.items():
        row[f"{prefix}_{k}"], row[f"{prefix}_{k}_low"], row[f"{prefix}_{k}_high"] = (
            m["mean"], m["low"], m["high"])


def _run(store_path, labels, out, tag, options, folds, seeds, kw, **row):
    """One ablation row: a single split (val / test metrics, model folder ``out/tag``) or,
    with ``folds``, K-fold cross-validation: the head's and ridge's mean and 95% interval
    (:mod:`mlsp.evaluation.intervals`) and the per-fold SRCC (``_folds``, for pairing)."""
    from .trainer import train_head

    if not folds:
        res = train_head(store_path, labels, out_dir=out / tag, progress=False, **options, **kw)
        return _row(res, **row)
    from .crossval import cross_validate

    kw = {k: v for k, v in kw.items() if k != "seed"}  # the seeds replace it
    res = cross_validate(store_path, labels, folds=folds, seeds=seeds, progress=False,
                         **options, **kw)
    s = res.summary()
    row.update(folds=folds, seeds=len(res.seeds), seconds=round(res.seconds, 1))
    _flat(row, "cv", {k: v for k, v in s["head"].items() if k in _METRICS})
    _flat(row, "ridge", {k: v for k, v in s["baseline_ridge"].items() if k in ("srcc", "plcc")})
    row["_json"] = {"head": s["head"], "ridge": s["baseline_ridge"],
                    "head_minus_ridge": s.get("head_minus_ridge", {})}
    row["_folds"] = {"head": res.fold_values("head", "srcc"),
                     "ridge": res.fold_values("baseline_ridge", "srcc")}
    row["_test_fraction"] = res.test_fraction
    return row


def decide(rows, label_key) -> dict:
    """Mark the best row and those indistinguishable from it (paired difference of the
    test-fold SRCC to the best with an interval containing 0); single splits: the best
    on validation, nothing tested.  Returns the decision (also written into the rows)."""
    done = [r for r in rows if r.get("note") in (None, "")]
    if any("_folds" in r for r in done):
        tf = next(r["_test_fraction"] for r in done if "_test_fraction" in r)
        d = best_and_indistinguishable({str(r[label_key]): r["_folds"]["head"] for r in done
                                        if "_folds" in r}, "srcc", tf)
        for r in done:
            key = str(r[label_key])
            r["is_best"] = key == d["best"]
            r["indistinguishable_from_best"] = key in d["indistinguishable"]
            diff = d["differences"].get(key)
            r["_minus_best"] = {"srcc": diff.as_dict()} if diff else None
            r["minus_best_srcc"], r["minus_best_srcc_low"], r["minus_best_srcc_high"] = (
                (diff.mean, diff.low, diff.high) if diff else (0.0, 0.0, 0.0) if r["is_best"]
                else (None, None, None))
        best = next((r for r in done if r.get("is_best")), None)
        same = [r for r in done if r.get("indistinguishable_from_best")]
        line = ("no setting has a cross-validated SRCC" if best is None else
                f"best cross-validated: {label_key} {best[label_key]} (SRCC "
                f"{interval_text(best['_json']['head'].get('srcc'))}); indistinguishable "
                f"from the best (paired 95% interval of the difference contains 0): "
                + (", ".join(str(r[label_key]) for r in same) or "none"))
        return {"best": None if best is None else best[label_key],
                "indistinguishable": [r[label_key] for r in same], "verdict": line,
                "rule": "paired difference of test-fold SRCC to the best, corrected t "
                        "interval (mlsp.evaluation.intervals.paired_difference) contains 0"}
    scored = [r for r in done if r.get("val_srcc") is not None]
    best = max(scored, key=lambda r: r["val_srcc"]) if scored else None
    for r in done:
        r["is_best"] = r is best
    line = ("no setting has a validation SRCC" if best is None else
            f"best on validation: {label_key} {best[label_key]} (val SRCC "
            f"{fmt(best['val_srcc'])}; one split, no interval: run with --folds to tell "
            f"settings apart)")
    return {"best": None if best is None else best[label_key], "indistinguishable": None,
            "verdict": line, "rule": "highest validation SRCC of one split (untested)"}


def _json_row(r):
    out = {k: v for k, v in r.items() if not k.startswith("_")}
    if "_json" in r:
        out.update(r["_json"])
        out["fold_srcc"] = {w: {_fold_key(k): v for k, v in f.items()}
                            for w, f in r["_folds"].items()}
    if r.get("_minus_best"):
        out["minus_best"] = r["_minus_best"]
    return out


def _write(out, stem, rows, label_key, title, meta=None):
    """``stem.csv`` (flat), ``stem.json`` (named intervals, fold values, the decision) and
    ``stem.png``; the decision."""
    decision = decide(rows, label_key)
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys and not k.startswith("_")]
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    write_json(out / f"{stem}.json", {**(meta or {}), "title": title, **decision,
                                      "rows": [_json_row(r) for r in rows]})
    _plot(out / f"{stem}.png", [r for r in rows if r.get("note") in (None, "")], label_key,
          title)
    return decision


def _plot(path, done, label_key, title):
    """Bars of each setting's SRCC (cross-validated: mean and 95% interval), ridge as a
    reference band (or its own bars when it differs between settings)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(done) + 2), 4))
    x = np.arange(len(done))
    cv = any("cv_srcc" in r for r in done)
    parts = [("cv", "head test-fold SRCC (95% interval)"), ("ridge", "ridge, same folds")] \
        if cv else [("val", "val SRCC"), ("test", "test SRCC"),
                    ("ridge_val", "ridge val SRCC")]
    parts = [(p, lab) for p, lab in parts
             if any(r.get(f"{p}_srcc") is not None for r in done)]
    width = 0.8 / max(1, len(parts))
    for i, (part, label) in enumerate(parts):
        ys = np.array([np.nan if r.get(f"{part}_srcc") is None else r[f"{part}_srcc"]
                       for r in done], float)
        err = None
        if cv:
            err = [[y - r.get(f"{part}_srcc_low", np.nan) for y, r in zip(ys, done)],
                   [r.get(f"{part}_srcc_high", np.nan) - y for y, r in zip(ys, done)]]
        bars = ax.bar(x + (i - (len(parts) - 1) / 2) * width, ys, width, label=label,
                      yerr=err, capsize=4 if err else 0, color="grey" if "ridge" in part
                      else None, alpha=0.6 if "ridge" in part else 1.0)
        for b, v, r in zip(bars, ys, done):
            if np.isfinite(v):
                mark = " *" if r.get("is_best") and "ridge" not in part else ""
                ax.annotate(f"{v:.3f}{mark}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
    ax.set_xticks(x, [str(r[label_key]) for r in done], rotation=15)
    ax.set_ylabel("SRCC")
    ax.set_title(title + ("  (* best)" if done else ""))
    correlation_axis(ax)
    if parts:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _srcc_text(row) -> str:
    if "cv_srcc" in row:
        ridge = (f"; ridge {interval_text(row['_json']['ridge'].get('srcc'))}"
                 if "_json" in row else "")
        return (f"SRCC {interval_text(row['_json']['head'].get('srcc'))} over {row['folds']} "
                f"folds x {row['seeds']} seed(s){ridge}")
    return f"val SRCC {fmt(row.get('val_srcc'))}, test SRCC {fmt(row.get('test_srcc'))}"


def ablate_pooling(store_path, labels, out_dir="ablation", head="cells_3fc", epochs=100,
                   progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """Train ``head`` on every pooling kind the store has; ``ablation_pooling.csv`` / ``.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with FeatureStore.open(store_path) as store:
        have = {kind: store.has(kind) for _, kind in POOLING_KINDS}
    rows = []
    for name, kind in POOLING_KINDS:
        if not have[kind]:
            rows.append({"pooling": name, "features": kind,
                         "note": f"store has no features/{kind}; skipped"})
            if progress:
                print(f"{name:5s}: skipped (store has no features/{kind})")
            continue
        rows.append(_run(store_path, labels, out, f"pooling_{name}",
                         dict(head=head, features=kind, epochs=epochs), folds, seeds, kw,
                         pooling=name, features=kind, note=""))
        if progress:
            print(f"{name:5s} ({kind}): {_srcc_text(rows[-1])}")
    d = _write(out, "ablation_pooling", rows, "pooling", f"{head}: pooling kinds",
               _meta("pooling", head, folds, seeds))
    if progress:
        print(d["verdict"])
    return rows


def ablate_objective(store_path, labels, out_dir="ablation", head="single_3fc", epochs=100,
                     progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """MLSP vs MP_avg / MP_min / MP_ada (MSE), then MSE / EMD / Re-EMD if distributions
    exist; ``ablation_objective.csv`` / ``.png``."""
    from ..labels import load_labels

    if not hasattr(labels, "mos"):
        labels = load_labels(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [("mlsp", "mse"), ("mp_avg", "mse"), ("mp_min", "mse"), ("mp_ada", "mse")]
    if labels.distribution is not None:
        runs += [("mlsp", "emd"), ("mlsp", "re_emd")]
    rows = []
    for objective, loss in runs:
        tag = f"{objective}+{loss}"
        rows.append(_run(store_path, labels, out, f"objective_{objective}_{loss}",
                         dict(head=head, objective=objective, loss=loss, epochs=epochs),
                         folds, seeds, kw, run=tag, objective=objective, loss=loss))
        if progress:
            print(f"{tag:14s}: {_srcc_text(rows[-1])}")
    if labels.distribution is None:
        rows.append({"run": "emd / re_emd", "note": "labels have no distributions; skipped"})
    d = _write(out, "ablation_objective", rows, "run", f"{head}: objectives and losses",
               _meta("objective", head, folds, seeds))
    if progress:
        print(d["verdict"])
    return rows


def _meta(name, head, folds, seeds) -> dict:
    return {"ablation": name, "head": head, "folds": folds,
            "seeds": list(seeds) if folds else None,
            "interval": "95%, corrected repeated k-fold t on Fisher z (mlsp.evaluation."
                        "intervals)" if folds else None}


def parse_ks(ks, n_levels: int) -> list[int]:
    """``"1,2,4,8,all"`` (or a list of ints / "all") -> sorted distinct k in 1..L;
    None: every k.  A bad value is a ValueError naming ``--k``."""
    if ks is None:
        return list(range(1, n_levels + 1))
    items = ks.split(",") if isinstance(ks, str) else list(ks)
    out = set()
    for it in items:
        text = str(it).strip().lower()
        if not text:
            continue
        if text == "all":
            out.add(n_levels)
            continue
        try:
            k = int(text)
        except ValueError:
            raise ValueError(f"--k: {it!r} is neither a number of levels nor 'all'") from None
        if not 1 <= k <= n_levels:
            raise ValueError(f"--k: {k} levels asked, the store has {n_levels} (1..{n_levels}"
                             " or all)")
        out.add(k)
    if not out:
        raise ValueError("--k: no value given")
    return sorted(out)


def ablate_levels(store_path, labels, head="single_3fc", out_dir="ablation", epochs=100,
                  ks=None, progress=True, folds=0, seeds=(0,), **kw) -> list[dict]:
    """Train ``head`` on the last k levels (MLSP Fig. 7) for every k, or the ``ks`` given
    (e.g. ``"1,2,4,8,all"``); ``ablation_levels.csv`` / ``.json`` / ``.png``.  With
    ``folds``, each k is cross-validated (95% interval), ridge is fitted on the same levels
    and folds, and the JSON names the best k and those indistinguishable from it."""
    with FeatureStore.open(store_path) as store:
        n_levels = len(store.levels)
    ks = parse_ks(ks, n_levels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in ks:
        row = _run(store_path, labels, out, f"last_{k:02d}",
                   dict(head=head, levels=f"-{k}:", epochs=epochs), folds, seeds, kw, k=k)
        rows.append(row)
        if progress:
            print(f"last {k:2d} levels: {_srcc_text(row)}")
    d = _write(out, "ablation_levels", rows, "k", f"{head}: SRCC vs levels (cf. MLSP Fig. 7)",
               dict(_meta("levels", head, folds, seeds), levels_in_store=n_levels))
    _plot_levels(out / "ablation_levels.png", rows, head, folds, seeds)
    if progress:
        print(d["verdict"])
    return rows


def _plot_levels(path, rows, head, folds, seeds):
    """SRCC against k for the head and ridge (same levels, same folds), 95% intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = np.array([r["k"] for r in rows])
    series = [("cv", f"{head}, test folds"), ("ridge", "ridge, same levels and folds")] \
        if folds else [("val", f"{head} val"), ("test", f"{head} test"),
                       ("ridge_val", "ridge val"), ("ridge_test", "ridge test")]
    for i, (part, label) in enumerate(series):
        m = np.array([np.nan if r.get(f"{part}_srcc") is None else r[f"{part}_srcc"]
                      for r in rows], float)
        if not np.isfinite(m).any():
            continue
        style = dict(color="grey", ls="--") if part.startswith("ridge") else dict(ls="-")
        if folds:
            lo = np.array([r.get(f"{part}_srcc_low", np.nan) for r in rows], float)
            hi = np.array([r.get(f"{part}_srcc_high", np.nan) for r in rows], float)
            ax.errorbar(ks + 0.08 * i, m, yerr=[m - lo, hi - m], fmt="o", capsize=3,
                        label=f"{label} (95%)", **style)
        else:
            ax.plot(ks, m, marker="o", label=f"{label} SRCC", **style)
    best = [r for r in rows if r.get("is_best")]
    same = [r for r in rows if r.get("indistinguishable_from_best")]
    for group, marker, label in ((best, "*", "best"), (same, "o", "indistinguishable")):
        if group and folds:
            ax.plot([r["k"] for r in group], [r["cv_srcc"] for r in group], marker, ms=14,
                    mfc="none", mec="k", label=label)
    ax.set_xlabel("number of levels (from the last)")
    ax.xaxis.get_major_locator().set_params(integer=True)  # k counts levels
    ax.set_ylabel("SRCC")
    correlation_axis(ax)
    ax.set_title(f"{head}: SRCC vs levels (cf. MLSP Fig. 7)"
                 + (f", {folds} folds x {len(tuple(seeds))} seed(s)" if folds else ""),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
