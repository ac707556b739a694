"""Real photos, real ratings: cross-validation of the default head on a subset of OASIS.

Slow (extraction of the 900 photos with the bundled MobileNetV2-0.35, about 2 minutes, then
5 fold trainings, about 1.5 minutes each on 2 cores): run with ``pytest -m slow``.  Skipped when the shared OASIS folder is absent.
"""
import numpy as np
import pytest

N = 900
#: How far below ridge the default head's cross-validated SRCC may fall before the test
#: fails.  With these 5 folds (seed 0) the head was 0.035 above ridge, ahead on every fold
#: (README, "How good are the heads"); the previous defaults were 0.054 below.  A subset
#: is not enough: on 300 photos (200 training images a fold) the head was 0.05 BELOW ridge,
#: which the README states as a limit of the small-set regime.
TOLERANCE = 0.02

pytestmark = pytest.mark.slow  # the features: the session fixture oasis_store (conftest)


@pytest.fixture(scope="module")
def oasis_subset(oasis_store):
    return oasis_store


def test_folds_on_real_ids_are_deterministic_and_disjoint(oasis_subset):
    from mlsp.labels import load_labels
    from mlsp.training.crossval import assign_folds

    ids = load_labels(oasis_subset[1]).ids
    a, b = assign_folds(ids, 5, 0), assign_folds(list(reversed(ids)), 5, 0)[::-1]
    assert np.array_equal(a, b)
    assert sorted(np.bincount(a)) == [N // 5] * 5


def test_default_head_is_not_below_ridge_out_of_fold(oasis_subset):
    from mlsp.training.crossval import cross_validate

    store, labels = oasis_subset
    # the neural default (Single-3FC) itself: --head auto (the train default) would add a
    # nested 5-fold selection to every outer fold, 11x the cost; tests/test_selection_real.py
    # checks auto on the same photos
    res = cross_validate(store, labels, head="single_3fc", folds=5, seeds=(0,),
                         progress=False)
    s = res.summary()
    head, ridge = s["head"]["srcc"]["mean"], s["baseline_ridge"]["srcc"]["mean"]
    oof = res.oof_metrics()[0]["srcc"]
    print(f"\nOASIS {N}: head SRCC {head:.3f} (out-of-fold {oof:.3f}), ridge {ridge:.3f}")
    assert head >= ridge - TOLERANCE, res.verdict()
    assert oof > 0.5  # real ratings are learnt at all
    # every image predicted exactly once, by the fold that held it out
    assert np.isfinite(res.oof[0]["mos_pred"]).all() and len(res.oof[0]["ids"]) == N
