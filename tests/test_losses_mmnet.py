"""M+MNet (He et al. 2025): Re-EMD (Eq. 3-4) by hand, the MNet head (sec. 3.1),
MTP-NasNet's distribution metrics (Eq. 5-9) by hand and in evaluate_predictions."""
import math

import keras
import numpy as np
import pytest

from mlsp.evaluation.distribution import (chebyshev, cosine, distribution_metrics, emd, ped,
                                          pkl)
from mlsp.evaluation.metrics import evaluate_predictions
from mlsp.heads import ALL_HEADS, build_head, emd_loss, re_emd_loss
from mlsp.heads.losses import re_emd_weights
from mlsp.heads.mnet import build_mnet


def _np(x):
    return float(keras.ops.convert_to_numpy(x))


def test_re_emd_weights_by_hand():
    # M(p) = (p / sum p + beta) * alpha; p = (0.2, 0.3, 0.5) -> 10 * (0.3, 0.4, 0.6)
    w = keras.ops.convert_to_numpy(re_emd_weights(np.array([[0.2, 0.3, 0.5]], "float32")))
    assert np.allclose(w, [[3.0, 4.0, 6.0]])
    # unnormalised counts give the same weights (p / sum p)
    w2 = keras.ops.convert_to_numpy(re_emd_weights(np.array([[2.0, 3.0, 5.0]], "float32")))
    assert np.allclose(w2, w)


def test_re_emd_r2_by_hand():
    # p = (0.5, 0.5, 0): CDF (0.5, 1, 1); p_hat = (0, 0, 1): CDF (0, 0, 1); gap (0.5, 1, 0)
    # M = 10 * (0.6, 0.6, 0.1) = (6, 6, 1); weighted gaps (3, 6, 0)
    # Re-EMD = sqrt((9 + 36 + 0) / 3) = sqrt(15)
    yt = np.array([[0.5, 0.5, 0.0]], "float32")
    yp = np.array([[0.0, 0.0, 1.0]], "float32")
    assert _np(re_emd_loss(2)(yt, yp)) == pytest.approx(math.sqrt(15), rel=1e-5)
    # plain EMD of the same pair: sqrt((0.25 + 1) / 3)
    assert _np(emd_loss(2)(yt, yp)) == pytest.approx(math.sqrt(1.25 / 3), rel=1e-5)


def test_re_emd_r1_and_batch_mean():
    # r = 1: mean of weighted |gaps|; image 1 as above: (3 + 6 + 0) / 3 = 3
    # image 2: p = (0, 1, 0) CDF (0, 1, 1); p_hat = (1, 0, 0) CDF (1, 1, 1): gap (1, 0, 0)
    # M = 10 * (0.1, 1.1, 0.1) = (1, 11, 1): (1 + 0 + 0) / 3 = 1/3; batch mean (3 + 1/3) / 2
    yt = np.array([[0.5, 0.5, 0.0], [0, 1, 0]], "float32")
    yp = np.array([[0.0, 0.0, 1.0], [1, 0, 0]], "float32")
    assert _np(re_emd_loss(1)(yt, yp)) == pytest.approx((3 + 1 / 3) / 2, rel=1e-5)
    # alpha / beta arguments: alpha = 1, beta = 0 -> M = p: image 2 gap weight 0 -> 0
    assert _np(re_emd_loss(1, alpha=1, beta=0)(yt[1:], yp[1:])) == pytest.approx(0, abs=1e-6)


def test_re_emd_is_finite_and_positive():
    yt = keras.ops.convert_to_tensor(np.array([[0.5, 0.5, 0.0]], "float32"))
    yp = np.array([[0.2, 0.3, 0.5]], "float32")
    loss = re_emd_loss(2)
    # finite differences w.r.t. the prediction only (the target has no gradient anyway)
    base = _np(loss(yt, yp))
    assert np.isfinite(base) and base > 0


def test_distribution_metrics_by_hand():
    y = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    assert ped(y, q) == pytest.approx(0.5)             # 0.25 + 0 + 0.25
    assert ped(y, q, root=True) == pytest.approx(math.sqrt(0.5))
    assert chebyshev(y, q) == pytest.approx(0.5)
    assert cosine(y, q) == pytest.approx(0.25 / 0.5)   # (0.25) / (sqrt(.5) sqrt(.5))
    # EMD: CDFs (0.5, 1, 1) vs (0, 0.5, 1): gaps (0.5, 0.5, 0) -> sqrt(0.5 / 3)
    assert emd(y, q) == pytest.approx(math.sqrt(0.5 / 3))
    # PKL on strictly positive distributions: a = (0.25, 0.75), b = (0.5, 0.5)
    a, b = np.array([0.25, 0.75]), np.array([0.5, 0.5])
    kl_ab = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    kl_ba = 0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)
    assert pkl(a, b) == pytest.approx(0.5 * (kl_ab + kl_ba))
    assert pkl(a, a) == pytest.approx(0.0)
    assert np.isfinite(pkl(y, q))  # empty bins are clipped, not infinite
    # vectorised: (N, K) -> (N,)
    both = ped(np.stack([y, a.tolist() + [0]]), np.stack([q, b.tolist() + [0]]))
    assert both.shape == (2,) and both[0] == pytest.approx(0.5)
    m = distribution_metrics(np.stack([y, y]), np.stack([q, y]))
    assert m["ped"] == pytest.approx(0.25) and m["cos"] == pytest.approx(0.75)


def test_evaluate_predictions_reports_distribution_metrics():
    dt = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    dp = np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    out = evaluate_predictions([1.5, 2.5, 2.3], [2.5, 2.5, 2.3], threshold=2, dist_true=dt,
                               dist_pred=dp)
    assert out["ped"] == pytest.approx(0.5 / 3)
    assert out["cheb"] == pytest.approx(0.5 / 3)
    assert {"emd", "pkl", "cos"} <= set(out)
    assert "ped" not in evaluate_predictions([1, 2, 3], [1, 2, 3])


def test_mnet_head_shapes_and_structure():
    assert "mnet" in ALL_HEADS
    m = build_head("mnet", 8, wide_size=5, output="distribution", n_bins=10, width=32, seed=1)
    names = [l.name for l in m.layers]
    # self-attention sits before the ForePool layer (sec. 3.1.2); 1x1 fusion after both
    assert names.index("fore_attention") < names.index("forepool") < names.index("fuse_1x1")
    assert names.index("backpool") < names.index("fuse_1x1")
    assert m.get_layer("fuse_1x1").kernel.shape[:2] == (1, 1)
    assert m.get_layer("branches").output.shape == (None, 2, 2, 16)
    y = keras.ops.convert_to_numpy(m(np.random.default_rng(0).normal(
        size=(3, 5, 5, 8)).astype("float32")))
    assert y.shape == (3, 10) and np.allclose(y.sum(1), 1, atol=1e-5)
    fb = build_mnet(8, wide_size=5, source="foreback", width=32, seed=1)
    assert tuple(fb.input.shape) == (None, 5, 5, 16)
    assert fb(np.zeros((2, 5, 5, 16), "float32")).shape == (2, 1)
    keras.backend.clear_session()


def test_mnet_saves_and_loads(tmp_path):
    m = build_mnet(4, wide_size=3, source="foreback", width=16, seed=2)
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 8)).astype("float32")
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert np.allclose(m.predict(x, verbose=0), back.predict(x, verbose=0), atol=1e-5)
    keras.backend.clear_session()
