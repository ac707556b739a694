"""The 8 stored augmentations of MLSP, and the size rules applied before them.

Hosu et al. 2019, sec. 3.1: "proportional crops at 87.5% of width and height
[...] covering the four corners of each image, together with a mirroring
augmentation (on and off)".  Index ``a = 2 * corner + flip``; corners in the
order top-left, top-right, bottom-left, bottom-right; crop height
``floor(0.875 * H)``, width ``floor(0.875 * W)``, flush with its corner; the
crop is taken first, then mirrored left-right when ``flip = 1``.

``crops+grid`` (16) adds, after those 8, the Corner Grid version of each crop
(He et al., M+MNet, sec. 3.4), named ``"<crop name>+grid"``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
CROP_FLIP_NAMES = tuple(f"{c}{'+flip' if f else ''}" for c in CORNERS for f in (0, 1))
WHOLE_NAMES = ("whole",)
#: ``--augment crops+grid``: the 8 crops, then the Corner Grid version of each (M+MNet sec. 3.4).
CROP_GRID_NAMES = CROP_FLIP_NAMES + tuple(f"{n}+grid" for n in CROP_FLIP_NAMES)
#: Modes whose rows are crops at ``crop_fraction`` (the size rules use the crop size).
CROP_MODES = ("crops", "crops+grid")

#: Upscaling beyond this factor is refused: such an image holds too little to score.
MAX_UPSCALE = 8.0


def augmentation_names(mode: str) -> tuple:
    if mode == "crops":
        return CROP_FLIP_NAMES
    if mode == "whole":
        return WHOLE_NAMES
    if mode == "crops+grid":
        return CROP_GRID_NAMES
    raise ValueError(f"unknown augmentation mode {mode!r}; choose 'crops', 'crops+grid' or 'whole'")


def crop_size(height: int, width: int, fraction: float = 0.875) -> tuple[int, int]:
    return int(math.floor(fraction * height)), int(math.floor(fraction * width))


def crops_and_flips(image: np.ndarray, fraction: float = 0.875) -> np.ndarray:
    """The 8 augmentations of an (H, W, 3) image as one (8, h, w, 3) batch."""
    height, width = image.shape[:2]
    ch, cw = crop_size(height, width, fraction)
    out = np.empty((8, ch, cw, image.shape[2]), dtype=image.dtype)
    for corner in range(4):
        top = 0 if corner < 2 else height - ch
        left = 0 if corner % 2 == 0 else width - cw
        crop = image[top:top + ch, left:left + cw]
        out[2 * corner] = crop
        out[2 * corner + 1] = crop[:, ::-1]
    return out


def augment(image: np.ndarray, mode: str = "crops", fraction: float = 0.875) -> np.ndarray:
    if mode == "crops":
        return crops_and_flips(image, fraction)
    if mode == "whole":
        return image[None]
    if mode == "crops+grid":
        crops = crops_and_flips(image, fraction)
        return np.concatenate([crops, np.stack([corner_grid(c) for c in crops])])
    raise ValueError(f"unknown augmentation mode {mode!r}")


def fit_scale(height: int, width: int, min_side: int, max_side: int | None,
              mode: str = "crops", fraction: float = 0.875) -> float:
    """The resize factor applied before augmenting (1.0 = full resolution, the default).

    Rules, in order:
    * ``max_side`` (optional cap): shrink so the longer side is at most ``max_side``.
    * The network needs every input side >= ``min_side`` (75 px for Inception,
      whose valid convolutions fail on less).  If a crop would be smaller, the
      image is upscaled, keeping its aspect ratio, just enough that both crop
      sides reach ``min_side``.  The factor is recorded in the store.
    * Upscaling by more than ``MAX_UPSCALE`` is refused (the caller records the
      image as failed): such an image is a thumbnail or a sliver.
    """
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
    frac = fraction if mode in CROP_MODES else 1.0

    def crop_min(s):
        h, w = scaled_size(height, width, s)
        return min(math.floor(frac * h), math.floor(frac * w))

    if crop_min(scale) < min_side:
        # the smallest short side whose crop reaches min_side; the long side follows
        target = min_side
        while math.floor(frac * target) < min_side:
            target += 1
        scale = target / min(height, width)
    if scale > MAX_UPSCALE:
        raise ValueError(
            f"too small: {width}x{height} px would need upscaling by {scale:.1f} "
            f"(limit {MAX_UPSCALE:g}) to reach the backbone's minimum of {min_side} px"
        )
    return scale


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    if scale == 1.0:
        return height, width
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Area averaging to shrink (no aliasing), bicubic to enlarge."""
    if scale == 1.0:
        return image
    h, w = scaled_size(*image.shape[:2], scale)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    return cv2.resize(image, (w, h), interpolation=interp)


def corner_grid_size(height: int, width: int, r: float = 0.1) -> tuple[int, int]:
    """Cell size ``(h_g, w_g) = (round(h r), round(w r))`` of Corner Grid, rounding half up."""
    return int(math.floor(height * r + 0.5)), int(math.floor(width * r + 0.5))


def corner_grid(image: np.ndarray, r: float = 0.1) -> np.ndarray:
    """Corner Grid (He et al., M+MNet, sec. 3.4, Eq. 6-9): a uint8 copy of ``image``.

    Four cells of ``w_g x h_g`` (:func:`corner_grid_size`) at the corners, boxes
    ``(0, 0, w_g, h_g)``, ``(w - w_g, 0, w, h_g)``, ``(0, h - h_g, w_g, h)``,
    ``(w - w_g, h - h_g, w, h)`` (x0, y0, x1, y1; end exclusive).  Their pixels are
    refilled by the Gray World rule (Eq. 7-9): ``I_c <- (W / mean_c) I_c`` with channel
    means over the whole image (Eq. 6) and ``W = (R + G + B) / 3`` of those means (Eq. 9
    divides by B-bar; the converted text's R-bar is a typo).  Then clipped to [0, 255] and
    rounded half up.  A channel with mean 0 is all 0 and keeps gain 1.  Overlapping
    cells (r > 0.5) are refilled once.  In the extractor the "image" is the crop.
    """
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"corner grid ratio r must be in [0, 1], got {r}")
    img = np.asarray(image)
    height, width = img.shape[:2]
    hg, wg = corner_grid_size(height, width, r)
    pixels = img.astype(np.float64).reshape(height, width, -1)  # a copy
    means = pixels.reshape(-1, pixels.shape[2]).mean(axis=0)  # Eq. 6
    gray = means.mean()  # W
    gain = np.where(means > 0, gray / np.where(means > 0, means, 1.0), 1.0)  # Eq. 7-9
    mask = np.zeros((height, width), bool)
    if hg and wg:
        mask[:hg, :wg] = mask[:hg, width - wg:] = True
        mask[height - hg:, :wg] = mask[height - hg:, width - wg:] = True
    pixels[mask] *= gain
    return np.floor(np.clip(pixels, 0.0, 255.0) + 0.5).astype(np.uint8).reshape(img.shape)
