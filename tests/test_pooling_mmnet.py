"""ForePool / BackPool (M+MNet sec. 3.1.1, Eq. 1-2) and spatial pyramid pooling (MTP-NasNet)."""
import keras
import numpy as np
import pytest

from mlsp.layers.pooling import (
    BackPool2D, ForeBackPool2D, ForePool2D, SpatialPyramidPooling, adaptive_window, area_weights_numpy,
    window_membership_numpy,
)

A, B = np.log(2.0), np.log(3.0)  # exp(A) = 2, exp(B) = 3: softmax weights by hand
# the 2x4 map of the hand-computed tests
X = np.array([[0.0, A, 0.0, B],
              [B, 0.0, A, 0.0]])


def _np(layer, x):
    return keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(x, "float32")))


def _brute(x, size, back=False):
    """Eq. 1 / Eq. 2 literally, window by window, in float64."""
    my = window_membership_numpy(x.shape[1], size[0])
    mx = window_membership_numpy(x.shape[2], size[1])
    out = np.zeros((x.shape[0],) + tuple(size) + (x.shape[3],))
    for i in range(size[0]):
        for j in range(size[1]):
            win = x[:, my[i] > 0][:, :, mx[j] > 0].astype(np.float64)
            e = np.exp(win - win.max(axis=(1, 2), keepdims=True))
            t = e / e.sum(axis=(1, 2), keepdims=True)
            np.testing.assert_allclose(t.sum(axis=(1, 2)), 1.0)  # softmax over the window
            out[:, i, j] = (((1 - t) if back else t) * win).sum(axis=(1, 2))
    return out


@pytest.mark.parametrize("n_in,expected", [(7, (1, 3)), (12, (2, 4)), (5, (1, 1)), (3, (0, 3))])
def test_adaptive_stride_and_kernel(n_in, expected):
    # s = floor(n_in / 5), k = n_in - 4 s (M+MNet sec. 3.1.1, padding 0)
    assert adaptive_window(n_in, 5) == expected
    m = window_membership_numpy(n_in, 5)
    s, k = expected
    for i in range(5):
        if s == 0:  # 3 -> 5: stride 0, every window is the whole axis
            np.testing.assert_array_equal(m[i], np.ones(n_in))
        else:
            assert list(np.flatnonzero(m[i])) == list(range(i * s, i * s + k))
    # 12 -> 5: windows [0,4) [2,6) [4,8) [6,10) [8,12); the last one ends at the border
    if n_in == 12:
        np.testing.assert_array_equal(m[4], [0] * 8 + [1] * 4)


def test_forepool_and_backpool_by_hand():
    # size (1, 3): rows 2 -> 1: s = 2, k = 2 (both rows); cols 4 -> 3: s = 1, k = 2:
    # windows cols {0,1}, {1,2}, {2,3}.  With a = ln 2, b = ln 3:
    #   window 0 = {0, a, b, 0}: exp 1, 2, 3, 1 (sum 7): t = 1/7, 2/7, 3/7, 1/7
    #            fore = (2a + 3b)/7;  back = sum (1-t) x = (5a + 4b)/7
    #   window 1 = {a, 0, 0, a}: exp 2, 1, 1, 2 (sum 6): fore = 4a/6 = 2a/3; back = 2a - 2a/3 = 4a/3
    #   window 2 = {0, b, a, 0}: exp 1, 3, 2, 1 (sum 7): fore = (3b + 2a)/7; back = (5a + 4b)/7
    # channel 1 is channel 0 + 100 (exp(100) would overflow float32 without the max shift):
    # fore + 100 (the weights sum to 1), back + 100 * (4 - 1) (they sum to n - 1 = 3).
    x = np.stack([X, X + 100.0], axis=-1)[None]
    fore = _np(ForePool2D((1, 3)), x)
    back = _np(BackPool2D((1, 3)), x)
    f0 = [(2 * A + 3 * B) / 7, 2 * A / 3, (3 * B + 2 * A) / 7]
    b0 = [(5 * A + 4 * B) / 7, 4 * A / 3, (5 * A + 4 * B) / 7]
    np.testing.assert_allclose(fore[0, 0, :, 0], f0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fore[0, 0, :, 1], np.add(f0, 100.0), rtol=1e-6)
    np.testing.assert_allclose(back[0, 0, :, 0], b0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back[0, 0, :, 1], np.add(b0, 300.0), rtol=1e-6)
    # size (2, 2): rows 2 -> 2: s = 1, k = 1; cols 4 -> 2: s = 2, k = 2 ({0,1}, {2,3}):
    #   (0,0) = {0, a}: exp 1, 2: fore 2a/3    (0,1) = {0, b}: exp 1, 3: fore 3b/4
    #   (1,0) = {b, 0}: fore 3b/4              (1,1) = {a, 0}: fore 2a/3
    fore = _np(ForePool2D((2, 2)), X[None, :, :, None])[0, :, :, 0]
    np.testing.assert_allclose(fore, [[2 * A / 3, 3 * B / 4], [3 * B / 4, 2 * A / 3]], rtol=1e-6)
    back = _np(BackPool2D((2, 2), normalize=True), X[None, :, :, None])[0, :, :, 0]
    # normalised: divided by n - 1 = 1: window sum - fore, e.g. (0,0): a - 2a/3 = a/3
    np.testing.assert_allclose(back, [[A / 3, B / 4], [B / 4, A / 3]], rtol=1e-5)


@pytest.mark.parametrize("hw,size", [((7, 12), (5, 5)), ((12, 7), (5, 5)), ((5, 5), (5, 5)),
                                     ((3, 9), (5, 5)), ((10, 10), (3, 4)), ((1, 1), (5, 5))])
def test_against_brute_force_and_weights_sum_to_one(hw, size):
    rng = np.random.default_rng(hw[0] * 31 + hw[1])
    x = (rng.normal(size=(2,) + hw + (4,)) * 3).astype(np.float32)
    fore = _np(ForePool2D(size), x)
    np.testing.assert_allclose(fore, _brute(x, size), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(BackPool2D(size), x), _brute(x, size, back=True),
                               rtol=1e-4, atol=1e-4)
    # softmax weights sum to 1 per window <=> shifting the map shifts ForePool as much
    np.testing.assert_allclose(_np(ForePool2D(size), x + 5.0), fore + 5.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(ForePool2D(size), np.full_like(x, 2.5)), 2.5, rtol=1e-6)
    # BackPool = window sum - ForePool
    my = window_membership_numpy(hw[0], size[0])
    mx = window_membership_numpy(hw[1], size[1])
    wsum = np.einsum("ih,bhwc,jw->bijc", my, x.astype(np.float64), mx)
    np.testing.assert_allclose(_np(BackPool2D(size), x), wsum - fore, rtol=1e-4, atol=1e-4)


def test_underflow_falls_back_to_the_window_mean():
    # cols 4 -> 2: windows {0,1}, {2,3}; window 1 lies 200 below the map maximum, so all
    # its exp(x - max) underflow to 0: the output is its mean (documented), not NaN
    x = np.array([[0.0, 1.0, -200.0, -202.0]], np.float32)[None, :, :, None]
    fore = _np(ForePool2D((1, 2)), x)[0, 0, :, 0]
    e = np.exp([0.0, 1.0])
    np.testing.assert_allclose(fore, [e[1] / e.sum(), -201.0], rtol=1e-6)
    assert np.isfinite(_np(BackPool2D((1, 2)), x)).all()


def test_spatial_pyramid_shapes_values_and_cell_order():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 12, 12, 3)).astype(np.float32)
    out = _np(SpatialPyramidPooling(), x)
    assert out.shape == (2, 26, 3)
    np.testing.assert_allclose(out[:, 0], x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    b3 = x.reshape(2, 3, 4, 3, 4, 3).mean(axis=(2, 4))  # 3x3 grid: 4x4 block means
    b4 = x.reshape(2, 4, 3, 4, 3, 3).mean(axis=(2, 4))  # 4x4 grid: 3x3 block means
    np.testing.assert_allclose(out[:, 1:10], b3.reshape(2, 9, 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, 10:26], b4.reshape(2, 16, 3), rtol=1e-5, atol=1e-6)
    assert np.allclose(out[:, 1 + 1], b3[:, 0, 1], atol=1e-6)  # row-major: cell (0, 1) is 2nd
    # sizes not divisible by the grid: area weights (every cell counts)
    y = rng.normal(size=(1, 7, 10, 2)).astype(np.float32)
    got = _np(SpatialPyramidPooling((2, 3)), y)
    ref = np.concatenate([np.einsum("ih,bhwc,jw->bijc", area_weights_numpy(7, v), y,
                                    area_weights_numpy(10, v)).reshape(1, v * v, 2)
                          for v in (2, 3)], axis=1)
    assert got.shape == (1, 13, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        SpatialPyramidPooling(mode="max")


def test_layers_in_a_model_with_dynamic_sizes_and_serialisation():
    inp = keras.Input((None, None, 3))
    both = ForeBackPool2D(5)(inp)  # one softmax for both, as the extractor uses it
    model = keras.Model(inp, [ForePool2D(5)(inp), BackPool2D(5)(inp), SpatialPyramidPooling()(inp),
                              *both])
    rng = np.random.default_rng(1)
    for h, w in [(11, 8), (4, 17)]:
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        fore, back, spp, fore2, back2 = model.predict(x, verbose=0)
        np.testing.assert_allclose(fore2, fore, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(back2, back, rtol=1e-6, atol=1e-6)
        assert fore.shape == back.shape == (2, 5, 5, 3) and spp.shape == (2, 26, 3)
        np.testing.assert_allclose(fore, _brute(x, (5, 5)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(back, _brute(x, (5, 5), back=True), rtol=1e-4, atol=1e-4)
    for layer in (ForePool2D((4, 3)), BackPool2D(2, normalize=True), ForeBackPool2D(3),
                  SpatialPyramidPooling((1, 2))):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError):
        ForePool2D((0, 5))
