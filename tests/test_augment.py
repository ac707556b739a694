"""Crop geometry and order (MLSP sec. 3.1), and the size rules before it."""
import math

import numpy as np
import pytest

from mlsp.extract.augment import (
    CROP_FLIP_NAMES, MAX_UPSCALE, augment, crops_and_flips, fit_scale, rescale,
)


def _coords(h, w):
    """An image whose pixel (y, x) holds (y, x, 0), to read crop positions back."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.int32)


@pytest.mark.parametrize("h,w", [(100, 80), (37, 280), (127, 988), (9, 9)])
def test_eight_crops_in_order(h, w):
    img = _coords(h, w)
    out = crops_and_flips(img)
    ch, cw = math.floor(0.875 * h), math.floor(0.875 * w)
    assert out.shape == (8, ch, cw, 3)
    tops = [0, 0, h - ch, h - ch]
    lefts = [0, w - cw, 0, w - cw]
    for corner in range(4):
        plain, flipped = out[2 * corner], out[2 * corner + 1]
        assert plain[0, 0, 0] == tops[corner] and plain[0, 0, 1] == lefts[corner]
        assert plain[-1, -1, 0] == tops[corner] + ch - 1
        assert plain[-1, -1, 1] == lefts[corner] + cw - 1
        np.testing.assert_array_equal(flipped, plain[:, ::-1])  # crop first, then mirror
    assert CROP_FLIP_NAMES == ("top-left", "top-left+flip", "top-right", "top-right+flip",
                               "bottom-left", "bottom-left+flip", "bottom-right", "bottom-right+flip")


def test_whole_mode():
    img = _coords(10, 12)
    np.testing.assert_array_equal(augment(img, "whole")[0], img)
    with pytest.raises(ValueError):
        augment(img, "nine")


def test_size_rules():
    assert fit_scale(497, 629, 75, None) == 1.0  # full resolution by default
    assert fit_scale(800, 600, 75, 400) == pytest.approx(0.5)
    # 280x37: crops must reach 75 px: the short side goes to the smallest t with floor(.875 t) >= 75
    s = fit_scale(37, 280, 75, None)
    img = rescale(np.zeros((37, 280, 3), np.uint8), s)
    crops = crops_and_flips(img)
    assert min(crops.shape[1:3]) == 75 and img.shape[0] == 86
    assert fit_scale(37, 280, 75, None, mode="whole") == pytest.approx(75 / 37)
    with pytest.raises(ValueError, match="too small"):
        fit_scale(8, 100, 75, None)  # would need x10.8 > MAX_UPSCALE
    assert MAX_UPSCALE == 8.0
