"""Built-in synthetic data set with known quality scores (no network needed).

Each image is a procedurally drawn scene (sky gradient, horizon, textured
ground, sun and random shapes) of a random size, then degraded by a random
amount of Gaussian blur, additive Gaussian noise and JPEG compression. The
ground-truth score depends ONLY on the three degradation strengths:

    severity = clip(0.4 * blur/4 + 0.3 * noise/25 + 0.3 * (95 - q)/90, 0, 1)
    target   = 10 - 9 * severity                      (in [1, 10])
    p_k      ~ exp(-(k - target)^2 / (2 * 1.2^2)),   k = 1..10, normalised
    mos      = sum_k k * p_k                         (the distribution's mean)

The MOS is defined as the expectation of the rating distribution, exactly as
for AVA. It is a strictly increasing function of ``target`` and equals it to
within 0.01 for targets in [4, 7]; the truncation of the bins to 1..10 pulls
extreme targets inwards (target 1 -> mos 1.68, target 10 -> mos 9.32).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

__all__ = ["WEIGHTS", "RATING_SD", "score_from_degradation", "make_synthetic_set"]

WEIGHTS = (0.4, 0.3, 0.3)  # blur, noise, JPEG
RATING_SD = 1.2
MAX_BLUR, MAX_NOISE, Q_BEST, Q_WORST = 4.0, 25.0, 95, 5


def score_from_degradation(
    blur: float, noise: float, jpeg_quality: float
) -> tuple[float, np.ndarray]:
    """Return (mos, p) for the given strengths; p is the 10-bin rating distribution."""
    w1, w2, w3 = WEIGHTS
    severity = (
        w1 * blur / MAX_BLUR
        + w2 * noise / MAX_NOISE
        + w3 * (Q_BEST - jpeg_quality) / (Q_BEST - Q_WORST)
    )
    target = 10.0 - 9.0 * min(max(severity, 0.0), 1.0)
    k = np.arange(1, 11, dtype=np.float64)
    p = np.exp(-((k - target) ** 2) / (2 * RATING_SD**2))
    p /= p.sum()
    return float(k @ p), p


def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Draw a random landscape-like RGB scene of size h x w (uint8)."""
    horizon = int(rng.uniform(0.3, 0.7) * h)
    top, bottom, g1, g2 = rng.integers(0, 256, (4, 3))
    t = np.linspace(0, 1, horizon)[:, None, None]
    sky = (1 - t) * top + t * bottom
    t = np.linspace(0, 1, h - horizon)[:, None, None]
    ground = (1 - t) * g1 + t * g2
    img = np.concatenate([sky, ground]) * np.ones((1, w, 1))
    # low-frequency texture on the ground
    tex = cv2.resize(rng.normal(0, 20, (8, 8)), (w, h - horizon), interpolation=cv2.INTER_CUBIC)
    img[horizon:] += tex[:, :, None]
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    color = lambda: tuple(int(c) for c in rng.integers(0, 256, 3))  # noqa: E731
    s = min(w, h)
    cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, horizon + 1))),
               int(rng.integers(s // 12, s // 5)), color(), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 7))):
        kind = rng.integers(3)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(horizon // 2, h))
        r = int(rng.integers(s // 16, s // 4))
        if kind == 0:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + int(r * rng.uniform(0.3, 2))),
                          color(), -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.ellipse(img, (cx, cy), (r, int(r * rng.uniform(0.3, 1))),
                        float(rng.uniform(0, 180)), 0, 360, color(), -1, cv2.LINE_AA)
        else:
            pts = np.stack([cx + rng.integers(-r, r + 1, 3), cy + rng.integers(-r, r + 1, 3)], 1)
            cv2.fillPoly(img, [pts.astype(np.int32)], color(), cv2.LINE_AA)
    return img


def make_synthetic_set(
    out_dir, n: int = 64, seed: int = 0, min_side: int = 96, max_side: int = 320
) -> Path:
    """Write n degraded synthetic JPEGs and ``labels.csv`` into out_dir; return the CSV path.

    Sizes (width, height) are drawn independently in [min_side, max_side] and are
    distinct across images. Strengths are uniform: blur sigma in [0, 4], noise
    sigma in [0, 25] (0..255 scale), JPEG quality integer in [5, 95]. Image i
    depends only on (seed, i), so the first k images do not depend on n.
    CSV columns: id, path (relative to out_dir), mos, p1..p10, blur, noise,
    jpeg_quality, width, height. Deterministic for a given seed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if n > (max_side - min_side + 1) ** 2:
        raise ValueError(f"cannot draw {n} distinct sizes in [{min_side}, {max_side}]")
    sizes = set()
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        while (size := tuple(int(v) for v in rng.integers(min_side, max_side + 1, 2))) in sizes:
            pass
        sizes.add(size)
        w, h = size
        blur = round(float(rng.uniform(0, MAX_BLUR)), 3)
        noise = round(float(rng.uniform(0, MAX_NOISE)), 3)
        q = int(rng.integers(Q_WORST, Q_BEST + 1))
        img = _scene(rng, w, h).astype(np.float32)
        if blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        id_ = f"syn{i:05d}"
        (out / f"{id_}.jpg").write_bytes(buf.tobytes())
        mos, p = score_from_degradation(blur, noise, q)
        rows.append([id_, f"{id_}.jpg", f"{mos:.6f}", *(f"{x:.6f}" for x in p),
                     f"{blur:.3f}", f"{noise:.3f}", q, w, h])
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["id", "path", "mos", *(f"p{k}" for k in range(1, 11)),
                     "blur", "noise", "jpeg_quality", "width", "height"])
        wr.writerows(rows)
    return labels
