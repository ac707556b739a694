"""Corner Grid (M+MNet sec. 3.4, Eq. 6-9) and the crops+grid augmentation mode."""
import numpy as np
import pytest

from mlsp.extract.augment import (
    CROP_FLIP_NAMES, augment, augmentation_names, corner_grid, corner_grid_size, crops_and_flips,
    fit_scale,
)


def _image():
    """4x8 RGB with channel means (100, 50, 150), so W = 100 and the gains are (1, 2, 2/3)."""
    img = np.zeros((4, 8, 3), np.uint8)
    img[..., 0] = 100
    img[..., 1] = 50
    img[..., 2] = 150
    # G: +30 +150 -50 -50 -50 -30 = 0 (mean stays 50)
    img[0, 0, 1], img[3, 7, 1] = 80, 200
    img[1, 3, 1] = img[1, 4, 1] = img[2, 4, 1] = 0
    img[2, 5, 1] = 20
    # B: +90 -90 +1 -1 = 0 (mean stays 150)
    img[0, 0, 2], img[2, 2, 2], img[3, 0, 2], img[2, 3, 2] = 240, 60, 151, 149
    return img


def test_corner_grid_by_hand():
    img = _image()
    # r = 0.25: cells of h_g = round(4 * .25) = 1 row, w_g = round(8 * .25) = 2 columns,
    # at (x0, y0, x1, y1) = (0,0,2,1), (6,0,8,1), (0,3,2,4), (6,3,8,4)
    assert corner_grid_size(4, 8, 0.25) == (1, 2)
    out = corner_grid(img, 0.25)
    assert out.dtype == np.uint8 and out is not img
    cells = np.zeros((4, 8), bool)
    cells[0, :2] = cells[0, 6:] = cells[3, :2] = cells[3, 6:] = True
    np.testing.assert_array_equal(out[~cells], img[~cells])  # outside: untouched
    np.testing.assert_array_equal(img, _image())  # input not modified
    expected = np.full((4, 8, 3), 100, np.uint8)  # the mean colour maps to gray W = 100
    expected[0, 0] = (100, 160, 160)  # G 80 * 2, B 240 * 2/3
    expected[3, 7, 1] = 255  # G 200 * 2 = 400, clipped
    expected[3, 0, 2] = 101  # B 151 * 2/3 = 100.67, rounded
    np.testing.assert_array_equal(out[cells], expected[cells])


def test_cell_size_rounding_zero_mean_and_tiny_ratio():
    assert corner_grid_size(15, 25) == (2, 3)  # 1.5 -> 2 and 2.5 -> 3: rounded half up
    img = np.zeros((10, 10, 3), np.uint8)
    img[..., 0], img[..., 1] = 30, 90  # B mean 0: gain guarded (stays 0, no NaN)
    with np.errstate(all="raise"):
        out = corner_grid(img)  # r = 0.1: 1x1 cells; W = (30 + 90 + 0) / 3 = 40
    np.testing.assert_array_equal(out[0, 0], (40, 40, 0))
    np.testing.assert_array_equal(out[1, 1], (30, 90, 0))
    np.testing.assert_array_equal(corner_grid(img, 0.04), img)  # round(0.4) = 0: no cells
    with pytest.raises(ValueError):
        corner_grid(img, 1.5)


def test_crops_plus_grid_mode():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (41, 57, 3)).astype(np.uint8)
    img[..., 0] //= 2  # a colour cast, so Gray World changes every cell
    out = augment(img, "crops+grid")
    plain = crops_and_flips(img)
    assert out.shape == (16,) + plain.shape[1:]
    np.testing.assert_array_equal(out[:8], plain)
    for a in range(8):
        np.testing.assert_array_equal(out[8 + a], corner_grid(plain[a]))
        assert not np.array_equal(out[8 + a], plain[a])
    # the grid commutes with the mirror: "+flip+grid" is the mirrored "+grid"
    np.testing.assert_array_equal(out[9], out[8][:, ::-1])
    names = augmentation_names("crops+grid")
    assert names[:8] == CROP_FLIP_NAMES and len(names) == 16
    assert names[8] == "top-left+grid" and names[9] == "top-left+flip+grid"
    assert names[15] == "bottom-right+flip+grid"
    assert fit_scale(37, 280, 75, None, mode="crops+grid") == fit_scale(37, 280, 75, None)
