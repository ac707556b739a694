"""Both engines run the one per-image worker: a Ray actor's batch (called here without
Ray, as Ray Data would call it) equals the local engine's rows, failures included."""
import cv2
import keras
import numpy as np

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.extract.ray_engine import MLSPActor, _weights_checksum
from mlsp.images.sources import ImageItem
from mlsp.stores.features import FeatureStore

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])


def test_ray_actor_batch_equals_local_rows(tmp_path):
    rng = np.random.default_rng(5)
    items = []
    for k, (h, w) in enumerate([(90, 120), (130, 70)]):
        p = tmp_path / f"i{k}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        items.append(ImageItem(f"i{k}", str(p)))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    items.append(ImageItem("bad", str(tmp_path / "bad.jpg")))
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS)
    summary = extract(items, tmp_path / "s.h5", opts, progress=False)
    assert (summary.done, summary.failed) == (2, 1)
    assert summary.failures_csv and "bad" in open(summary.failures_csv).read()  # library writes it

    from mlsp.extract.model import MLSPModel

    m = MLSPModel("mobilenet_v2", 0.35, WEIGHTS)
    expected = {"backend": keras.backend.backend(), "sha256": m.weights.sha256,
                "levels": [lv.name for lv in m.levels], "channels": m.channels,
                "checksum": _weights_checksum(m)}
    out = MLSPActor(opts, m.weights, expected)({"index": np.arange(3),
                                                "path": [it.path for it in items]})
    with FeatureStore.open(tmp_path / "s.h5") as fs:
        assert out["ok"].tolist() == [True, True, False]
        assert out["error"][2] == fs.errors[2]
        np.testing.assert_array_equal(out["narrow"][:2], fs.dataset("narrow")[0:2])
        np.testing.assert_array_equal(out["wide"][:2], fs.dataset("wide")[0:2])
        np.testing.assert_array_equal(out["height"], fs.h5["images/height"][...])
