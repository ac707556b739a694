"""MLSP heads (sec. 3.2): parameter counts, shapes, the EMD loss, the classic baseline."""

import math

import keras
import numpy as np
import pytest

from mlsp.heads import HEADS, build_head, emd_loss, fit_baseline


def _fc3_params(x_in, width):
    # Dense(width) + BN(width: gamma, beta, mean, var) + Dense(1024) + BN + Dense(256) + BN
    return ((x_in + 1) * width + 4 * width + (width + 1) * 1024 + 4 * 1024
            + 1025 * 256 + 4 * 256)


def test_single_3fc_param_count_inception_resnet():
    # 16,928 narrow MLSP channels of InceptionResNet-v2 (MLSP sec. 4.2)
    m = build_head("single_3fc", 16928)
    assert m.count_params() == 37_044_737 == _fc3_params(16928, 2048) + 257
    assert m.get_layer("output").output.shape == (None, 1)
    del m
    keras.backend.clear_session()


def test_single_1fc_param_count():
    m = build_head("single_1fc", 16928)
    assert m.count_params() == 16929
    assert m.layers[0].name == "features" and m.layers[-1].name == "output"


def test_multi_3fc_param_count_by_hand():
    # two levels of 8 and 4 channels; each level: a 3FC with X = its channels, then
    # Dense(1); combined by Dense(2 -> 1):
    #   level 8: 9*8 + 4*8 + 9*1024 + 4*1024 + 1025*256 + 4*256 + 257
    #          = 72 + 32 + 9216 + 4096 + 262400 + 1024 + 257 = 277,097
    #   level 4: 5*4 + 4*4 + 5*1024 + 4*1024 + 1025*256 + 4*256 + 257
    #          = 20 + 16 + 5120 + 4096 + 262400 + 1024 + 257 = 272,933
    #   combine: 2 weights + 1 bias = 3                 total = 550,033
    m = build_head("multi_3fc", 12, level_channels=[8, 4])
    assert _fc3_params(8, 8) + 257 == 277_097 and _fc3_params(4, 4) + 257 == 272_933
    assert m.count_params() == 550_033
    # distribution: per level Dense(10) logits, combined by Dense(20 -> 10), then softmax
    d = build_head("multi_3fc", 12, level_channels=[8, 4], output="distribution")
    assert d.count_params() == (_fc3_params(8, 8) + 257 * 10 + _fc3_params(4, 4) + 257 * 10
                                + 21 * 10)
    with pytest.raises(ValueError):
        build_head("multi_3fc", 12, level_channels=[8, 3])


def test_multi_3fc_levels_see_only_their_channels():
    m = build_head("multi_3fc", 6, level_channels=[4, 2], seed=0)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    y0 = m.predict(x, verbose=0)
    x2 = x.copy()
    x2[:, 4:] = 0.0  # changes only the second level's input
    sub = keras.Model(m.input, m.get_layer("level0_out").output)
    assert np.allclose(sub.predict(x, verbose=0), sub.predict(x2, verbose=0))
    assert not np.allclose(y0, m.predict(x2, verbose=0))


@pytest.mark.parametrize("output, n_out", [("mos", 1), ("distribution", 7)])
def test_shapes_every_head(output, n_out):
    rng = np.random.default_rng(0)
    for name in HEADS:
        kw = dict(level_channels=[16, 8, 8]) if name == "multi_3fc" else {}
        wide = 3
        m = build_head(name, 32, output=output, n_bins=7, wide_size=wide, width=64, seed=1, **kw)
        shape = (2, wide, wide, 32) if name == "pool_3fc" else (2, 32)
        x = rng.normal(size=shape).astype("float32")
        y = keras.ops.convert_to_numpy(m(x, training=False))
        assert m.layers[-1].name == "output"
        assert y.shape == (2, n_out), name
        if output == "distribution":
            assert np.allclose(y.sum(1), 1, atol=1e-5) and (y >= 0).all()
    keras.backend.clear_session()


def test_pool_3fc_shapes():
    m = build_head("pool_3fc", 64, wide_size=5)
    assert tuple(m.input.shape) == (None, 5, 5, 64)
    assert m.get_layer("pool_concat").output.shape == (None, 5, 5, 3072)
    assert m.get_layer("pool_b_concat").output.shape == (None, 5, 5, 1024)
    assert m.get_layer("fc1").output.shape == (None, 2048)
    y = m.predict(np.zeros((2, 5, 5, 64), "float32"), verbose=0)
    assert y.shape == (2, 1)
    keras.backend.clear_session()


def test_pool_3fc_kernels_narrow_the_module():
    # 16 a column: 1x1 (64 -> 16) + 1x1 (64 -> 8) -> 1x3 (8) and 3x1 (8), avg -> 1x1 (16);
    # each conv without bias, each followed by BN (4 values a channel)
    m = build_head("pool_3fc", 64, wide_size=5, pool_kernels=16)
    assert m.get_layer("pool_concat").output.shape == (None, 5, 5, 48)
    module = (64 * 16 + 64 * 8 + 8 * 8 * 3 + 8 * 8 * 3 + 64 * 16) + 4 * (16 + 8 + 8 + 8 + 16)
    assert m.count_params() == module + _fc3_params(48, 2048) + 257
    keras.backend.clear_session()


def test_unknown_head_and_output():
    with pytest.raises(ValueError):
        build_head("nope", 10)
    with pytest.raises(ValueError):
        build_head("single_1fc", 10, output="class")


def test_seed_is_reproducible():
    x = np.ones((1, 10), "float32")
    a = build_head("single_3fc", 10, width=16, seed=3).predict(x, verbose=0)
    b = build_head("single_3fc", 10, width=16, seed=3).predict(x, verbose=0)
    assert np.allclose(a, b)


def test_emd_loss_by_hand():
    loss = emd_loss(2)
    # CDFs (1, 1, 1) vs (0, 0, 1): |diff| = (1, 1, 0) -> sqrt(2/3)
    # CDFs (0.2, 0.5, 1) vs (0.5, 0.8, 1): |diff| = (0.3, 0.3, 0) -> sqrt(0.06)
    yt = np.array([[1, 0, 0], [0.2, 0.3, 0.5]], "float32")
    yp = np.array([[0, 0, 1], [0.5, 0.3, 0.2]], "float32")
    v = float(keras.ops.convert_to_numpy(loss(yt, yp)))
    assert v == pytest.approx((math.sqrt(2 / 3) + math.sqrt(0.06)) / 2, rel=1e-5)
    v1 = float(keras.ops.convert_to_numpy(emd_loss(1)(yt, yp)))
    assert v1 == pytest.approx((2 / 3 + 0.2) / 2, rel=1e-5)
    same = float(keras.ops.convert_to_numpy(loss(yt, yt)))
    assert same == pytest.approx(0, abs=1e-5)


def test_emd_loss_trains():
    m = build_head("single_1fc", 4, output="distribution", n_bins=5, seed=0)
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=emd_loss())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.dirichlet(np.ones(5), 32).astype("float32")
    hist = m.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]
    assert all(np.isfinite(hist)) and hist[-1] < hist[0]


@pytest.mark.parametrize("kind", ["ridge", "svr"])
def test_baseline(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = 5 + X[:, 0] - 0.5 * X[:, 1] + 0.05 * rng.normal(size=80)
    pipe = fit_baseline(X, y, kind=kind)
    pred = pipe.predict(X)
    assert pred.shape == (80,) and np.corrcoef(pred, y)[0, 1] > 0.9
    if kind == "svr":
        assert pipe.named_steps["svr"].C in (0.1, 1.0, 10.0)
    with pytest.raises(ValueError):
        fit_baseline(X, y, kind="forest")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 copy= notice inside keras
def test_multi_3fc_saves_and_loads(tmp_path):
    # the level split is a serialisable GetItem op, not a Lambda layer
    m = build_head("multi_3fc", 6, level_channels=[4, 2], output="distribution", n_bins=3,
                   seed=0)
    m.save(tmp_path / "m.keras")
    m2 = keras.models.load_model(tmp_path / "m.keras", custom_objects={})
    x = np.random.default_rng(1).normal(size=(2, 6)).astype("float32")
    assert np.allclose(m.predict(x, verbose=0), m2.predict(x, verbose=0), atol=1e-6)
