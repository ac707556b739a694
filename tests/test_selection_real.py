"""``--head auto`` on real photos and real ratings (OASIS): it keeps ridge where the
Single-3FC head cannot win (80 photos, the issue's case: head SRCC 0.17, ridge 0.57) and
picks the head where it wins (all 900 photos: +0.035 over ridge, 14 of 15 folds,
benchmarks/RESULTS-quality.md).

Slow (run with ``pytest -m slow``): the features come from ``$MLSP_OASIS_STORE`` or the
shared ``/work/cache/feats/oasis_mnv2.h5`` when present; otherwise (CI) the photos in
``../shared/data/oasis`` are extracted once a session with the bundled MobileNetV2-0.35
(the fixture ``oasis_store`` in conftest.py, shared with tests/test_quality_oasis.py).  The 900-photo case trains 6 heads on 576-720 images
(tens of minutes on 2 CPU cores)."""
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # the features: the session fixture oasis_store (conftest)


@pytest.fixture(scope="module")
def oasis(oasis_store):
    from mlsp.labels import load_labels

    return oasis_store[0], load_labels(oasis_store[1])


def _subset(lab, n, seed=0):
    return lab.subset(np.sort(np.random.default_rng(seed).permutation(len(lab))[:n]))


# The first rule (highest mean of the 5 inner-fold SRCCs) chose single_3fc here: 0.392
# against ridge 0.277, margin +0.105 [-0.309, +0.518], on folds of 13 photos.  The rule on
# the pooled out-of-fold SRCC keeps ridge (the head is behind there) (measured 2026-12-03: pooled ridge 0.418,
# single_3fc 0.262; 4.5 min on 2 cores).
def test_auto_keeps_ridge_on_80_photos(oasis):
    import mlsp

    store, lab = oasis
    head = mlsp.train(store, _subset(lab, 80), test_fraction=0.2, seed=0)
    sel = head.training.metrics["selection"]
    print("\n" + sel["line"])
    assert sel["winner"] == "ridge", sel["line"]
    assert head.sidecar["head"] == "ridge"
    assert sel["n_images"] == 64  # the 16 test photos took no part


@pytest.mark.xfail(strict=False, reason=(
    "not yet seen to finish under TensorFlow on these machines (6 fits on 576-720 images); "
    "the learning-curve benchmark (JAX, 2026-12-03) had auto pick the head in 3 of 3 outer "
    "folds at 720 OASIS training images; an XPASS confirms it here"))
def test_auto_picks_the_head_on_all_900_photos(oasis):
    import mlsp

    store, lab = oasis
    head = mlsp.train(store, lab, test_fraction=0.2, seed=0)
    sel = head.training.metrics["selection"]
    print("\n" + sel["line"])
    assert sel["winner"] == "single_3fc", sel["line"]
    assert sel["n_images"] == 720
