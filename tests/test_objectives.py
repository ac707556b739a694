"""Multi-patch objectives (Sheng et al. 2018, Eq. 3-8) by hand, the all-augmentation
feeder, and a tiny training run with MP_ada / Re-EMD through train_head."""
import math

import keras
import numpy as np
import pytest
from _mmstore import A, C, make_ext_store

from mlsp.training.objectives import (AllAugmentationsSequence, MultiPatchModel,
                                      combine_patches, patch_weights)
from mlsp.inference.model_format import read_model as load_trained
from mlsp.training.trainer import train_head


def _np(x):
    return keras.ops.convert_to_numpy(x)


P = np.array([[0.25, 1.0]], "float32")   # two patches: confidence 0.25 and 1


def test_patch_weights_by_hand():
    assert np.allclose(_np(patch_weights(P, "mp_avg")), [[0.5, 0.5]])
    # soft MP_min: proportional to 1 - p = (0.75, 0) -> (1, 0)
    assert np.allclose(_np(patch_weights(P, "mp_min")), [[1.0, 0.0]])
    # MP_ada: omega = 1 - p^0.5 = (0.5, 0), times 1/|P|
    assert np.allclose(_np(patch_weights(P, "mp_ada")), [[0.25, 0.0]])
    # MP_min with all patches right: uniform
    assert np.allclose(_np(patch_weights(np.ones((1, 4), "float32"), "mp_min")), 0.25)
    # four patches: 1 - p = (0.75, 0.36, 0.19, 0) / 1.3
    p4 = np.array([[0.25, 0.64, 0.81, 1.0]], "float32")
    assert np.allclose(_np(patch_weights(p4, "mp_min")), [[0.75 / 1.3, 0.36 / 1.3, 0.19 / 1.3, 0]])
    assert np.allclose(_np(patch_weights(p4, "mp_ada")), [[0.5 / 4, 0.2 / 4, 0.1 / 4, 0]])
    with pytest.raises(ValueError):
        patch_weights(P, "mp_max")


def test_objectives_with_log_likelihood_by_hand():
    losses = -np.log(P)  # (log 4, 0)
    assert float(_np(combine_patches(losses, P, "mp_avg"))) == pytest.approx(math.log(2))  # Eq. 3
    assert float(_np(combine_patches(losses, P, "mp_min"))) == pytest.approx(math.log(4))  # Eq. 5
    assert float(_np(combine_patches(losses, P, "mp_ada"))) == pytest.approx(0.25 * math.log(4))
    # sample weights scale each image, then the batch mean
    two = np.concatenate([P, P])
    val = combine_patches(-np.log(two), two, "mp_avg", sample_weight=np.array([1.0, 3.0]))
    assert float(_np(val)) == pytest.approx(2 * math.log(2))


def test_mp_ada_gradient_is_eq8():
    # d MP_ada / d p = -(1/|P|) lambda, lambda = (1 - (1 + beta log p)(1 - omega)) / p (Eq. 8)
    beta, p0 = 0.5, np.array([[0.3, 0.7]], "float64")

    def f(p):
        return float(_np(combine_patches(-np.log(p), p, "mp_ada", beta)))

    # central differences with a step that float32 backends (JAX computes in float32) resolve:
    # truncation ~(h/p)^2 ~ 1e-5, rounding ~eps32 / h ~ 1e-4 (relative)
    step = 1e-3
    for a in range(2):
        h = np.zeros_like(p0)
        h[0, a] = step
        num = (f(p0 + h) - f(p0 - h)) / (2 * step)
        p = p0[0, a]
        omega = 1 - p ** beta
        lam = (1 - (1 + beta * math.log(p)) * (1 - omega)) / p
        assert num == pytest.approx(-lam / 2, rel=1e-3)


def test_mp_min_weights_carry_no_gradient():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    import tensorflow as tf

    p = tf.Variable([[0.3, 0.7]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = combine_patches(tf.ones_like(p), p, "mp_min")  # l = 1: only the weights depend on p
    g = tape.gradient(loss, p)
    assert g is None or np.allclose(g.numpy(), 0.0)   # None: no path from p to the loss


def test_multipatch_model_patch_losses_by_hand():
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    mp = MultiPatchModel(head, "mp_avg", "mse")
    l, p = mp.patch_losses(np.array([[0.0]], "float32"), np.array([[[0.5], [-2.0]]], "float32"))
    assert np.allclose(_np(l), [[0.25, 4.0]])
    assert np.allclose(_np(p), [[math.exp(-0.5), math.exp(-2.0)]])   # p = exp(-|e| / 1)
    # distributions: bins (1, 2, 3), MOS std 2; truth (0, 1, 0) = MOS 2
    mpd = MultiPatchModel(head, "mp_min", "emd", bin_scores=[1, 2, 3], mos_std=2.0)
    yp = np.array([[[0, 1, 0], [0, 0, 1]]], "float32")
    l, p = mpd.patch_losses(np.array([[0, 1, 0]], "float32"), yp)
    assert np.allclose(_np(l), [[0.0, math.sqrt(1 / 3)]], atol=1e-5)  # CDF gap (0, 1, 0)
    assert np.allclose(_np(p), [[1.0, math.exp(-0.5)]])               # |3 - 2| / 2
    # binary (the paper's case): p = y_hat for label 1, 1 - y_hat for label 0
    mpb = MultiPatchModel(head, "mp_ada", task="binary")
    l, p = mpb.patch_losses(np.array([1.0, 0.0], "float32"),
                            np.array([[[0.8], [0.4]], [[0.8], [0.4]]], "float32"))
    assert np.allclose(_np(p), [[0.8, 0.4], [0.2, 0.6]])
    assert np.allclose(_np(l), -np.log([[0.8, 0.4], [0.2, 0.6]]), atol=1e-6)


def test_multipatch_model_applies_head_per_patch():
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    mp = MultiPatchModel(head, "mp_ada", "mse")
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    y = _np(mp(x))
    assert y.shape == (4, 5, 2)
    assert np.allclose(y, _np(head(x.reshape(20, 3))).reshape(4, 5, 2), atol=1e-6)


class _Feats:
    n_aug = 3

    def get(self, rows, aug=None):
        rows = np.asarray(rows)
        return np.repeat(rows[:, None, None], 3, axis=1).astype("float32") + np.arange(3)[:, None]


def test_all_augmentations_sequence():
    seq = AllAugmentationsSequence(_Feats(), [10, 20, 30], np.arange(3.0)[:, None], batch_size=2,
                                   shuffle=False, sample_weights=[1, 2, 3])
    x, y, w = seq[0]
    assert x.shape == (2, 3, 1) and np.allclose(x[1, :, 0], [20, 21, 22])
    assert np.allclose(y[:, 0], [0, 1]) and np.allclose(w, [1, 2]) and len(seq) == 2


@pytest.fixture(scope="module")
def ext_store(tmp_path_factory):
    return make_ext_store(tmp_path_factory.mktemp("mp") / "s.h5")


def test_train_head_mp_ada_re_emd(ext_store, tmp_path):
    path, labels = ext_store
    res = train_head(path, labels, head="single_3fc", objective="mp_ada", loss="re_emd",
                     epochs=2, batch_size=16, lr=1e-3, width=16, out_dir=tmp_path / "m",
                     progress=False, baseline=False, plots=False)
    t = res.sidecar["train"]
    assert (t["objective"], t["loss"], res.sidecar["output"]) == ("mp_ada", "re_emd",
                                                                   "distribution")
    assert len(res.history["loss"]) == 2 and np.isfinite(res.history["loss"]).all()
    assert res.predictions["dist_pred"].shape == (40, 10)
    assert "ped" in res.metrics["val"]
    model, side = load_trained(tmp_path / "m")
    assert tuple(model.input_shape) == (None, C)   # the saved model is the inner head
    keras.backend.clear_session()


def test_train_head_mp_min_mse(ext_store, tmp_path):
    path, labels = ext_store
    res = train_head(path, labels, head="single_1fc", objective="mp_min", epochs=1,
                     batch_size=2 * A, lr=1e-3, out_dir=tmp_path / "m", progress=False,
                     baseline=False, plots=False)
    assert res.sidecar["train"]["objective"] == "mp_min" and res.sidecar["output"] == "mos"
    assert np.isfinite(res.predictions["mos_pred"]).all()
    keras.backend.clear_session()
