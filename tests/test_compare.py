"""mlsp compare: several heads on the same folds, paired differences to a reference."""
import csv
import json
import zlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from mlsp.training.compare import compare, parse_runs


def _fit_with_noise(noise_of):
    """A 'trainer' whose prediction noise depends on the head: truth + N(0, noise)."""
    seen = []

    def fit(store_path, labels, seed, options):
        from mlsp.evaluation.metrics import evaluate_predictions

        seen.append((options["head"], seed, tuple(np.asarray(labels.ids)[labels.split == "test"])))
        rng = np.random.default_rng([zlib.crc32(options["head"].encode()), seed, len(seen)])
        pred = labels.mos + rng.normal(0, noise_of[options["head"]], len(labels))
        t = labels.split == "test"
        m = {"test": evaluate_predictions(labels.mos[t], pred[t]),
             "baseline_ridge": {"test": evaluate_predictions(labels.mos[t], pred[t])},
             "constant": {"test": {"n": int(t.sum())}}}
        return SimpleNamespace(model=None, sidecar={"train": {"n_train": 40, "epochs_run": 1}},
                               metrics=m, predictions={"ids": labels.ids, "mos_pred": pred})
    return fit, seen


def test_compare_pairs_runs_on_the_same_folds(tmp_path):
    from _mmstore import make_ext_store

    path, lab = make_ext_store(tmp_path / "s.h5", n=60, kinds=())
    fit, seen = _fit_with_noise({"ridge": 0.5, "good": 0.05, "same": 0.5})
    rep = compare(path, lab, heads={"ridge": {}, "good": {}, "same": {}}, reference="ridge",
                  folds=3, seeds=(0, 1), fit=fit, progress=False, out_dir=tmp_path / "c")
    # every run saw the same test folds, seed for seed
    by_head = {}
    for head, seed, test in seen:
        by_head.setdefault(head, []).append((seed, test))
    assert by_head["ridge"] == by_head["good"] == by_head["same"]
    runs = {r["name"]: r for r in rep["runs"]}
    assert runs["ridge"]["minus_reference_srcc"] is None and runs["ridge"]["is_reference"]
    d = runs["good"]["minus_reference_srcc"]
    assert set(d) == {"mean", "low", "high", "n_folds", "method"} and d["n_folds"] == 6
    assert d["low"] > 0 and rep["best"] == "good"
    # the paired difference by hand from the per-fold file
    with open(tmp_path / "c" / "compare_folds.csv") as f:
        folds = [r for r in csv.DictReader(f) if r["row"] == "head"]
    a = {(r["seed"], r["fold"]): float(r["srcc"]) for r in folds if r["run"] == "good"}
    b = {(r["seed"], r["fold"]): float(r["srcc"]) for r in folds if r["run"] == "ridge"}
    diff = np.array([a[k] - b[k] for k in sorted(a)])
    half = stats.t.ppf(0.975, 5) * math.sqrt((1 / 6 + 1 / 2) * diff.var(ddof=1))
    assert (d["mean"], d["low"], d["high"]) == pytest.approx(
        (diff.mean(), diff.mean() - half, diff.mean() + half))
    js = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert js["reference"] == "ridge" and all(
        -1 <= r["srcc"]["low"] <= r["srcc"]["high"] <= 1 for r in js["runs"])
    with open(tmp_path / "c" / "compare_oof.csv") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 60 and set(oof[0]) == {"id", "fold", "mos_true", "ridge", "good", "same"}
    for name in ("compare.png", "compare_scatter.png", "compare.csv"):
        assert (tmp_path / "c" / name).stat().st_size > 0


def test_bad_runs_and_reference_are_refused(tmp_path):
    with pytest.raises(ValueError, match="given twice"):
        parse_runs("ridge,ridge")
    with pytest.raises(ValueError, match="at least one head"):
        parse_runs(" , ")
    with pytest.raises(ValueError, match="--reference 'multi_3fc' is not among"):
        compare("nowhere.h5", None, heads="ridge,single_3fc", reference="multi_3fc")


@pytest.mark.slow
def test_compare_command_on_a_real_tiny_store(tmp_path):
    """The CLI with the real trainer: ridge and Single-3FC (1 epoch) on 2 folds."""
    from click.testing import CliRunner
    from _faults import write_labels_csv
    from _mmstore import make_ext_store

    from mlsp.training.commands import compare_cmd

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    labels = write_labels_csv(tmp_path / "labels.csv", lab.ids, lab.mos)
    out = tmp_path / "cmp"
    r = CliRunner().invoke(compare_cmd, [str(path), "--labels", str(labels), "--heads",
                                         "ridge,single-3fc", "--folds", "2", "--epochs", "1",
                                         "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "single_3fc" in r.output and "vs ridge" in r.output
    js = json.loads((out / "compare.json").read_text())
    assert [x["name"] for x in js["runs"]] == ["ridge", "single_3fc"]
    r = CliRunner().invoke(compare_cmd, [str(path), "--labels", str(labels), "--heads",
                                         "ridge,nonsense", "--out", str(out)])
    assert r.exit_code != 0 and "unknown head 'nonsense'" in r.output
