"""Extra pooling kinds (fore, back, spp) and crops+grid in the extractor and the store."""
import math

import cv2
import h5py
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mlsp.cli import main
from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.augment import corner_grid, crops_and_flips
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.extract.model import MLSPModel, normalize_pooling
from mlsp.extract.pooling import area_weights_numpy, window_membership_numpy
from mlsp.images.sources import ImageItem
from mlsp.stores.features import FeatureStore, Level, StoreError, config_mismatch

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])
ALL = ("area", "fore", "back", "spp")
OPTS = dict(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS, pooling=ALL,
            augmentation="crops+grid")
LEVEL = "block_12_add"  # stride 16: a 105x140 crop gives a 6x8 map (windows k = 2 and 4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    items = []
    for k, (h, w) in enumerate([(120, 160), (97, 131)]):
        rng = np.random.default_rng(k)
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2)
        img[..., 0] //= 2  # a colour cast: Corner Grid changes the corners
        cv2.imwrite(str(root / f"img{k}.png"), img)
        items.append(ImageItem(f"img{k}", str(root / f"img{k}.png")))
    model = MLSPModel("mobilenet_v2", 0.35, WEIGHTS, pooling=ALL)
    out = root / "f.h5"
    extract(items, out, ExtractOptions(**OPTS), model=model, progress=False)
    return out, items, model


def _rgb(item):
    return cv2.cvtColor(cv2.imread(item.path), cv2.COLOR_BGR2RGB)


def test_datasets_and_attributes(store):
    out, _, model = store
    c = model.channels
    with h5py.File(out, "r") as h5:
        f = h5["features"]
        assert f["narrow"].shape == (2, 16, c) and f["wide"].shape == (2, 16, 5, 5, c)
        for kind in ("wide_fore", "wide_back"):
            assert f[kind].shape == (2, 16, 5, 5, c) and f[kind].dtype == np.float16
            assert f[kind].chunks == (1, 1, 5, 5, c)
        assert f["spp"].shape == (2, 16, 26, c) and f["spp"].chunks == (1, 1, 26, c)
        assert list(h5.attrs["pooling_kinds"]) == list(ALL)
        names = list(h5.attrs["augmentations"])
        assert names[8:10] == ["top-left+grid", "top-left+flip+grid"] and len(names) == 16
        assert list(h5["images/status"][...]) == [1, 1]
        for kind in ("wide_fore", "wide_back", "spp"):
            assert np.isfinite(f[kind][...].astype(np.float32)).all()


def test_forepool_matches_an_independent_computation(store):
    """Taps of keras.applications.MobileNetV2, then Eq. 1 / Eq. 2 window by window in numpy."""
    out, items, _ = store
    base = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                          input_shape=(None, None, 3))
    base.load_weights(WEIGHTS)
    taps = keras.Model(base.input, [base.get_layer(LEVEL).output, base.get_layer("out_relu").output])
    rgb = _rgb(items[0])
    h, w = rgb.shape[:2]
    ch, cw = math.floor(0.875 * h), math.floor(0.875 * w)
    crop = rgb[h - ch:, :cw][:, ::-1]  # augmentation 5: bottom-left, mirrored
    x = keras.applications.mobilenet_v2.preprocess_input(crop[None].astype(np.float32))
    m, last = (keras.ops.convert_to_numpy(t)[0].astype(np.float64) for t in taps(x))
    assert m.shape[:2] == (6, 8)
    my, mx = window_membership_numpy(6, 5), window_membership_numpy(8, 5)
    fore, back = np.zeros((5, 5, m.shape[2])), np.zeros((5, 5, m.shape[2]))
    for i in range(5):
        for j in range(5):
            win = m[my[i] > 0][:, mx[j] > 0]  # (k_h, k_w, C)
            t = np.exp(win - win.max(axis=(0, 1)))
            t /= t.sum(axis=(0, 1))
            fore[i, j] = (t * win).sum(axis=(0, 1))
            back[i, j] = ((1 - t) * win).sum(axis=(0, 1))
    spp_last = np.concatenate([np.einsum("ih,hwc,jw->ijc", area_weights_numpy(last.shape[0], v),
                                         last, area_weights_numpy(last.shape[1], v)).reshape(v * v, -1)
                               for v in (1, 3, 4)])
    with FeatureStore.open(out) as fs:
        lv = {lv.name: lv for lv in fs.levels}
        sl = slice(lv[LEVEL].offset, lv[LEVEL].offset + lv[LEVEL].channels)
        got = fs.dataset("wide_fore")[0, 5][..., sl].astype(np.float32)
        np.testing.assert_allclose(got, fore, rtol=3e-3, atol=3e-3)
        got = fs.dataset("wide_back")[0, 5][..., sl].astype(np.float32)
        np.testing.assert_allclose(got, back, rtol=3e-3, atol=2e-2)
        last_sl = slice(lv["out_relu"].offset, lv["out_relu"].offset + lv["out_relu"].channels)
        got = fs.dataset("spp")[0, 5][:, last_sl].astype(np.float32)
        np.testing.assert_allclose(got, spp_last, rtol=3e-3, atol=3e-3)


def test_grid_rows_are_the_features_of_corner_grid_crops(store):
    out, items, model = store
    crops = crops_and_flips(_rgb(items[1]))
    a = 3  # top-right+flip; stored at 8 + 3 as "top-right+flip+grid"
    ref = model(corner_grid(crops[a])[None])
    with FeatureStore.open(out) as fs:
        assert fs.augmentations[8 + a] == "top-right+flip+grid"
        for kind in ("narrow", "wide", "wide_fore", "wide_back", "spp"):
            ds = fs.dataset(kind)
            grid, plain = ds[1, 8 + a].astype(np.float32), ds[1, a].astype(np.float32)
            scale = np.abs(ref[kind][0]).max()
            np.testing.assert_allclose(grid, ref[kind][0], rtol=3e-3, atol=3e-3 * scale)
            assert not np.allclose(grid, plain, rtol=1e-2, atol=1e-2)


def test_pooling_kinds_identity_and_options(tmp_path, store):
    _, items, model = store
    old = {"backbone": "b", "alpha": 1.0}  # a store made before pooling_kinds existed
    assert config_mismatch(old, {**old, "pooling_kinds": ["area"]}) == []
    assert config_mismatch({**old, "pooling_kinds": None}, {**old, "pooling_kinds": ["area"]}) == []
    assert "pooling_kinds" in config_mismatch(old, {**old, "pooling_kinds": ["area", "fore"]})[0]
    assert normalize_pooling("spp,fore") == ("area", "fore", "spp")
    with pytest.raises(ValueError, match="unknown pooling"):
        normalize_pooling(["max"])
    with pytest.raises(ValueError, match="wide size"):
        MLSPModel("mobilenet_v2", 0.35, WEIGHTS, wide_size=0, pooling=("fore",))
    # a store made with other kinds (here: edited to say so) is refused, naming them
    copy = tmp_path / "other.h5"
    copy.write_bytes(store[0].read_bytes())
    with h5py.File(copy, "r+") as h5:
        h5.attrs["pooling_kinds"] = ["area", "fore"]
    with pytest.raises(StoreError, match="pooling_kinds"):
        extract(items, copy, ExtractOptions(**OPTS), model=model, progress=False)
    with pytest.raises(ValueError, match="model pools"):
        extract(items, tmp_path / "x.h5", ExtractOptions(**{**OPTS, "pooling": ("area",)}),
                model=model, progress=False)
    result = CliRunner().invoke(main, ["extract", items[0].path, "-o", str(tmp_path / "c.h5"),
                                       "--pooling", "area,median"])
    assert result.exit_code != 0 and "unknown pooling" in result.output


def test_store_extra_kinds_and_write_rows(tmp_path):
    levels = [Level("a", 2, 0), Level("b", 1, 2)]
    fs = FeatureStore.create(tmp_path / "s.h5", ["x", "y"], ["/x", "/y"], {"backbone": "t"},
                             levels, 3, 2, extra={"spp": (26, 3), "wide_fore": (2, 2, 3)})
    assert fs.dataset("spp").shape == (2, 3, 26, 3) and fs.dataset("wide_fore").chunks == (1, 1, 2, 2, 3)
    row = {"index": 1, "height": 5, "width": 6, "scale": 1.0,
           "narrow": np.ones((3, 3), np.float16), "wide": np.ones((3, 2, 2, 3), np.float16),
           "wide_fore": np.full((3, 2, 2, 3), 2, np.float16), "spp": np.full((3, 26, 3), 3, np.float16)}
    with pytest.raises(StoreError, match="lacks features \\['spp'\\]"):
        fs.write_rows([{**row, "spp": None}])
    assert list(fs.status) == [0, 0]
    fs.write_rows([{**row, "wide_back": np.zeros((3, 2, 2, 3))}])  # kinds it lacks: ignored
    assert list(fs.status) == [0, 1] and float(fs.dataset("spp")[1].max()) == 3.0
    fs.close()
    empty = FeatureStore.create(tmp_path / "e.h5", [], [], {}, levels, 3, 0, extra={"spp": (26, 3)})
    assert empty.dataset("spp").shape == (0, 3, 26, 3)
    empty.close()
