"""Extraction end to end on real pretrained weights, the store layout, bad inputs, resume."""
import math
import shutil

import cv2
import h5py
import keras
import numpy as np
import pytest

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.extract.model import MLSPModel
from mlsp.images.sources import ImageItem, from_folder
from mlsp.stores.features import FeatureStore, StoreError

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])
OPTS = dict(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS)
AVA_IMAGES = "/work/shared/data/ava_format/images"


@pytest.fixture(scope="module")
def model():
    return MLSPModel("mobilenet_v2", 0.35, WEIGHTS)


def _photo(path, h, w, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    sizes = [(120, 160), (97, 131), (150, 90), (64, 300)]
    return [ImageItem(f"img{k}", str(_photo(root / f"img{k}.png", h, w, k)))
            for k, (h, w) in enumerate(sizes)]


def _opencv_area(m, size):
    """INTER_AREA to size x size; one axis at a time when one grows and the other shrinks
    (see mlsp.extract.pooling: box averaging is separable, OpenCV's mixed mode is not area)."""
    h, w, c = m.shape
    if (h >= size) != (w >= size):
        m = cv2.resize(m, (size, h), interpolation=cv2.INTER_AREA).reshape(h, size, c)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, c)


def _independent_features(rgb, wide=5):
    """Plain Keras + OpenCV: taps of keras.applications.MobileNetV2, INTER_AREA, concatenation."""
    base = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                          input_shape=(None, None, 3))
    base.load_weights(WEIGHTS)
    names = ["expanded_conv_project_BN"] + [
        f"block_{k}_add" if k in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15) else f"block_{k}_project_BN"
        for k in range(1, 17)] + ["out_relu"]
    taps = keras.Model(base.input, [base.get_layer(n).output for n in names])
    h, w = rgb.shape[:2]
    ch, cw = math.floor(0.875 * h), math.floor(0.875 * w)
    crop = rgb[h - ch:, :cw][:, ::-1]  # augmentation 5: bottom-left, mirrored
    x = keras.applications.mobilenet_v2.preprocess_input(crop[None].astype(np.float32))
    maps = [keras.ops.convert_to_numpy(m)[0] for m in taps(x)]
    narrow = np.concatenate([m.mean(axis=(0, 1)) for m in maps])
    wides = []
    for m in maps:
        wides.append(np.concatenate([_opencv_area(m[:, :, c:c + 4], wide)
                                     for c in range(0, m.shape[2], 4)], axis=-1))
    return narrow, np.concatenate(wides, axis=-1)


def test_real_features_match_an_independent_computation(tmp_path, photos, model):
    out = tmp_path / "f.h5"
    extract(photos, out, ExtractOptions(**OPTS), model=model, progress=False)
    with FeatureStore.open(out) as fs:
        narrow, wide = fs.dataset("narrow"), fs.dataset("wide")
        for k in (0, 3):
            rgb = cv2.cvtColor(cv2.imread(photos[k].path), cv2.COLOR_BGR2RGB)
            ref_n, ref_w = _independent_features(rgb)
            np.testing.assert_allclose(narrow[k, 5].astype(np.float32), ref_n, rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(wide[k, 5].astype(np.float32), ref_w, rtol=2e-3, atol=3e-3)
            # narrow is the exact mean of wide (area pooling keeps every cell)
            np.testing.assert_allclose(wide[k, 5].astype(np.float32).mean(axis=(0, 1)),
                                       narrow[k, 5].astype(np.float32), rtol=1e-2, atol=2e-3)
        # augmentations differ, flips of a symmetric image would not
        assert not np.allclose(narrow[0, 0], narrow[0, 1])


def test_store_layout_is_the_public_format(tmp_path, photos, model):
    out = tmp_path / "f.h5"
    extract(photos, out, ExtractOptions(**OPTS), model=model, progress=False)
    with h5py.File(out, "r") as h5:  # plain h5py, as a user would
        a = h5.attrs
        assert a["format"] == "mlsp-features" and a["format_version"] == 1
        assert a["backbone"] == "mobilenet_v2" and a["alpha"] == 0.35
        assert a["weights_sha256"] == "04af0032331eca800a501cbd14b1861ef1d07bfa5728325084bbe295e7ffaecb"
        assert a["crop_fraction"] == 0.875 and a["pool_narrow"] == 1 and a["pool_wide"] == 5
        assert list(a["augmentations"])[0] == "top-left" and len(a["augmentations"]) == 8
        for key in ("preprocessing", "mlsp_version", "keras_version", "backend", "backend_version"):
            assert a[key]
        assert [s.decode() for s in h5["images/id"][...]] == ["img0", "img1", "img2", "img3"]
        assert h5["images/path"][0].decode().endswith("img0.png")
        assert list(h5["images/height"][...]) == [120, 97, 150, 64]
        assert list(h5["images/width"][...]) == [160, 131, 90, 300]
        assert list(h5["images/status"][...]) == [1, 1, 1, 1]
        assert list(h5["images/scale"][...]) == [1, 1, 1, 1]  # full resolution, MobileNet needs 32 px
        names = [s.decode() for s in h5["levels/name"][...]]
        channels, offsets = h5["levels/channels"][...], h5["levels/offset"][...]
        assert len(names) == 18 and channels.sum() == 1824
        np.testing.assert_array_equal(offsets, np.concatenate([[0], np.cumsum(channels)[:-1]]))
        n, w = h5["features/narrow"], h5["features/wide"]
        assert n.shape == (4, 8, 1824) and n.dtype == np.float16 and n.chunks == (1, 1, 1824)
        assert w.shape == (4, 8, 5, 5, 1824) and w.dtype == np.float16
        assert w.chunks == (1, 1, 5, 5, 1824)


def test_odd_and_broken_inputs_are_recorded_not_fatal(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(f"{AVA_IMAGES}/953841.jpg", src / "sliver.jpg")  # RGBA PNG named .jpg, 280x37
    _photo(src / "good.png", 100, 120, 1)
    ok = cv2.imencode(".jpg", np.full((90, 90, 3), 128, np.uint8))[1].tobytes()
    (src / "truncated.jpg").write_bytes(ok[: len(ok) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes").write_text("not an image")  # no extension: judged by content
    (src / "notes.xmp").write_text("<x/>")  # a sidecar: skipped, not a failed image
    cv2.imwrite(str(src / "tiny.png"), np.zeros((3, 3, 3), np.uint8))
    cv2.imwrite(str(src / "gray.png"), np.full((80, 100), 200, np.uint8))
    items = from_folder(src)
    summary = extract(items, tmp_path / "f.h5", ExtractOptions(**OPTS), model=model, progress=False)
    with FeatureStore.open(tmp_path / "f.h5") as fs:
        status = dict(zip(fs.ids, fs.status))
        errors = dict(zip(fs.ids, fs.errors))
        assert status == {"empty": -1, "good": 1, "gray": 1, "notes": -1, "sliver": 1,
                          "tiny": -1, "truncated": -1}
        assert "empty" in errors["empty"] and "truncat" in errors["truncated"]
        assert "too small" in errors["tiny"] and errors["good"] == ""
        assert "not a recognised image" in errors["notes"]
        k = fs.ids.index("sliver")
        assert fs.h5["images/height"][k] == 37 and fs.h5["images/width"][k] == 280
    assert summary.failed_now == 4 and summary.done == 3


def test_inception_minimum_size_rule(tmp_path):
    """A 280x37 sliver is upscaled so its crops reach Inception's 75 px (recorded)."""
    m = MLSPModel("inception_v3", 1.0, "none", wide_size=0)
    items = [ImageItem("sliver", f"{AVA_IMAGES}/953841.jpg")]
    s = extract(items, tmp_path / "f.h5", ExtractOptions(backbone="inception_v3", weights="none",
                                                         wide_size=0), model=m, progress=False)
    assert s.done == 1
    with FeatureStore.open(tmp_path / "f.h5") as fs:
        assert fs.h5["images/scale"][0] == pytest.approx(86 / 37)
        assert fs.dataset("narrow").shape == (1, 8, 10048) and not fs.has("wide")


def test_inception_v3_memory_rule_is_calibrated_to_its_measured_peak():
    """Inception-v3's activation estimate: the summed layer outputs (414 floats a pixel)
    scaled by its measured peak share, so it stays twice above the peak measured at 12 and
    24 MP with real weights (TensorFlow 64-72 bytes a pixel, JAX 106-151:
    backbones.PEAK_MEASURED) and above the liveness bound of its graph (32 floats), while a
    12 MP photo fits the budget of a 24 GB machine whole (the unscaled sum shrank it to 3.8
    MP)."""
    from mlsp.extract.backbones import PEAK_MEASURED
    from mlsp.extract.worker import activation_bytes_per_pixel

    per_pixel = activation_bytes_per_pixel(MLSPModel("inception_v3", 1.0, "none", wide_size=0))
    summed = 413.875 * 4  # floats a pixel over every layer, x 4 bytes
    lo, hi = PEAK_MEASURED["inception_v3"]
    assert per_pixel == pytest.approx(0.2 * summed)
    assert per_pixel > 2 * hi * summed and per_pixel > 32 * 4
    assert 12e6 * per_pixel < 24 * 1024 ** 3 / 4  # the default budget: a quarter of 24 GB


def test_resume_continues_and_equals_an_uninterrupted_run(tmp_path, photos, model):
    opts = ExtractOptions(**OPTS)
    full = tmp_path / "full.h5"
    extract(photos, full, opts, model=model, progress=False)
    part = tmp_path / "part.h5"
    first = extract(photos, part, opts, model=model, progress=False, limit=2)
    assert (first.done, first.pending) == (2, 2)
    second = extract(photos, part, opts, model=model, progress=False)
    assert second.processed_now == 2 and second.done == 4  # finished ones not recomputed
    with FeatureStore.open(full) as a, FeatureStore.open(part) as b:
        np.testing.assert_array_equal(a.dataset("narrow")[...], b.dataset("narrow")[...])
        np.testing.assert_array_equal(a.dataset("wide")[...], b.dataset("wide")[...])
    again = extract(photos, part, opts, model=model, progress=False)
    assert again.processed_now == 0


def test_a_different_configuration_or_list_is_refused(tmp_path, photos, model):
    out = tmp_path / "f.h5"
    extract(photos, out, ExtractOptions(**OPTS), model=model, progress=False, limit=1)
    with pytest.raises(StoreError, match="different configuration.*max_side"):
        extract(photos, out, ExtractOptions(**OPTS, max_side=100), model=model, progress=False)
    with pytest.raises(StoreError, match="different image list"):
        extract(photos[:3], out, ExtractOptions(**OPTS), model=model, progress=False)
    s = extract(photos[:3], out, ExtractOptions(**OPTS), model=model, progress=False, overwrite=True)
    assert s.images == 3


def test_level_selection(tmp_path, photos, model):
    out = tmp_path / "f.h5"
    extract(photos[:1], out, ExtractOptions(**OPTS, wide_size=0), model=model, progress=False)
    with FeatureStore.open(out) as fs:
        levels, idx = fs.select_levels("-5:")
        assert [lv.name for lv in levels][-1] == "out_relu" and len(levels) == 5
        assert idx.size == 56 + 56 + 56 + 112 + 1280 and idx[-1] == 1823
        levels, idx = fs.select_levels("0,expanded_conv_project_BN,1")
        assert len(levels) == 2 and list(idx) == list(range(16))
        with pytest.raises(StoreError, match="no level"):
            fs.select_levels("mixed_99")


def test_meaningless_options_are_refused_up_front(tmp_path):
    from mlsp.extract.extractor import ExtractOptions, check_max_side

    for kw, msg in (({"wide_size": -1}, "wide_size must be a whole number >= 0"),
                    ({"workers": -1}, "workers must be"),
                    ({"crop_fraction": 0}, "crop_fraction must be in"),
                    ({"max_side": 2.5}, "max_side must be a whole number")):
        with pytest.raises(ValueError, match=msg):
            ExtractOptions(**kw)
    # a cap below what the backbone needs would be undone by the minimum-size rule
    with pytest.raises(ValueError, match="max_side 80 is too small.*must be >= 86"):
        check_max_side(ExtractOptions(max_side=80), 75)
    check_max_side(ExtractOptions(max_side=86), 75)  # floor(0.875 * 86) = 75
    check_max_side(ExtractOptions(max_side=75, augmentation="whole"), 75)
