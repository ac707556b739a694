"""The Ray engine writes the local engine's store: same rows, statuses, errors, features."""
import time

import cv2
import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # starts Ray and TensorFlow in actors: 80-200 s

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from mlsp.data import BUNDLED_WEIGHTS  # noqa: E402
from mlsp.extract.extractor import ExtractOptions, extract  # noqa: E402
from mlsp.extract.ray_engine import extract_with_ray  # noqa: E402
from mlsp.images.sources import ImageItem  # noqa: E402
from mlsp.stores.features import FeatureStore  # noqa: E402

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])


def _opts():
    return ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS, flush_every=2)


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray instance for the whole file, shut down at the end."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 ** 2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_photos")
    sizes = [(120, 160), (97, 131), (150, 90), (64, 300), (80, 80), (111, 73)]
    out = []
    for k, (h, w) in enumerate(sizes):
        rng = np.random.default_rng(k)
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2)
        path = root / f"img{k}.png"
        cv2.imwrite(str(path), img)
        out.append(ImageItem(f"img{k}", str(path)))
    bad = root / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out.insert(3, ImageItem("corrupt", str(bad)))
    return out


@pytest.fixture(scope="module")
def local_store(items, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray_local") / "local.h5"
    extract(items, out, _opts(), progress=False)
    return out


def _read(path):
    with h5py.File(path, "r") as h5:
        data = {name: h5[f"images/{name}"][...]
                for name in ("id", "path", "status", "error", "height", "width", "scale")}
        data["features"] = {k: h5[f"features/{k}"][...] for k in h5["features"]}
        data["attrs"] = dict(h5.attrs)
    return data


def _same_store(a, b, rows=None):
    a, b = _read(a), _read(b)
    rows = slice(None) if rows is None else rows
    for name in ("id", "path"):
        assert list(a[name]) == list(b[name])
    for name in ("status", "error", "height", "width", "scale"):
        np.testing.assert_array_equal(a[name][rows], b[name][rows], err_msg=name)
    assert sorted(a["features"]) == sorted(b["features"])
    done = np.flatnonzero(a["status"] == 1)
    done = done if rows == slice(None) else np.intersect1d(done, np.arange(len(a["status"]))[rows])
    for kind in a["features"]:
        assert a["features"][kind].shape == b["features"][kind].shape
        assert a["features"][kind].dtype == b["features"][kind].dtype == np.float16
        np.testing.assert_allclose(a["features"][kind][done].astype(np.float32),
                                   b["features"][kind][done].astype(np.float32),
                                   atol=1e-3, rtol=1e-3, err_msg=kind)
    skip = {"created"}
    assert {k: str(v) for k, v in a["attrs"].items() if k not in skip} == \
        {k: str(v) for k, v in b["attrs"].items() if k not in skip}


def test_ray_store_equals_local_store(local_ray, items, local_store, tmp_path):
    out = tmp_path / "ray.h5"
    t0 = time.monotonic()
    summary = extract_with_ray(items, out, _opts(), num_actors=2, batch_images=2,
                               progress=False)
    assert summary.images == 7 and summary.done == 6 and summary.failed == 1
    assert summary.pending == 0 and summary.processed_now == 7 and summary.failed_now == 1
    assert [f["id"] for f in summary.failures] == ["corrupt"]
    _same_store(out, local_store)
    with FeatureStore.open(out) as fs:
        assert fs.status[3] == -1 and fs.errors[3]
        assert all(e == "" for k, e in enumerate(fs.errors) if k != 3)
    assert ray.is_initialized()  # an instance it did not start is left running
    print(f"ray extraction of 7 images: {time.monotonic() - t0:.1f} s")


def test_ray_resumes_after_limit(local_ray, items, local_store, tmp_path):
    out = tmp_path / "ray.h5"
    first = extract_with_ray(items, out, _opts(), num_actors=1, batch_images=3, limit=3,
                             progress=False)
    assert first.processed_now == 3 and first.pending == 4
    with FeatureStore.open(out) as fs:
        status = fs.status
    assert list(status[:3]) == [1, 1, 1] and list(status[3:]) == [0] * 4
    _same_store(out, local_store, rows=slice(0, 3))
    second = extract_with_ray(items, out, _opts(), num_actors=1, batch_images=3, progress=False)
    assert second.processed_now == 4 and second.failed_now == 1 and second.pending == 0
    _same_store(out, local_store)
    third = extract_with_ray(items, out, _opts(), num_actors=1, progress=False)
    assert third.processed_now == 0 and third.done == 6  # nothing left: Ray not even used


def test_ray_refuses_another_configuration(local_ray, items, local_store, tmp_path):
    from mlsp.stores.features import StoreError

    out = tmp_path / "ray.h5"
    out.write_bytes(local_store.read_bytes())
    with pytest.raises(StoreError, match="different configuration"):
        extract_with_ray(items, out, ExtractOptions(backbone="mobilenet_v2", alpha=0.35,
                                                    weights=WEIGHTS, wide_size=3),
                         progress=False)
    # the local engine's finished store is "resumed" by the Ray engine: nothing to do
    summary = extract_with_ray(items, out, _opts(), progress=False)
    assert summary.processed_now == 0 and summary.done == 6
