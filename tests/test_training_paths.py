"""Training paths on a real (tiny) store: Pool-3FC on wide features streamed from the file
with bounded memory, distribution output with the EMD loss, ``mlsp predict`` with
distributions, the model/store mismatch message, Multi-3FC loading in safe mode."""
import csv
import json

import keras
import numpy as np
import pytest

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.stores.reader import StoreFeatures
from mlsp.inference.model_format import read_model as load_trained
from mlsp.training.trainer import train_head

WEIGHTS = BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]
N = 12


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """12 synthetic photos -> MobileNetV2-0.35 (bundled weights) -> narrow + 5x5 wide store."""
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.images.sources import from_list
    from mlsp.images.synthetic import make_synthetic_set
    from mlsp.labels import load_labels

    tmp = tmp_path_factory.mktemp("real")
    labels_csv = make_synthetic_set(tmp / "photos", n=N, seed=0, min_side=64, max_side=112)
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=str(WEIGHTS),
                          wide_size=5, workers=1)
    summary = extract(from_list(labels_csv), tmp / "f.h5", opts, progress=False)
    assert summary.done == N
    return tmp, tmp / "f.h5", load_labels(labels_csv)


def test_pool_3fc_streams_wide_features_with_bounded_memory(real):
    tmp, store, labels = real
    limit = 1e6  # 1 MB; the wide features are 12 x 8 x 5 x 5 x 1,824 x 2 bytes = 8.8 MB
    wide = StoreFeatures(store, kind="wide", memory_limit=limit, progress=False)
    assert not wide.in_memory and wide.data is None  # never loads the whole dataset
    assert wide.n_images * wide.n_aug * np.prod(wide.item_shape) * 2 > limit
    wide.close()
    res = train_head(store, labels, head="pool_3fc", epochs=2, batch_size=2, width=16,
                     val_fraction=0.25, memory_limit=limit, workers=2, out_dir=tmp / "pool",
                     progress=False, plots=False, baseline=False)
    for name in ("model.keras", "model.json", "metrics.json", "history.csv", "predictions.csv"):
        assert (res.out_dir / name).is_file(), name
    side = res.sidecar
    assert side["pooling"] == "wide" and side["wide_size"] == 5 and side["channels"] == 1824
    assert side["train"]["feed"] == "store" and side["train"]["augment"] == "all"  # auto, n=9
    assert np.isfinite(res.predictions["mos_pred"]).all() and len(res.history["loss"]) == 2
    # bounded on every backend: at most the queue (10) + 2 workers + 4 in the consumer's
    # hands (back-pressure, FeedStats.max_live), below an epoch's 36 batches. Without it
    # JAX's asynchronous dispatch kept 22-29 alive here.
    steps = side["train"]["n_train"] * 8 // 2
    peak = max(res.history["peak_batches"])
    assert 1 <= peak <= 10 + 2 + 4 < steps
    assert all(s > 0 for s in res.history["feed_s"]) and "feed_share" in res.history
    hist = list(csv.DictReader(open(res.out_dir / "history.csv")))
    assert {"feed_s", "feed_share", "train_s", "peak_batches"} <= set(hist[0])


def test_narrow_features_under_the_limit_are_fed_from_memory(real):
    tmp, store, labels = real
    f = StoreFeatures(store, memory_limit=1e6, progress=False)  # narrow: 350 KB
    assert f.in_memory and f.data.shape == (N, 8, 1824)
    res = train_head(store, labels, head="single_1fc", epochs=1, batch_size=16,
                     val_fraction=0.25, memory_limit=1e6, out_dir=tmp / "mem", progress=False,
                     plots=False, baseline=False)
    assert res.sidecar["train"]["feed"] == "memory"


@pytest.fixture(scope="module")
def dist_model(real):
    tmp, store, labels = real
    assert labels.distribution is not None and labels.distribution.shape == (N, 10)
    res = train_head(store, labels, head="single_3fc", output="distribution", epochs=2,
                     batch_size=16, lr=1e-3, width=16, val_fraction=0.25, out_dir=tmp / "dist",
                     progress=False, plots=False, baseline=False)
    return res


def test_distribution_output_with_emd_loss(dist_model):
    res = dist_model
    side = res.sidecar
    assert side["output"] == "distribution" and side["n_bins"] == 10
    np.testing.assert_allclose(side["bin_scores"], np.arange(1, 11))
    dist, mos = res.predictions["dist_pred"], res.predictions["mos_pred"]
    assert dist.shape == (N, 10) and (dist >= 0).all()
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(mos, dist @ np.arange(1, 11), rtol=1e-9)  # MOS = expectation
    assert "emd" in res.metrics["val"] and np.isfinite(res.metrics["val"]["emd"])
    assert res.history["loss"][0] > 0  # the EMD loss trained
    rows = list(csv.DictReader(open(res.out_dir / "predictions.csv")))
    assert [f"p{k}" for k in range(1, 11)] == list(rows[0])[4:]


def test_cli_predict_outputs_the_distribution(dist_model, real, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict

    _, store, _ = real
    r = CliRunner().invoke(predict, [str(dist_model.out_dir), "syn00000", "syn00003",
                                     "--features", str(store), "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert sorted(r_["id"] for r_ in rows) == ["syn00000", "syn00003"]  # best first
    assert float(rows[0]["score"]) >= float(rows[1]["score"]) and rows[0]["rank"] == "1"
    for row in rows:
        p = np.array([float(row[f"p{k}"]) for k in range(1, 11)])
        assert p.sum() == pytest.approx(1, abs=1e-3)
        assert float(row["score"]) == pytest.approx(p @ np.arange(1, 11), abs=5e-3)
    r = CliRunner().invoke(predict, [str(dist_model.out_dir), "--features", str(store),
                                     "--format", "json", "-o", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    js = json.loads((tmp_path / "p.json").read_text())
    assert len(js) == N and all(len(x["distribution"]) == 10 for x in js)
    pred = dict(zip(dist_model.predictions["ids"], dist_model.predictions["mos_pred"]))
    assert all(x["score"] == pytest.approx(pred[x["id"]], rel=1e-5) for x in js)


def test_model_store_mismatch_message_from_the_cli(dist_model, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict
    from mlsp.training.commands import evaluate

    from test_training import make_store

    other, ids = make_store(tmp_path / "toy.h5")  # another backbone, weights, levels
    r = CliRunner().invoke(predict, [str(dist_model.out_dir), "--features", str(other)])
    assert r.exit_code == 1
    msg = r.output.strip()
    assert msg.startswith("Error: ") and "\n" not in msg
    assert "toy.h5: not compatible with model 'dist'" in msg and "model was trained on" in msg
    assert "more)" in msg  # backbone, weights, levels ... all differ: counted, not listed
    lab = tmp_path / "l.csv"
    lab.write_text("id,mos\n" + "".join(f"{i},5\n" for i in ids))
    r = CliRunner().invoke(evaluate, [str(dist_model.out_dir), str(other), "--labels", str(lab)])
    assert r.exit_code == 1 and "not compatible with model" in r.output


def test_pool_model_on_a_store_without_wide_features(real, tmp_path):
    from mlsp.stores.features import StoreError
    from mlsp.inference.model_format import check_compatible

    tmp, store, _ = real
    _, side = load_trained(tmp / "pool")
    with pytest.raises(StoreError, match="store has no wide features, model needs them"):
        check_compatible(side, _narrow_only_copy(store, tmp_path / "narrow.h5"))


def _narrow_only_copy(src, dst):
    import h5py

    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        for name in ("images", "levels"):
            a.copy(name, b)
        b.create_group("features")
        a.copy("features/narrow", b["features"])
    return dst


def test_multi_3fc_loads_in_safe_mode(real):
    tmp, store, labels = real
    res = train_head(store, labels, head="multi_3fc", levels="0:3", epochs=1, batch_size=16,
                     val_fraction=0.25, out_dir=tmp / "multi", progress=False, plots=False,
                     baseline=False)
    # safe_mode=True refuses Lambda layers (code from the file): none are needed
    m = keras.saving.load_model(res.out_dir / "model.keras", compile=False, safe_mode=True)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in m.layers)
    model, _ = load_trained(res.out_dir)
    x = np.random.default_rng(0).normal(size=(3, res.sidecar["channels"])).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(m.predict_on_batch(x)),
                               keras.ops.convert_to_numpy(res.model.predict_on_batch(x)),
                               rtol=1e-5, atol=1e-6)


def test_models_on_bundled_weights_find_them_again(tmp_path):
    from mlsp.extract.backbones import sha256_file
    from mlsp.inference.scoring import find_weights

    name = "bundled:" + WEIGHTS.name
    sha = sha256_file(WEIGHTS)
    recorded = {"backbone": "mobilenet_v2", "alpha": 0.35}  # as a sidecar records them
    assert find_weights({"weights": name, "weights_sha256": sha, **recorded}).path == str(WEIGHTS)
    # a different file under the same name (another release): looked for by name, by hash
    with pytest.raises(FileNotFoundError, match=WEIGHTS.name.replace(".", r"\.")):
        find_weights({"weights": name, "weights_sha256": "0" * 64, **recorded},
                     model_dir=tmp_path)
    other = tmp_path / WEIGHTS.name
    other.write_bytes(WEIGHTS.read_bytes())
    assert find_weights({"weights": name, "weights_sha256": sha, **recorded},
                        tmp_path).path == str(other)


def test_foreback_model_scores_photos_as_it_scores_its_store(tmp_path):
    """A composite feature kind (wide_foreback: ForePool and BackPool side by side) is
    rebuilt the same way when photos are scored end to end."""
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.images.sources import from_list
    from mlsp.images.synthetic import make_synthetic_set
    from mlsp.labels import load_labels
    from mlsp.inference.trained_head import predict_images, predict_store

    labels_csv = make_synthetic_set(tmp_path / "photos", n=8, seed=1, min_side=64, max_side=96)
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=str(WEIGHTS),
                          wide_size=3, workers=1, pooling=("area", "fore", "back"))
    store = tmp_path / "fb.h5"
    assert extract(from_list(labels_csv), store, opts, progress=False).done == 8
    res = train_head(store, load_labels(labels_csv), head="mnet", features="wide_foreback",
                     epochs=1, batch_size=8, width=16, val_fraction=0.25, levels="-2:",
                     out_dir=tmp_path / "m", progress=False, plots=False, baseline=False)
    assert res.sidecar["pooling"] == "wide_foreback"
    from_store = {r["id"]: r["score"] for r in predict_store(res.out_dir, store, progress=False)}
    photos = sorted((tmp_path / "photos").glob("*.jpg"))[:3]
    rows = predict_images(res.out_dir, [str(p) for p in photos], weights=str(WEIGHTS),
                          progress=False)
    assert all(r.get("error") is None for r in rows), rows
    for r in rows:
        assert r["score"] == pytest.approx(from_store[r["id"]], abs=1e-4)
    keras.backend.clear_session()
