"""The public Python API on a real tiny store (12 generated photos, bundled MobileNetV2-0.35):
extract -> train in memory -> save / load -> predict / predict_store / evaluate; plus the
model-file and store-compatibility fixes of issue 9 item 9 and the per-epoch line."""
import re
import subprocess
import sys

import numpy as np
import pytest

import mlsp
from mlsp.errors import ModelFileError, OptionError
from mlsp.images.sources import ImageItem, from_list

N = 12


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mlsp.images.synthetic import make_synthetic_set

    tmp = tmp_path_factory.mktemp("api")
    labels = make_synthetic_set(tmp / "photos", n=N, seed=0, min_side=64, max_side=112)
    store = mlsp.extract(labels, tmp / "f.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled", workers=1)
    head = mlsp.train(store, labels, head="single-3fc", epochs=2, batch_size=16,
                      val_fraction=0.25, baseline=False)
    return tmp, store, labels, head


def test_import_mlsp_loads_no_backend():
    code = ("import sys, mlsp; names = mlsp.HEADS; cfg = mlsp.TrainConfig(); "
            "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch', 'h5py') if m in sys.modules]; "
            "print(names, bad); sys.exit(1 if bad or 'single_3fc' not in names else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_train_in_memory_writes_nothing_and_round_trips(tiny, tmp_path, monkeypatch, capsys):
    tmp, store, labels, _ = tiny
    monkeypatch.chdir(tmp_path)
    head = mlsp.train(store, labels, head="single_3fc", epochs=2, batch_size=16,
                      val_fraction=0.25, baseline=False)
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().out == ""
    assert isinstance(head, mlsp.TrainedHead) and head.head == "single_3fc"
    assert len(head.training.history["val_srcc"]) == 2
    assert head.metrics["val"]["n"] == 3  # 25% of 12
    files = head.save(tmp_path / "model")
    assert sorted(p.name for p in files) == ["model.json", "model.keras"]
    loaded = mlsp.load(tmp_path / "model")
    a = [r["score"] for r in head.predict_store(store)]
    b = [r["score"] for r in loaded.predict_store(store)]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # the same photos scored from their files (features computed in memory) as from the store
    items = from_list(labels)[:3]
    rows = loaded.predict([it.path for it in items])
    np.testing.assert_allclose([r["score"] for r in rows], a[:3], rtol=1e-4, atol=1e-4)
    res = mlsp.evaluate(loaded, store, labels)
    assert res["metrics"]["n"] == N
    assert res["metrics"]["srcc"] == pytest.approx(
        head.evaluate(store, labels)["metrics"]["srcc"])


def test_options_are_checked_before_anything_is_read(tmp_path):
    missing = tmp_path / "none.h5"
    with pytest.raises(OptionError, match="^epochs must be a positive whole number"):
        mlsp.train(missing, "x.csv", epochs=0)
    with pytest.raises(OptionError, match="^unknown training option 'epoch'"):
        mlsp.train(missing, "x.csv", epoch=3)
    with pytest.raises(ValueError, match="^unknown head 'fc9'; choose one of single_1fc"):
        mlsp.train(missing, "x.csv", head="fc9")
    with pytest.raises(OptionError, match="needs a \\(P, P, C\\) feature grid"):
        mlsp.train(missing, "x.csv", head="pool-3fc", features="narrow")
    with pytest.raises(OptionError, match="^pool_kernels shapes the Pool-3FC head only"):
        mlsp.train(missing, "x.csv", head="single_3fc", pool_kernels=64)
    with pytest.raises(OptionError, match="^pool_kernels must be a positive whole number"):
        mlsp.train(missing, "x.csv", head="pool_3fc", pool_kernels=0)
    with pytest.raises(OptionError, match="^pool_kernels must be at least 2"):
        mlsp.train(missing, "x.csv", head="pool_3fc", pool_kernels=1)


def test_a_damaged_model_file_says_so(tiny, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict

    _, store, _, head = tiny
    head.save(tmp_path / "m")
    data = (tmp_path / "m" / "model.keras").read_bytes()
    (tmp_path / "m" / "model.keras").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelFileError, match=r"^cannot read .*model\.keras: "):
        mlsp.load(tmp_path / "m")
    r = CliRunner().invoke(predict, [str(tmp_path / "m"), "--features", str(store)])
    assert r.exit_code == 1 and "cannot read" in r.output and "model.keras" in r.output
    assert "not found" not in r.output and len(r.output.strip().splitlines()) == 1


def test_narrow_model_scores_a_store_without_wide_features(tiny, tmp_path):
    """A store made with --wide-size 0 has the same narrow features: a narrow model takes it
    (only what the model reads is compared) and scores its images the same."""
    tmp, store, labels, head = tiny
    narrow_only = mlsp.extract(labels, tmp_path / "n.h5", backbone="mobilenet_v2", alpha=0.35,
                               weights="bundled", workers=1, wide_size=0)
    with mlsp.FeatureStore.open(narrow_only) as fs:
        assert not fs.has("wide")
    head.check_compatible(narrow_only)
    np.testing.assert_allclose([r["score"] for r in head.predict_store(narrow_only)],
                               [r["score"] for r in head.predict_store(store)], rtol=1e-6)
    # a different crop fraction changes the narrow features: still refused
    other = mlsp.extract(from_list(labels)[:2], tmp_path / "c.h5", backbone="mobilenet_v2",
                         alpha=0.35, weights="bundled", workers=1, wide_size=0,
                         crop_fraction=0.75)
    with pytest.raises(mlsp.StoreError, match="crop_fraction"):
        head.check_compatible(other)


def test_predict_from_a_store_finds_ids_with_a_slash(tiny, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict

    tmp, _, labels, head = tiny
    head.save(tmp_path / "m")
    items = [ImageItem(f"set a/{it.id}", it.path) for it in from_list(labels)[:3]]
    store = mlsp.extract(items, tmp_path / "s.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled", workers=1)
    r = CliRunner().invoke(predict, [str(tmp_path / "m"), "--features", str(store),
                                     items[1].id, "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    rows = json.loads(r.output)
    assert [row["id"] for row in rows] == [items[1].id] and rows[0]["score"] is not None
    r = CliRunner().invoke(predict, [str(tmp_path / "m"), "--features", str(store), "set a/nope"])
    assert r.exit_code == 1 and "no image with id 'set a/nope'" in r.output


def test_cli_train_accepts_dashes_and_prints_one_line_an_epoch(tiny, tmp_path):
    from click.testing import CliRunner

    from mlsp.heads.registry import HEAD_CHOICES
    from mlsp.training.commands import train

    tmp, store, labels, _ = tiny
    head_opt = next(p for p in train.params if p.name == "head")
    assert tuple(head_opt.type.choices) == HEAD_CHOICES  # the registry is the one list
    assert head_opt.default == "auto"
    args = [str(store), "--labels", str(labels), "--head", "single-3fc", "--epochs", "2",
            "--batch-size", "16", "--val-fraction", "0.25", "--out", str(tmp_path / "m")]
    r = CliRunner().invoke(train, args)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2
    assert re.fullmatch(r"epoch 1/2  loss \d+\.\d{4}  val loss \d+\.\d{4}  val SRCC "
                        r"(-?\d\.\d{3}|-)  lr 1\.0e-03  \d+\.\d s", lines[0]), lines[0]
    assert "feed_share" not in r.output
    with open(tmp_path / "m" / "history.csv") as f:
        header = f.readline().strip().split(",")
    assert {"val_srcc", "feed_share", "train_s", "lr"} <= set(header)
    r = CliRunner().invoke(train, args + ["--verbose", "--epochs", "1"])
    assert r.exit_code == 0 and "feed_share" in r.output
