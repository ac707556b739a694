"""Intervals of cross-validated results stay inside the possible range (issue 17)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from mlsp.evaluation.intervals import (as_interval, best_and_indistinguishable,
                                       correlation_interval, error_interval, interval_text,
                                       metric_interval, paired_difference,
                                       proportion_interval)

K3 = 1 / 2  # n_test / n_train of one fold with 3 folds


def test_scattered_correlations_of_three_folds_stay_within_minus_one_one():
    # the case: few, scattered folds used to give SRCC 0.045 [-1.285, 1.374]
    i = correlation_interval([0.9, -0.5, 0.95], K3)
    assert -1 < i.low < i.mean < i.high < 1
    assert i.n_folds == 3 and "fisher_z" in i.method
    # a plain t interval on r leaves the range for the same values
    v = np.array([0.9, -0.5, 0.95])
    half = stats.t.ppf(0.975, 2) * math.sqrt((1 / 3 + K3) * v.var(ddof=1))
    assert v.mean() - half < -1 and v.mean() + half > 1


def test_fisher_z_interval_by_hand():
    r = np.array([0.71, 0.78, 0.69, 0.80, 0.74])
    i = correlation_interval(r, 0.25)
    z = [0.5 * math.log((1 + x) / (1 - x)) for x in r]  # Fisher z, written out
    zm, sd = sum(z) / 5, math.sqrt(sum((x - sum(z) / 5) ** 2 for x in z) / 4)
    half = stats.t.ppf(0.975, 4) * math.sqrt(1 / 5 + 0.25) * sd
    assert i.mean == pytest.approx(math.tanh(zm))
    assert (i.low, i.high) == pytest.approx((math.tanh(zm - half), math.tanh(zm + half)))


def test_perfect_fold_correlations_are_clipped_not_infinite():
    i = correlation_interval([1.0, 1.0, 0.99], K3)
    assert all(map(math.isfinite, (i.mean, i.low, i.high))) and i.high <= 1.0


def test_error_measures_never_below_zero():
    i = error_interval([0.1, 1.5, 0.2], K3)
    assert 0 < i.low < i.mean < i.high
    # centre: the geometric mean; bounds: exp of the corrected t interval of log values
    lv = np.log([0.1, 1.5, 0.2])
    half = stats.t.ppf(0.975, 2) * math.sqrt((1 / 3 + K3) * lv.var(ddof=1))
    assert i.mean == pytest.approx(math.exp(lv.mean()))
    assert i.low == pytest.approx(math.exp(lv.mean() - half))
    for m in ("rmse", "mae", "emd"):
        assert metric_interval(m, [0.1, 1.5, 0.2], K3).low > 0


def test_accuracy_stays_a_proportion():
    i = proportion_interval([1.0, 0.35, 1.0], K3)
    assert 0 <= i.low <= i.mean <= i.high <= 1 and i.high == 1.0
    assert metric_interval("accuracy", [0.0, 0.9, 0.1], K3).low == 0.0


def test_paired_difference_of_correlations_is_clipped_and_paired():
    d = paired_difference([0.9, -0.9, 0.95], [-0.9, 0.9, -0.95], "srcc", K3)
    assert -2 <= d.low and d.high <= 2
    # the same folds paired by key, in any order
    a = {(0, 0): 0.80, (0, 1): 0.75, (0, 2): 0.78}
    b = {(0, 2): 0.70, (0, 0): 0.71, (0, 1): 0.69}
    d = paired_difference(a, b, "srcc", K3)
    diffs = np.array([0.09, 0.06, 0.08])
    half = stats.t.ppf(0.975, 2) * math.sqrt((1 / 3 + K3) * diffs.var(ddof=1))
    assert (d.mean, d.low, d.high) == pytest.approx((diffs.mean(), diffs.mean() - half,
                                                     diffs.mean() + half))


def test_old_triplets_and_named_dicts_read_back():
    assert as_interval([0.7, 0.6, 0.8]).low == 0.6
    named = correlation_interval([0.7, 0.72, 0.75], K3).as_dict()
    assert set(named) == {"mean", "low", "high", "n_folds", "method"}
    assert as_interval(named).high == named["high"]
    assert interval_text(named).startswith(f"{named['mean']:.3f} [")
    assert interval_text(None) == "-" and interval_text([0.5, None, None]) == "0.500"


def test_best_and_those_indistinguishable_from_it():
    folds = [(0, j) for j in range(5)]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.70, 0.76, 5)
    values = {"a": dict(zip(folds, base + 0.05)),                                # best
              "b": dict(zip(folds, base + 0.05 + rng.normal(0, 0.004, 5) - 0.001)),  # ties
              "c": dict(zip(folds, base - 0.10))}                                 # worse
    d = best_and_indistinguishable(values, "srcc", 0.25)
    assert d["best"] == "a" and d["indistinguishable"] == ["b"]
    assert d["differences"]["c"].high < 0 and d["differences"]["b"].contains(0.0)


def test_cross_validated_summary_of_three_folds_of_twenty_images_is_bounded(tmp_path):
    """A real cross-validation bookkeeping (mlsp.training.crossval) on 3 folds of 20
    images whose predictions are almost noise: every interval within its range."""
    from _mmstore import make_ext_store

    from mlsp.evaluation.metrics import evaluate_predictions
    from mlsp.training.crossval import cross_validate

    path, lab = make_ext_store(tmp_path / "s.h5", n=60, kinds=())

    def fit(store_path, labels, seed, options):
        rng = np.random.default_rng(len(labels.ids) + seed + int(labels.mos.sum() * 1000) % 97)
        pred = labels.mos * rng.uniform(-1, 1) + rng.normal(0, 1, len(labels))
        t = labels.split == "test"
        m = {"test": evaluate_predictions(labels.mos[t], pred[t]),
             "baseline_ridge": {"test": evaluate_predictions(labels.mos[t],
                                                             rng.normal(0, 1, t.sum()))},
             "constant": {"test": {"n": int(t.sum()), "rmse": float(rng.uniform(0.01, 2))}}}
        return SimpleNamespace(model=None, sidecar={"train": {"n_train": 40, "epochs_run": 1}},
                               metrics=m, predictions={"ids": labels.ids, "mos_pred": pred})

    res = cross_validate(path, lab, folds=3, seeds=(0,), fit=fit, progress=False)
    assert all(r["n"] == 20 for r in res.rows if r["row"] == "head")
    s = res.summary()
    for row in ("head", "baseline_ridge"):
        for m in ("srcc", "plcc"):
            i = s[row][m]
            assert -1 <= i["low"] <= i["mean"] <= i["high"] <= 1, (row, m, i)
        for m in ("rmse",):
            assert 0 < s[row][m]["low"] <= s[row][m]["high"]
        assert 0 <= s[row]["accuracy"]["low"] <= s[row]["accuracy"]["high"] <= 1
    assert 0 < s["constant"]["rmse"]["low"]
    d = s["head_minus_ridge"]["srcc"]
    assert -2 <= d["low"] <= d["high"] <= 2


def test_k_values_of_the_levels_ablation():
    from mlsp.training.ablations import parse_ks

    assert parse_ks("1,2,4,8,all", 43) == [1, 2, 4, 8, 43]
    assert parse_ks(None, 3) == [1, 2, 3] and parse_ks([2, "all", 2], 5) == [2, 5]
    with pytest.raises(ValueError, match="--k: 9 levels asked, the store has 5"):
        parse_ks("1,9", 5)
    with pytest.raises(ValueError, match="--k: 'x' is neither"):
        parse_ks("x", 5)


def test_ablation_decision_names_the_best_and_its_ties():
    """decide() on cross-validated rows: the printed line and the row flags."""
    from mlsp.training.ablations import decide

    folds = [(0, j) for j in range(5)]
    base = np.array([0.70, 0.74, 0.72, 0.75, 0.71])
    rows = []
    for k, shift in ((1, -0.15), (2, 0.0), (4, 0.0)):
        v = base + shift + (0.0005 * np.arange(5) - 0.002 if k == 4 else 0)
        iv = correlation_interval(v, 0.25).as_dict()
        rows.append({"k": k, "cv_srcc": iv["mean"], "_test_fraction": 0.25,
                     "_folds": {"head": dict(zip(folds, v))},
                     "_json": {"head": {"srcc": iv}, "ridge": {}}})
    d = decide(rows, "k")
    assert d["best"] == 2 and d["indistinguishable"] == [4]
    assert "indistinguishable from the best" in d["verdict"] and ": 4" in d["verdict"]
    assert rows[0]["minus_best_srcc_high"] < 0 and rows[1]["is_best"]


def test_correlation_axes_never_leave_minus_one_one(tmp_path):
    from mlsp.evaluation.plots import correlation_axis, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.errorbar([1, 2], [0.2, 0.9], yerr=[[1.4, 0.1], [0.3, 0.6]], fmt="o")
    assert ax.get_ylim()[0] < -1 and ax.get_ylim()[1] > 1  # what matplotlib would show
    correlation_axis(ax)
    assert ax.get_ylim() == (-1.0, 1.0)
    plt.close(fig)


def test_learning_curves_show_validation_srcc(tmp_path):
    import matplotlib.image as mpimg

    from mlsp.evaluation.plots import plot_history

    h = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.95], "lr": [1e-3] * 3}
    plot_history(tmp_path / "a.png", h)
    plot_history(tmp_path / "b.png", {**h, "val_srcc": [0.3, 0.5, float("nan")]})
    # a second panel (validation SRCC per epoch) below the losses
    assert mpimg.imread(tmp_path / "b.png").shape[0] > 1.4 * mpimg.imread(tmp_path / "a.png").shape[0]
