"""A tiny store with every feature kind (narrow, wide, wide_fore, wide_back, spp) and
labels with 10-bin distributions and AVA-like tags, for the extension tests."""
import numpy as np

from mlsp.labels import Labels
from mlsp.stores.features import FeatureStore, Level

A, P, C = 8, 3, 6
LEVELS = [Level("block_a", 4, 0), Level("block_b", 2, 4)]
CONFIG = {"backbone": "toy", "alpha": 1.0, "weights": "toy.h5", "weights_sha256": "abc",
          "weights_seed": -1, "preprocessing": "x/127.5-1", "augmentation_mode": "crops",
          "augmentations": [f"aug{a}" for a in range(A)], "crop_fraction": 0.875,
          "pool_narrow": 1, "pool_wide": P, "max_side": 0, "min_side": 32,
          "pooling_kinds": ["area", "fore", "back", "spp"]}


def make_ext_store(path, n=40, seed=0, kinds=("wide_fore", "wide_back", "spp")):
    rng = np.random.default_rng(seed)
    ids = [f"im{i:03d}" for i in range(n)]
    quality = rng.uniform(-1, 1, n)
    extra = {k: ((26, C) if k == "spp" else (P, P, C)) for k in kinds}
    cfg = dict(CONFIG)
    if not kinds:
        cfg.pop("pooling_kinds")
    fs = FeatureStore.create(path, ids, [f"/x/{i}.jpg" for i in ids], cfg, LEVELS, A, P,
                             extra=extra or None)
    rows = []
    for i in range(n):
        wide = rng.normal(0, 0.3, (A, P, P, C)) + quality[i] * np.linspace(1, 2, C)
        row = {"index": i, "narrow": wide.mean(axis=(1, 2)).astype(np.float16),
               "wide": wide.astype(np.float16), "height": 64, "width": 64, "scale": 1.0}
        for k in kinds:
            shape = (A, 26, C) if k == "spp" else (A, P, P, C)
            row[k] = (rng.normal(0, 0.3, shape) + quality[i]).astype(np.float16)
        rows.append(row)
    fs.write_rows(rows)
    fs.close()
    # 10-bin distributions centred on a MOS that follows the features' quality
    mos_c = 5.5 + 2.0 * quality
    k = np.arange(1, 11)
    spread = rng.uniform(0.8, 2.0, n)
    dist = np.exp(-0.5 * ((k[None, :] - mos_c[:, None]) / spread[:, None]) ** 2)
    dist /= dist.sum(1, keepdims=True)
    mos = dist @ k
    tags = rng.integers(0, 4, (n, 2))
    split = np.array(["train"] * n, dtype=object)
    split[:6] = "val"
    labels = Labels(ids=ids, mos=mos, distribution=dist, split=split, score_range=(1.0, 10.0),
                    tags=tags, source="synthetic")
    return path, labels
