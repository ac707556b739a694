"""Cross-validation: fold assignment, intervals, out-of-fold bookkeeping, the fold ensemble."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from mlsp.training.crossval import assign_folds, corrected_interval, cross_validate


def test_folds_are_disjoint_balanced_and_deterministic():
    ids = [f"img{i:03d}" for i in range(103)]
    f = assign_folds(ids, 5, seed=3)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    assert np.array_equal(f, assign_folds(ids, 5, seed=3))
    # the same set of ids in another order gets the same folds, id for id
    rev = assign_folds(ids[::-1], 5, seed=3)[::-1]
    assert np.array_equal(f, rev)
    assert not np.array_equal(f, assign_folds(ids, 5, seed=4))


def test_too_few_images_for_the_folds_is_refused():
    with pytest.raises(ValueError, match="too few for 5 folds"):
        assign_folds(["a", "b", "c"], 5)
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(["a", "b", "c"], 1)


def test_corrected_interval_by_hand():
    v = [0.70, 0.74, 0.72, 0.78, 0.71]
    m, lo, hi = corrected_interval(v, test_fraction=0.25)
    sd = np.std(v, ddof=1)
    half = stats.t.ppf(0.975, 4) * math.sqrt((1 / 5 + 0.25)) * sd
    assert m == pytest.approx(0.73)
    assert (lo, hi) == pytest.approx((0.73 - half, 0.73 + half))
    # wider than the naive t interval, which ignores that folds share training images
    assert hi - lo > 2 * stats.t.ppf(0.975, 4) * sd / math.sqrt(5)


def _fake_fit(noise):
    """A 'trainer' that predicts the true MOS plus noise for the fold's test images."""
    calls = []

    def fit(store_path, labels, seed, options):
        calls.append((labels, seed))
        rng = np.random.default_rng(seed + len(calls))
        pred = labels.mos + rng.normal(0, noise, len(labels))
        t = labels.split == "test"
        from mlsp.evaluation.metrics import evaluate_predictions
        m = {"test": evaluate_predictions(labels.mos[t], pred[t]),
             "baseline_ridge": {"test": evaluate_predictions(labels.mos[t], labels.mos[t] * 0
                                                             + rng.normal(0, 1, t.sum()))},
             "constant": {"test": {"n": int(t.sum()), "rmse": 1.0}}}
        return SimpleNamespace(model=None, sidecar={"train": {"n_train": int((labels.split ==
                                                                              "train").sum()),
                                                              "epochs_run": 1}},
                               metrics=m, predictions={"ids": labels.ids, "mos_pred": pred})
    return fit, calls


def test_cross_validate_out_of_fold_and_held_out_split(tmp_path, monkeypatch):
    import mlsp.training.crossval as cvmod
    from _mmstore import make_ext_store

    path, lab = make_ext_store(tmp_path / "s.h5", n=60, kinds=())
    split = np.array(["train"] * 50 + ["test"] * 10, dtype=object)
    lab.split = split
    ids = lab.ids
    monkeypatch.setattr(cvmod, "_score_held_out", lambda res, sp, held: {"n": len(held)})
    fit, calls = _fake_fit(noise=0.05)
    res = cross_validate(path, lab, folds=5, seeds=(0, 1), fit=fit, progress=False)
    assert len(calls) == 10
    for labels, seed in calls:
        # the held-out test images never take part in a fold
        assert not set(labels.ids) & set(ids[50:])
        assert (labels.split == "test").sum() == 10 and (labels.split == "val").sum() == 4
    for s in (0, 1):
        o = res.oof[s]
        assert np.all(np.isfinite(o["mos_pred"])) and len(o["ids"]) == 50
        assert np.abs(o["mos_pred"] - o["mos_true"]).max() < 0.5   # each from its own fold
    # each image is a test image exactly once per seed
    tests = [labels.ids[k] for labels, s in calls if s == 0
             for k in np.flatnonzero(labels.split == "test")]
    assert sorted(tests) == sorted(ids[:50])
    s = res.summary()
    assert s["head"]["srcc"]["mean"] > 0.95 and s["head"]["srcc"]["low"] < s["head"]["srcc"]["mean"]
    assert s["head_minus_ridge"]["srcc"]["low"] > 0
    assert res.verdict().startswith("the head beats ridge")
    assert res.held_out == {"n": 10}


def test_fold_ensemble_averages_on_the_rating_scale():
    import keras

    def head(bias):
        inp = keras.Input((3,), name="features")
        out = keras.layers.Dense(1, kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(bias))(inp)
        return keras.Model(inp, out, name="single_3fc")

    from mlsp.training.crossval import ensemble_models

    models = [(head(1.0), {"output": "mos", "head": "single_3fc",
                           "target": {"mean": 4.0, "std": 2.0, "standardized": True}}),
              (head(-1.0), {"output": "mos", "head": "single_3fc",
                            "target": {"mean": 5.0, "std": 1.0, "standardized": True}})]
    model, sidecar = ensemble_models(models)
    out = keras.ops.convert_to_numpy(model(np.zeros((2, 3), "float32")))
    # fold 0: 1 * 2 + 4 = 6; fold 1: -1 * 1 + 5 = 4; mean 5, identity target map
    np.testing.assert_allclose(out, 5.0, atol=1e-6)
    assert sidecar["target"]["mean"] == 0.0 and sidecar["target"]["std"] == 1.0


def test_train_and_ablate_with_folds_end_to_end(tmp_path):
    """mlsp train --folds on a tiny real store: per-fold report, a fold ensemble that loads
    and scores like the mean of its folds, and ablate levels --folds with intervals."""
    import csv
    import json

    from click.testing import CliRunner
    from _faults import write_labels_csv
    from _mmstore import make_ext_store

    import mlsp
    from mlsp.training.commands import ablate, train

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    labels = write_labels_csv(tmp_path / "labels.csv", lab.ids, lab.mos)
    out = tmp_path / "cv"
    r = CliRunner().invoke(train, [str(path), "--labels", str(labels), "--folds", "3",
                                   "--head", "single_3fc", "--seeds", "2", "--epochs", "2", "--batch-size", "16",
                                   "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 folds x 2 seed(s) = 6 test folds" in r.output and "ridge" in r.output
    summary = json.loads((out / "cv_summary.json").read_text())
    assert set(summary["summary"]) >= {"head", "baseline_ridge", "constant"}
    with open(out / "oof_predictions.csv") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 80 and {r["seed"] for r in oof} == {"0", "1"}
    assert (out / "oof_scatter.png").stat().st_size > 0
    i = summary["summary"]["head"]["srcc"]  # named fields, inside [-1, 1]
    assert -1 <= i["low"] <= i["mean"] <= i["high"] <= 1 and i["method"] == "fisher_z corrected_t"
    for s in ("0", "1"):  # every image predicted once per seed, by the fold that held it out
        assert sorted(r["id"] for r in oof if r["seed"] == s) == sorted(lab.ids)
    head = mlsp.load(out)
    rows = head.predict_store(path)
    assert len(rows) == 40 and all(np.isfinite(r["score"]) for r in rows)
    r = CliRunner().invoke(ablate, ["levels", str(path), "--labels", str(labels), "--folds", "2",
                                    "--epochs", "1", "--k", "1,all", "--out", str(tmp_path / "abl")])
    assert r.exit_code == 0, r.output
    assert "indistinguishable from the best" in r.output
    js = json.loads((tmp_path / "abl" / "ablation_levels.json").read_text())
    assert js["best"] in (1, 2) and [x["k"] for x in js["rows"]] == [1, 2]
    for x in js["rows"]:  # named intervals for the head and for ridge on the same levels
        assert set(x["head"]["srcc"]) == {"mean", "low", "high", "n_folds", "method"}
        assert -1 <= x["ridge"]["srcc"]["low"] <= x["ridge"]["srcc"]["high"] <= 1
    with open(tmp_path / "abl" / "ablation_levels.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["k"]) for r in rows] == [1, 2]
    assert all(-1 <= float(r["cv_srcc_low"]) <= float(r["cv_srcc"]) <= float(r["cv_srcc_high"])
               <= 1 for r in rows)
    assert (tmp_path / "abl" / "ablation_levels.png").stat().st_size > 0


def test_held_out_test_split_is_scored_by_the_real_fold_ensemble(tmp_path):
    """Labels with test rows: the folds never see them, and the saved ensemble scores them
    (no stand-in: the real trainer and the real TrainedHead evaluation)."""
    from _mmstore import make_ext_store

    from mlsp.training.crossval import cross_validate

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    lab.split = np.array(["train"] * 30 + ["test"] * 10, dtype=object)
    res = cross_validate(path, lab, folds=2, seeds=(0,), progress=False, epochs=1,
                         batch_size=16, head="single_3fc")
    assert res.held_out["n"] == 10 and np.isfinite(res.held_out["srcc"])
    assert len(res.oof[0]["ids"]) == 30 and not set(res.oof[0]["ids"]) & set(lab.ids[30:])
