"""The ``ridge`` head: the linear reference as a deployable head (closed form, saved,
loaded and scored like any other), checked against scikit-learn on the same rows."""
import keras
import numpy as np
import pytest
from _mmstore import make_ext_store

import mlsp
from mlsp.errors import OptionError
from mlsp.heads.baseline import fit_baseline
from mlsp.stores.features import FeatureStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_ext_store(tmp_path_factory.mktemp("ridge") / "s.h5", n=120, kinds=())


def _mean_features(path):
    with FeatureStore.open(path) as fs:
        return list(fs.ids), np.asarray(fs.dataset("narrow")[:], np.float64).mean(axis=1)


def test_ridge_head_equals_scikit_learn_and_the_reference(store, tmp_path):
    path, labels = store
    res = mlsp.train(path, labels, head="ridge", test_fraction=0.25, seed=3)
    split = np.asarray(res.training.predictions["split"])
    assert "val" in set(split)  # held out for the reported figure, then fit too
    ids, x = _mean_features(path)
    row = {i: k for k, i in enumerate(ids)}
    lab_ids = list(res.training.predictions["ids"])
    fit_rows = [row[i] for i, s in zip(lab_ids, split) if s in ("train", "val")]
    mos = dict(zip(labels.ids, labels.mos))
    pipe = fit_baseline(x[fit_rows], [mos[ids[r]] for r in fit_rows], kind="ridge")
    test_ids = [i for i, s in zip(lab_ids, split) if s == "test"]
    want = pipe.predict(x[[row[i] for i in test_ids]])
    got = {r["id"]: r["score"] for r in res.predict_store(path, ids=test_ids)}
    np.testing.assert_allclose([got[i] for i in test_ids], want, atol=2e-3)
    m = res.training.metrics
    assert m["test"]["srcc"] == pytest.approx(m["baseline_ridge"]["test"]["srcc"], abs=1e-3)
    assert res.sidecar["train"]["ridge_alpha"] == pipe.named_steps["ridge"].alpha_
    # saved and loaded like any head
    res.save(tmp_path / "m")
    again = {r["id"]: r["score"] for r in mlsp.load(tmp_path / "m").predict_store(path)}
    np.testing.assert_allclose([again[i] for i in test_ids], want, atol=2e-3)
    keras.backend.clear_session()


def test_ridge_head_cross_validates_like_the_reference(store):
    from mlsp.training.crossval import cross_validate

    path, labels = store
    res = cross_validate(path, labels, folds=3, seeds=(0,), progress=False, head="ridge")
    head = [r["srcc"] for r in res.rows if r["row"] == "head"]
    ridge = [r["srcc"] for r in res.rows if r["row"] == "baseline_ridge"]
    np.testing.assert_allclose(head, ridge, atol=1e-3)
    assert min(head) > 0.5  # the synthetic MOS follows the features
    keras.backend.clear_session()


def test_ridge_head_refuses_distributions(store):
    path, labels = store
    with pytest.raises(OptionError, match="ridge head predicts mos only"):
        mlsp.train(path, labels, head="ridge", output="distribution")


def test_ridge_head_caps_its_rows_like_the_reference(store):
    """Above baseline_max_rows the head fits on the reference's own random rows (bounded
    memory on AVA-sized sets): the two still agree on the test images."""
    path, labels = store
    res = mlsp.train(path, labels, head="ridge", test_fraction=0.25, seed=1,
                     baseline_max_rows=40)
    m = res.training.metrics
    assert m["baseline_ridge"]["fit_rows"] == 40
    assert m["test"]["srcc"] == pytest.approx(m["baseline_ridge"]["test"]["srcc"], abs=1e-3)
    keras.backend.clear_session()


def test_api_seed_count_starts_at_seed_as_the_cli_does(store):
    """``mlsp.cross_validate(seeds=2, seed=3)`` runs seeds 3 and 4, as ``mlsp train --seed 3
    --seeds 2`` does (the API used to start a count at 0 whatever ``seed`` said)."""
    from mlsp.cli_types import cv_options
    from mlsp.options import seed_list

    path, labels = store
    res = mlsp.cross_validate(path, labels, head="ridge", folds=2, seeds=2, seed=3)
    assert res.seeds == (3, 4) == cv_options(2, 2, 3)["seeds"]
    assert sorted({r["seed"] for r in res.rows}) == [3, 4]
    assert seed_list((7, 1)) == (7, 1) and seed_list(1) == (0,)
    with pytest.raises(OptionError, match="seeds"):
        seed_list(0)
    keras.backend.clear_session()
