"""Evaluation metrics against scipy / sklearn and hand-computed values."""

import json
import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error

from mlsp.evaluation import emd_numpy, evaluate_predictions


def test_three_image_example_by_hand():
    # true MOS (4, 6, 7), predicted (5.5, 5.0, 8.0)
    # ranks: true (1, 2, 3), pred (2, 1, 3); d = (-1, 1, 0), sum d^2 = 2
    #   SRCC = 1 - 6*2 / (3*(9-1)) = 0.5
    # deviations: true*3 = (-5, 1, 4), pred*6 = (-4, -7, 11)
    #   PLCC = (20 - 7 + 44) / sqrt((25+1+16) * (16+49+121)) = 57 / sqrt(42*186)
    # threshold 5: true (F, T, T), pred (T, F, T) -> accuracy 1/3, ratio 0.5 / (1/3) = 1.5
    # MAE = (1.5 + 1 + 1) / 3; RMSE = sqrt((2.25 + 1 + 1) / 3)
    m = evaluate_predictions([4, 6, 7], [5.5, 5.0, 8.0])
    assert m["n"] == 3
    assert m["srcc"] == pytest.approx(0.5)
    assert m["plcc"] == pytest.approx(57 / math.sqrt(42 * 186))
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["srcc_acc_ratio"] == pytest.approx(1.5)
    assert m["mae"] == pytest.approx(3.5 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(4.25 / 3))
    assert "emd" not in m
    json.dumps(m)  # plain Python types
    assert all(type(v) in (int, float) for v in m.values())


def test_threshold_is_strict_and_configurable():
    # exactly 5 is negative (M+MNet: "less than or equal to five ... negative")
    assert evaluate_predictions([5.0, 6.0], [5.1, 4.0])["accuracy"] == 0.0
    m = evaluate_predictions([0.2, 0.8, 0.6], [0.3, 0.7, 0.4], threshold=0.5)
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_against_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    t = rng.uniform(2, 8, 200)
    p = t + rng.normal(0, 1, 200)
    m = evaluate_predictions(t, p)
    assert m["srcc"] == pytest.approx(spearmanr(t, p)[0])
    assert m["plcc"] == pytest.approx(pearsonr(t, p)[0])
    assert m["accuracy"] == pytest.approx(accuracy_score(t > 5, p > 5))
    assert m["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(t, p)))
    assert m["srcc_acc_ratio"] == pytest.approx(m["srcc"] / m["accuracy"])


def test_emd_by_hand():
    # CDFs (1, 1, 1) and (0, 0, 1): |diff| = (1, 1, 0)
    assert emd_numpy([1, 0, 0], [0, 0, 1]) == pytest.approx(math.sqrt(2 / 3))
    assert emd_numpy([1, 0, 0], [0, 0, 1], r=1) == pytest.approx(2 / 3)
    # CDFs (0.2, 0.5, 1) and (0.5, 0.8, 1): |diff| = (0.3, 0.3, 0) -> sqrt(0.18 / 3)
    p, q = [0.2, 0.3, 0.5], [0.5, 0.3, 0.2]
    assert emd_numpy(p, q) == pytest.approx(math.sqrt(0.06))
    assert emd_numpy(p, p) == 0.0
    rows = emd_numpy(np.array([p, p]), np.array([q, p]))
    assert rows.shape == (2,) and rows == pytest.approx([math.sqrt(0.06), 0.0])


def test_emd_in_evaluate():
    dt = np.array([[0.2, 0.3, 0.5], [1, 0, 0]])
    dp = np.array([[0.5, 0.3, 0.2], [0, 0, 1]])
    m = evaluate_predictions([1, 2], [1, 3], dist_true=dt, dist_pred=dp)
    assert m["emd"] == pytest.approx((math.sqrt(0.06) + math.sqrt(2 / 3)) / 2)
    assert isinstance(m["emd"], float)
    with pytest.raises(ValueError):
        evaluate_predictions([1, 2], [1, 3], dist_true=dt, dist_pred=dp[:1])


def test_bad_input():
    with pytest.raises(ValueError):
        evaluate_predictions([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        evaluate_predictions([], [])
    m = evaluate_predictions([1, 1, 1], [1, 2, 3])  # constant truth: correlation undefined
    assert math.isnan(m["srcc"]) and math.isnan(m["plcc"])


def test_distribution_mean_by_hand():
    from mlsp.evaluation.metrics import distribution_mean

    # votes (1, 0, 3) on scores (1, 2, 3): p = (0.25, 0, 0.75), mean 0.25 + 2.25 = 2.5
    mean, p = distribution_mean([[1, 0, 3], [0, 2, 0]], [1, 2, 3])
    np.testing.assert_allclose(mean, [2.5, 2.0])
    np.testing.assert_allclose(p[0], [0.25, 0.0, 0.75])


def test_srcc_is_the_hand_computed_rank_correlation():
    """The one SRCC helper (used by the model selection too): the three-image example
    above, 0.5 by hand; NaN where a side is constant (no order to correlate)."""
    from mlsp.evaluation.metrics import srcc

    assert srcc([4, 6, 7], [5.5, 5.0, 8.0]) == pytest.approx(0.5)
    assert math.isnan(srcc([1, 2, 3], [2, 2, 2])) and math.isnan(srcc([1], [1]))
