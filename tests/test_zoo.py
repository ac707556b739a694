"""The model list (issue 19): shipped models, published ones fetched by URL + SHA-256 into a
cache, the argument rule of `mlsp predict [MODEL] PHOTOS`, ranks and percentiles."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

import mlsp
from mlsp import zoo
from mlsp.inference import photos as scoring

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_models_are_listed_with_their_figures():
    rows = {r["name"]: r for r in mlsp.list_models()}
    assert {"quality", "beauty"} <= set(rows)
    q = rows["quality"]
    assert q["default"] and q["scale"] == [0, 100] and q["source"] == "package"
    lo, hi = q["figures"]["srcc"][1:]
    assert 0 < lo <= q["figures"]["srcc"][0] <= hi < 1
    assert rows["beauty"]["scale"] == [1, 7] and not rows["beauty"]["default"]
    for r in rows.values():  # the package carries everything a shipped model needs
        folder = Path(r["folder"])
        for f in ("model.json", "model.keras", "model.onnx", "MODEL_CARD.md", "zoo.json"):
            assert (folder / f).is_file(), folder / f
        assert folder.is_relative_to(ROOT / "mlsp" / "data" / "models")


def test_package_data_lists_the_model_files():
    cfg = (ROOT / "setup.cfg").read_text()
    assert "models/*/*" in cfg and "onnxruntime" in cfg.split("[options.extras_require]")[0]


def test_percentile_is_the_share_of_reference_photos_scored_lower():
    ref = [1.0, 2.0, 2.0, 3.0, 10.0]
    assert zoo.percentiles([0.5, 2.0, 2.5, 11.0, None], ref) == [0.0, 20.0, 60.0, 100.0, None]
    shipped = zoo.reference_scores(zoo.resolve("quality"))
    assert shipped == sorted(shipped) and len(shipped) > 500


def test_rank_rows_best_first_ties_share_a_rank_failures_last():
    rows = [{"id": "a", "score": 2.0}, {"id": "b", "score": None, "error": "bad"},
            {"id": "c", "score": 5.0}, {"id": "d", "score": 2.0}]
    ranked = scoring.rank_rows(rows, reference=[1.0, 3.0])
    assert [(r["id"], r["rank"]) for r in ranked] == [("c", 1), ("a", 2), ("d", 2), ("b", None)]
    assert [r["percentile"] for r in ranked] == [100.0, 50.0, 50.0, None]
    assert [r["id"] for r in scoring.top_rows(ranked, 2)] == ["c", "a"]
    assert scoring.rank_rows(rows)[0]["percentile"] is None  # no reference, no percentile


def test_first_argument_is_the_model_only_when_it_is_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    assert scoring.split_model_args(["beauty", "p.jpg"]) == ("beauty", ["p.jpg"])
    assert scoring.split_model_args(["p.jpg"]) == ("quality", ["p.jpg"])
    assert scoring.split_model_args([str(tmp_path)]) == ("quality", [str(tmp_path)])
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text("{}")
    (model / "model.keras").write_bytes(b"")
    assert scoring.split_model_args([str(model), "p.jpg"]) == (str(model), ["p.jpg"])
    (tmp_path / "beauty").mkdir()  # a folder of photos named like a model is photos
    assert scoring.split_model_args(["beauty"]) == ("quality", ["beauty"])


def test_unknown_names_and_non_model_folders_are_one_line_errors(tmp_path):
    with pytest.raises(zoo.ZooError, match=r"^nope: no such model \(listed: .*quality"):
        zoo.resolve("nope")
    with pytest.raises(zoo.ZooError, match="not a model folder"):
        zoo.resolve(tmp_path)


def _published(tmp_path):
    folder = tmp_path / "src" / "big"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"name": "big"}))
    (folder / "model.keras").write_bytes(b"weights")
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"big/{f.name}")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_a_published_model_is_downloaded_once_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSP_HOME", str(tmp_path / "home"))
    archive, digest = _published(tmp_path)
    zoo.register("big", archive.as_uri(), digest, task="test", scale=(1, 10))
    try:
        assert mlsp.list_models()[-1]["name"] == "big"
        assert not mlsp.list_models()[-1]["cached"]
        with pytest.raises(zoo.ZooError, match="not downloaded"):
            zoo.resolve("big", download=False)
        folder = zoo.resolve("big")
        assert folder == tmp_path / "home" / "models" / "big"
        assert (folder / "model.keras").read_bytes() == b"weights"
        archive.unlink()  # no second download: the cache answers
        assert zoo.resolve("big") == folder and mlsp.list_models()[-1]["cached"]
    finally:
        zoo._REGISTERED.pop("big", None)


def test_a_hash_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSP_HOME", str(tmp_path / "home"))
    archive, digest = _published(tmp_path)
    zoo.register("big", archive.as_uri(), "0" * 64)
    try:
        with pytest.raises(zoo.ZooError, match=r"SHA-256 .* is not the listed .*refused"):
            zoo.resolve("big")
        assert not (tmp_path / "home" / "models" / "big").exists()
    finally:
        zoo._REGISTERED.pop("big", None)


def test_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    """A real refused connection (nothing listens on port 9 here)."""
    monkeypatch.setenv("MLSP_HOME", str(tmp_path / "home"))
    url = "http://127.0.0.1:9/big.zip"
    zoo.register("big", url, "a" * 64)
    try:
        with pytest.raises(zoo.ZooError) as err:
            zoo.resolve("big")
        msg = str(err.value)
        assert "\n" not in msg and url in msg
        assert str(tmp_path / "home" / "models" / "big.zip") in msg
    finally:
        zoo._REGISTERED.pop("big", None)


def test_models_listed_in_the_users_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSP_HOME", str(tmp_path))
    (tmp_path / "models.json").write_text(json.dumps(
        [{"name": "ava_irnv2", "url": "https://example.org/a.zip", "sha256": "b" * 64,
          "task": "aesthetics", "scale": [1, 10]}]))
    row = {r["name"]: r for r in mlsp.list_models()}["ava_irnv2"]
    assert row["source"] == "https://example.org/a.zip" and row["scale"] == [1, 10]
    (tmp_path / "models.json").write_text("[{\"name\": \"x\"}]")
    with pytest.raises(zoo.ZooError, match="models.json: not a list of models"):
        mlsp.list_models()


def test_load_by_name_gives_the_shipped_trained_head():
    head = mlsp.load("quality")
    assert head.path == zoo.resolve("quality") and head.name == "quality"
    assert head.sidecar["features"]["backbone"] == "mobilenet_v2"


def test_mlsp_models_command():
    from click.testing import CliRunner

    from mlsp.inference.commands import models

    r = CliRunner().invoke(models, [])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("quality") and "(default)" in lines[0] and "SRCC 0." in lines[0]
    assert any(line.startswith("beauty") and "scale 1-7" in line for line in lines)
    rows = json.loads(CliRunner().invoke(models, ["--json"]).output)
    assert rows == mlsp.list_models()
