"""The lookup of a model's backbone weights by SHA-256 (issue 12): each place, the order,
explicit choices checked against the recorded hash, and the one-line refusal."""
from __future__ import annotations

import hashlib

import pytest

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.weights import WeightsMismatchError, WeightsNotFoundError, find_weights

BUNDLED = BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]
BUNDLED_SHA = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()  # independent of mlsp's hashing
IMAGENET_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real cache or weights folder leaks in: Keras' home and $MLSP_WEIGHTS_DIR are empty."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("MLSP_WEIGHTS_DIR", raising=False)


def _file(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def _record(name, sha, path=None):
    rec = {"backbone": "mobilenet_v2", "alpha": 0.35, "weights": name, "weights_sha256": sha}
    if path is not None:
        rec["weights_path"] = str(path)
    return rec


def test_explicit_bundled_for_a_store_made_from_a_copy_of_it(tmp_path):
    """Issue 12, case 1 and 2: the same bytes under another name or path are the same weights."""
    copy, sha = _file(tmp_path / "w" / "mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5",
                      BUNDLED.read_bytes())
    assert sha == BUNDLED_SHA
    rec = _record(copy.name, sha, copy)
    assert find_weights(rec, "bundled").path == str(BUNDLED)
    assert find_weights(_record("bundled:" + BUNDLED.name, sha), "bundled").path == str(BUNDLED)
    found = find_weights(rec)  # the recorded path is still there: used first
    assert found.path == str(copy) and found.sha256 == BUNDLED_SHA and found.name == copy.name
    copy.unlink()  # gone: the bundled file has the hash
    assert find_weights(rec).path == str(BUNDLED)


def test_explicit_path_and_folder(tmp_path):
    w, sha = _file(tmp_path / "mine.h5", b"my weights")
    rec = _record("orig.h5", sha)
    assert find_weights(rec, str(w)).path == str(w)
    assert find_weights(rec, str(tmp_path)).path == str(w)  # a folder: any file with the hash


def test_explicit_file_with_another_hash_is_refused_naming_both(tmp_path):
    _, sha = _file(tmp_path / "orig.h5", b"the weights of the store")
    other, other_sha = _file(tmp_path / "other.h5", b"other weights")
    with pytest.raises(WeightsMismatchError) as err:
        find_weights(_record("orig.h5", sha), str(other))
    msg = str(err.value)
    assert sha in msg and other_sha in msg and str(other) in msg and "\n" not in msg
    with pytest.raises(WeightsMismatchError, match=BUNDLED_SHA):  # bundled is checked too
        find_weights(_record("orig.h5", sha), "bundled")


def test_explicit_imagenet_is_checked_against_the_hash(tmp_path):
    cached, sha = _file(tmp_path / "keras_home" / "models" / IMAGENET_NAME, b"cached imagenet")
    assert find_weights(_record("imagenet", sha), "imagenet").path == str(cached)
    with pytest.raises(WeightsMismatchError, match=sha):
        find_weights(_record("imagenet", "ab" * 32), "imagenet")


@pytest.mark.parametrize("place", ["recorded", "model_dir", "env", "cache"])
def test_each_place_alone(tmp_path, monkeypatch, place):
    content = b"weights found in " + place.encode()
    where = {"recorded": tmp_path / "rec" / "x.h5", "model_dir": tmp_path / "model" / "y.h5",
             "env": tmp_path / "env" / "renamed.weights.h5",
             "cache": tmp_path / "keras_home" / "models" / "z.h5"}[place]
    path, sha = _file(where, content)
    monkeypatch.setenv("MLSP_WEIGHTS_DIR", str(tmp_path / "env"))
    (tmp_path / "model").mkdir(exist_ok=True)
    rec = _record("orig.h5", sha, path if place == "recorded" else tmp_path / "moved" / "x.h5")
    found = find_weights(rec, model_dir=tmp_path / "model")
    assert found.path == str(path) and found.sha256 == sha and found.name == "orig.h5"


def test_bundled_place_and_order(tmp_path, monkeypatch):
    # only the bundled file has the hash: found under any recorded name
    assert find_weights(_record("whatever.h5", BUNDLED_SHA)).path == str(BUNDLED)
    # the recorded path comes before $MLSP_WEIGHTS_DIR, which comes before the bundled file
    env_copy, _ = _file(tmp_path / "env" / "a.h5", BUNDLED.read_bytes())
    rec_copy, _ = _file(tmp_path / "rec" / "b.h5", BUNDLED.read_bytes())
    monkeypatch.setenv("MLSP_WEIGHTS_DIR", str(tmp_path / "env"))
    assert find_weights(_record("w.h5", BUNDLED_SHA, rec_copy)).path == str(rec_copy)
    assert find_weights(_record("w.h5", BUNDLED_SHA, tmp_path / "gone.h5")).path == str(env_copy)


def test_nothing_matches_one_line_naming_hash_places_and_fix(tmp_path, monkeypatch):
    _file(tmp_path / "env" / "orig.h5", b"same name, other bytes")
    monkeypatch.setenv("MLSP_WEIGHTS_DIR", str(tmp_path / "env"))
    want = "cd" * 32
    with pytest.raises(WeightsNotFoundError) as err:
        find_weights(_record("orig.h5", want, tmp_path / "gone" / "orig.h5"),
                     model_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and want in msg
    for place in ("recorded path", str(tmp_path / "gone" / "orig.h5"), "model folder",
                  "$MLSP_WEIGHTS_DIR=" + str(tmp_path / "env"), "bundled", "Keras cache",
                  "--weights PATH"):
        assert place in msg, place
    assert isinstance(err.value, FileNotFoundError)  # the commands' one-line error path


def test_random_weights_need_no_file():
    found = find_weights(_record("none", ""))
    assert found.path is None and found.name == "none"


def test_store_config_records_name_hash_and_path(tmp_path):
    from mlsp.extract.extractor import ExtractOptions, store_config
    from mlsp.extract.model import MLSPModel

    copy, sha = _file(tmp_path / "copy.weights.h5", BUNDLED.read_bytes())
    model = MLSPModel("mobilenet_v2", 0.35, str(copy), wide_size=0)
    cfg = store_config(model, ExtractOptions(backbone="mobilenet_v2", alpha=0.35,
                                             weights=str(copy), wide_size=0))
    assert (cfg["weights"], cfg["weights_sha256"], cfg["weights_path"]) == (
        "copy.weights.h5", sha, str(copy.resolve()))
