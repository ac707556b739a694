"""Area pooling (MLSP sec. 3.1) against OpenCV's INTER_AREA, the independent truth."""
import cv2
import keras
import numpy as np
import pytest

from mlsp.layers.pooling import AreaPooling2D, area_resize, area_weights_numpy


def _pool(x, size):
    return keras.ops.convert_to_numpy(area_resize(keras.ops.convert_to_tensor(x[None]), size))[0]


SHRINK = [(5, 5), (10, 10), (7, 9), (13, 29), (37, 29), (17, 8), (8, 17), (64, 48), (6, 11), (35, 35)]
GROW = [(1, 1), (2, 3), (3, 4), (4, 2), (1, 5), (5, 1)]


@pytest.mark.parametrize("hw", SHRINK + GROW)
@pytest.mark.parametrize("out", [(5, 5), (3, 3)])
def test_equals_opencv_inter_area_when_both_axes_shrink_or_grow(hw, out):
    h, w = hw
    if not ((h >= out[0] and w >= out[1]) or (h <= out[0] and w <= out[1])):
        pytest.skip("mixed case, tested separately")
    rng = np.random.default_rng(h * 100 + w)
    x = rng.normal(size=(h, w, 11)).astype(np.float32)
    ours = _pool(x, out)
    for c in range(0, 11, 4):  # OpenCV refuses > 4 channels for non-integer factors
        ref = cv2.resize(x[:, :, c:c + 4], (out[1], out[0]), interpolation=cv2.INTER_AREA)
        ref = ref.reshape(out[0], out[1], -1)
        np.testing.assert_allclose(ours[:, :, c:c + 4], ref, rtol=1e-5, atol=2e-6)


def test_random_sizes_against_opencv():
    rng = np.random.default_rng(7)
    for _ in range(40):
        h, w = rng.integers(5, 80, size=2)
        x = rng.uniform(0, 10, size=(h, w, 3)).astype(np.float32)
        ref = cv2.resize(x, (5, 5), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(_pool(x, (5, 5)), ref, rtol=1e-5, atol=1e-5)


def test_mixed_case_is_true_box_average_not_opencv():
    """One axis grows (3 -> 5), the other shrinks (17 -> 5): we keep the box average."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 17, 2)).astype(np.float32)
    ours = _pool(x, (5, 5))
    expected = np.einsum("ih,hwc,jw->ijc", area_weights_numpy(3, 5), x, area_weights_numpy(17, 5))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # every source cell counts, so the mean of the 5x5 output is the mean of the map
    np.testing.assert_allclose(ours.mean(axis=(0, 1)), x.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    # the same as OpenCV's INTER_AREA applied one axis at a time
    two_pass = cv2.resize(cv2.resize(x, (5, 3), interpolation=cv2.INTER_AREA), (5, 5),
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(ours, two_pass, rtol=1e-5, atol=1e-6)
    opencv = cv2.resize(x, (5, 5), interpolation=cv2.INTER_AREA)
    assert not np.allclose(ours, opencv, atol=1e-3)  # documented difference


def test_weights_rows_sum_to_one_and_integer_factor_is_block_mean():
    for n_in, n_out in [(10, 5), (7, 5), (3, 5), (1, 5), (23, 1)]:
        w = area_weights_numpy(n_in, n_out)
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(area_weights_numpy(10, 5)[1], [0, 0, .5, .5, 0, 0, 0, 0, 0, 0])


def test_narrow_is_global_average_and_layer_handles_dynamic_sizes():
    layer = AreaPooling2D((1, 1))
    x = np.random.default_rng(0).normal(size=(2, 9, 13, 6)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 1, 1, 6)
    np.testing.assert_allclose(out[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    inp = keras.Input((None, None, 6))
    model = keras.Model(inp, AreaPooling2D(5)(inp))
    for h, w in [(9, 13), (40, 7), (5, 5)]:
        y = model.predict(np.ones((1, h, w, 6), np.float32), verbose=0)
        assert y.shape == (1, 5, 5, 6)
        np.testing.assert_allclose(y, 1.0, rtol=1e-5)


def test_layer_serialises():
    layer = AreaPooling2D((4, 3))
    clone = AreaPooling2D.from_config(layer.get_config())
    assert clone.size == (4, 3)
    with pytest.raises(ValueError):
        AreaPooling2D((0, 5))
