"""Real ImageNet Inception-v3 (the MLSP paper's backbone, Tables 2-3, Fig. 7) on real photos.

Slow: mlsp extracts 3 LIVE Challenge photos with the real weights (made by
``../shared/tools/inception_v3_weights.py``, cached in ``~/.cache/mlsp-test-weights``; CI
makes them before its slow stage), and an independent computation checks the result:
a plain ``keras.applications.InceptionV3`` on the same 8 crops cut by hand (MLSP sec. 3.1:
87.5% crops at the 4 corners, mirrored on and off), its 11 ``mixed`` outputs averaged by
numpy (narrow, sec. 3.1 / Fig. 2) and shrunk to 5 x 5 by ``cv2.resize(INTER_AREA)`` (wide).

Without the weights file the tests are skipped, except in CI (``CI=true``), where a
missing file is a failure: the slow stage exists to run them.
"""
import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WEIGHTS = Path(os.environ.get("MLSP_IV3_WEIGHTS") or Path.home() / ".cache" / "mlsp-test-weights"
               / "inception_v3_tf2015_notop.h5")
LIVEC = Path(os.environ.get("MLSP_LIVEC") or next(
    (p / "shared" / "data" / "livec" for p in HERE.parents
     if (p / "shared" / "data" / "livec" / "labels.csv").is_file()), HERE / "no-livec"))
IDS = ("100", "101", "102")  # 500 x 500 PNG photos (lossless: every decoder agrees)
LEVELS = [f"mixed{k}" for k in range(11)]
IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights():
    if not WEIGHTS.is_file():
        why = (f"real Inception-v3 weights not found at {WEIGHTS}; make them with "
               f"python ../shared/tools/inception_v3_weights.py --out {WEIGHTS.parent}")
        if IN_CI:
            pytest.fail(why + " (CI makes them before the slow stage: that step failed)")
        pytest.skip(why)
    if not (LIVEC / "images").is_dir():
        (pytest.fail if IN_CI else pytest.skip)(f"LIVE Challenge photos not found at {LIVEC}")
    return WEIGHTS


@pytest.fixture(scope="module")
def extracted(weights, tmp_path_factory):
    """mlsp's own path: 3 photos -> store (narrow + wide 5x5, 8 crops)."""
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.images.sources import ImageItem
    from mlsp.stores.features import FeatureStore

    out = tmp_path_factory.mktemp("iv3") / "f.h5"
    items = [ImageItem(i, str(LIVEC / "images" / f"{i}.png")) for i in IDS]
    summary = extract(items, out, ExtractOptions(backbone="inception_v3", weights=str(weights),
                                                 wide_size=5, workers=1), progress=False)
    assert (summary.done, summary.failed) == (len(IDS), 0)
    with FeatureStore.open(out) as fs:
        return {"levels": fs.levels, "config": fs.config, "ids": fs.ids,
                "narrow": fs.read("narrow", slice(None)).astype(np.float32),
                "wide": fs.read("wide", 0).astype(np.float32),
                "scale": np.asarray(fs.h5["images/scale"][:]) if "images/scale" in fs.h5 else None}


@pytest.fixture(scope="module")
def reference(weights):
    """The independent computation: plain Keras, crops by hand, pooling by numpy / OpenCV."""
    import keras
    from PIL import Image

    base = keras.applications.InceptionV3(include_top=False, weights=str(weights))
    taps = keras.Model(base.input, [base.get_layer(n).output for n in LEVELS])
    narrow, maps0 = [], None
    for i in IDS:
        img = np.asarray(Image.open(LIVEC / "images" / f"{i}.png").convert("RGB"))
        h, w = img.shape[:2]
        ch, cw = int(np.floor(0.875 * h)), int(np.floor(0.875 * w))
        crops = []
        for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)):
            c = img[top:top + ch, left:left + cw]
            crops += [c, c[:, ::-1]]  # index 2 * corner + flip
        x = np.stack(crops).astype(np.float32) / 127.5 - 1.0
        maps = [np.asarray(m, dtype=np.float64) for m in taps.predict(x, verbose=0)]
        narrow.append(np.concatenate([m.mean(axis=(1, 2)) for m in maps], axis=-1))
        if maps0 is None:
            maps0 = [m[0].astype(np.float32) for m in maps]  # photo 0, crop 0, for wide
    return {"narrow": np.stack(narrow), "maps0": maps0,
            "channels": [m.shape[-1] for m in maps0]}


def test_taps_are_the_11_mixed_blocks_with_10048_channels(extracted, reference):
    levels = extracted["levels"]
    assert [lv.name for lv in levels] == LEVELS
    assert [lv.channels for lv in levels] == reference["channels"]
    assert sum(lv.channels for lv in levels) == 10048
    assert extracted["narrow"].shape == (len(IDS), 8, 10048)
    assert extracted["config"]["backbone"] == "inception_v3"
    assert extracted["config"]["weights_sha256"]  # the file's identity is recorded
    if extracted["scale"] is not None:
        assert np.all(extracted["scale"] == 1.0)  # full resolution, no resize


def test_narrow_features_match_plain_keras_pooled_by_hand(extracted, reference):
    got, want = extracted["narrow"], reference["narrow"]
    assert got.shape == want.shape
    # float16 storage: ~3 significant digits
    np.testing.assert_allclose(got, want, rtol=4e-3, atol=2e-3)
    # and they are real features: crops of one photo agree far better than photos do
    within = np.corrcoef(got[0])[np.triu_indices(8, 1)].mean()
    assert within > 0.9
    assert np.abs(got).max() > 0.1  # not an all-zero forward pass


def test_wide_features_match_opencv_area_resize(extracted, reference):
    import cv2

    got = extracted["wide"][0]  # photo 0, crop 0: (5, 5, 10048)
    parts = []
    for m in reference["maps0"]:
        assert m.shape[0] > 5 and m.shape[1] > 5  # both axes shrink: INTER_AREA is the mean
        parts.append(np.concatenate(
            [cv2.resize(np.ascontiguousarray(m[..., c:c + 4]), (5, 5),
                        interpolation=cv2.INTER_AREA).reshape(5, 5, -1)
             for c in range(0, m.shape[-1], 4)], axis=-1))
    want = np.concatenate(parts, axis=-1)
    assert got.shape == want.shape == (5, 5, 10048)
    np.testing.assert_allclose(got, want, rtol=4e-3, atol=2e-3)
