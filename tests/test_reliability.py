"""Reliability v3 (issue 20): numeric options, non-regular files, folder walks, names,
lists, declared sizes, outputs.  Each fault is made for real where the machine allows."""
import math
import os
import subprocess
import sys

import pytest
from _faults import fill_device, mount_tmpfs, unmount
from click.testing import CliRunner

from mlsp.errors import MLSPError, OptionError
from mlsp.options import check_whole, number, whole

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# -- numeric options ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 0, 1.5, math.nan, True, "x"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused(value):
    with pytest.raises(OptionError, match=r"^limit must be a whole number >= 1, got"):
        check_whole("limit", value, 1)
    assert isinstance(OptionError("x"), (MLSPError, ValueError))


@pytest.mark.parametrize("value", [0, -2.0, math.nan, math.inf, "nan"])
def test_a_memory_budget_must_be_a_finite_positive_number(value):
    with pytest.raises(OptionError, match=r"^max_memory must be"):
        number("max_memory", value, 0, low_open=True)
    assert whole("n", 3.0, 1) == 3 and number("x", "0.5", 0, 1) == 0.5


@pytest.mark.parametrize("args,option", [(["--limit", "-1"], "--limit"),
                                         (["--max-memory", "0"], "--max-memory"),
                                         (["--max-memory", "nan"], "--max-memory"),
                                         (["--alpha", "inf"], "--alpha"),
                                         (["--workers", "-3"], "--workers")])
def test_the_command_line_refuses_bad_numbers_before_any_work(tmp_path, args, option):
    from mlsp.cli import main

    got = CliRunner().invoke(main, ["extract", str(tmp_path), "-o", str(tmp_path / "s.h5"), *args])
    assert got.exit_code == 2
    err = [ln for ln in got.output.splitlines() if ln.startswith("Error")]
    assert len(err) == 1 and option in err[0] and "got" in err[0], got.output
    assert len(got.output.strip().splitlines()) == 1, got.output  # no usage block around it
    assert "Traceback" not in got.output and not (tmp_path / "s.h5").exists()


def test_library_options_are_checked_with_the_same_rules(tmp_path):
    from mlsp.extract.extractor import ExtractOptions, extract

    for kw, msg in (({"max_memory": 0}, "max_memory must be a whole number >= 1"),
                    ({"alpha": math.nan}, "alpha must be a finite number > 0"),
                    ({"crop_fraction": 1.5}, r"crop_fraction must be in \(0, 1\]")):
        with pytest.raises(OptionError, match=msg):
            ExtractOptions(**kw)
    with pytest.raises(OptionError, match="limit must be a whole number >= 1, got -1"):
        extract([], tmp_path / "s.h5", limit=-1, progress=False)
    assert not (tmp_path / "s.h5").exists()


# -- inputs that are not regular files ------------------------------------------------------

def _photo(path, size=(96, 128), seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _device_node(path):
    import stat

    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # like /dev/zero
    except (PermissionError, OSError) as err:
        pytest.skip(f"cannot make a device node here ({err}): needs root")
    return path


@pytest.fixture(autouse=True)
def _no_hang():
    """A hang (the fault these tests make) fails the test after 900 s instead of stalling
    the run (generous: a loaded machine takes minutes to start a backbone)."""
    import signal

    def stop(*_):
        raise TimeoutError("hung for 900 s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(900)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifos_devices_and_links_to_them_are_refused_by_name_without_reading(tmp_path):
    import resource

    from mlsp.files import UnreadableFileError, read_regular
    from mlsp.images.decode import ImageDecodeError, decode_image

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading would wait forever for a writer
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")  # reading it never ends
    rnd = tmp_path / "random.png"
    rnd.symlink_to("/dev/urandom")
    node = _device_node(tmp_path / "node.jpg")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for path, kind in ((fifo, "a FIFO (named pipe)"), (zero, "a character device"),
                       (rnd, "a character device"), (node, "a character device"),
                       (tmp_path, "a folder")):
        with pytest.raises(ImageDecodeError) as err:
            decode_image(path)
        assert str(err.value).startswith(f"{path}: {kind}") and "\n" not in str(err.value)
    assert "symbolic link to /dev/zero" in _msg(decode_image, zero)
    with pytest.raises(UnreadableFileError, match="not a regular list file"):
        read_regular(fifo, 100, "list file")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 5000)
    with pytest.raises(UnreadableFileError, match="5,000 bytes, more than a image file can need"):
        read_regular(big, 4096, "image file")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # < 200 MB


def _msg(fn, *args):
    try:
        fn(*args)
    except ValueError as err:
        return str(err)
    raise AssertionError("no error")


def test_a_list_naming_a_fifo_and_a_list_that_is_a_fifo_do_not_hang(tmp_path):
    from mlsp.images.sources import collect_items, from_list

    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"list.txt: a FIFO \(named pipe\), not a regular list file"):
        from_list(fifo)
    lst = tmp_path / "photos.txt"
    os.mkfifo(tmp_path / "p.jpg")
    lst.write_text("p.jpg\n")
    items = collect_items([str(lst)])
    assert [it.path for it in items] == [str(tmp_path / "p.jpg")]  # read later, refused then


def test_labels_and_id_lists_must_be_regular_files(tmp_path):
    from mlsp.labels.labels import load_labels, read_id_list

    zero = tmp_path / "labels.csv"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="labels.csv: a character device .*not a regular label file"):
        load_labels(zero)
    os.mkfifo(tmp_path / "test.jpgl")
    with pytest.raises(ValueError, match="FIFO"):
        read_id_list(tmp_path / "test.jpgl")


# -- folder walks account for everything -----------------------------------------------------

def _deep_folder(root, total=4300):
    """Nested folders whose full path exceeds PATH_MAX (4096), made through dir_fd (a
    path that long cannot be passed to the system); a photo at the bottom."""
    name, depth = "d" * 200, 0
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while len(str(root)) + depth * (len(name) + 1) < total:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, depth = child, depth + 1
        import numpy as np
        from PIL import Image
        import io

        buf = io.BytesIO()
        Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(buf, "PNG")
        out = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, buf.getvalue())
        os.close(out)
    finally:
        os.close(fd)
    return depth


def test_a_folder_walk_names_what_it_cannot_read_and_counts_what_it_skips(tmp_path, monkeypatch):
    from collections import Counter

    from mlsp.images.sources import collect_items, from_folder

    root = tmp_path / "photos"
    root.mkdir()
    _photo(root / "a.jpg")
    (root / "a.xmp").write_text("<x:xmpmeta/>")  # a sidecar: skipped, counted
    (root / "labels.csv").write_text("id,mos\na,3\n")
    os.mkfifo(root / "pipe.jpg")  # listed: fails later by name, never silently dropped
    (root / "locked").mkdir()
    _photo(root / "locked" / "b.jpg")
    bad = os.fsencode(str(root)) + b"/\xff\xfe.jpg"  # a name that is not UTF-8
    with open(bad, "wb") as f:
        f.write(b"x")
    _deep_folder(root)
    # root traverses chmod 000 folders, so the refusal is simulated where the walk lists
    # folders (os.walk calls os.scandir); everything else above is made for real
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped = Counter()
    items = from_folder(root, skipped=skipped)
    by_id = {it.id: it for it in items}
    assert skipped == {".xmp files (not photos)": 1, ".csv files (not photos)": 1}
    assert by_id["a"].error is None and by_id["pipe"].error is None
    assert by_id["locked"].error == ("folder cannot be listed: Permission denied; the files "
                                     "in it are not extracted")
    assert by_id["\\xff\\xfe"].error.startswith("file name is not valid UTF-8")
    assert by_id["\\xff\\xfe"].path.encode("utf-8")  # storable
    deep = [it for it in items if "File name too long" in (it.error or "")]
    assert len(deep) == 1 and "the system allows 4096" in deep[0].error
    assert len(items) == 5  # a, pipe, locked, the bad name, the too-deep folder
    from collections import Counter

    from mlsp.images.sources import describe_skipped

    skipped = Counter()
    collect_items([root], skipped=skipped)
    assert describe_skipped(skipped).startswith("skipped 2 entries")


def test_a_quoted_newline_in_a_csv_list_is_kept(tmp_path):
    from mlsp.images.sources import from_list

    lst = tmp_path / "l.csv"
    lst.write_text('id,path\n"two\nlines",a.jpg\nb,b.jpg\n"x,y",c.jpg\n')
    items = from_list(lst)
    assert [it.id for it in items] == ["two\nlines", "b", "x,y"]
    (tmp_path / "bad.csv").write_text('path,id\na.jpg,1\nb.jpg\n')
    with pytest.raises(ValueError, match=r"bad.csv, line 3: expected 2 fields, got 1"):
        from_list(tmp_path / "bad.csv")


def test_extract_records_every_hostile_entry_as_failed_and_names_what_it_skipped(tmp_path):
    import h5py

    from mlsp.data import BUNDLED_WEIGHTS

    root = tmp_path / "photos"
    root.mkdir()
    _photo(root / "good.jpg")
    (root / "good.xmp").write_text("<x:xmpmeta/>")
    os.mkfifo(root / "pipe.jpg")
    (root / "zero.jpg").symlink_to("/dev/zero")
    with open(os.fsencode(str(root)) + b"/\xff.jpg", "wb") as f:
        f.write(_photo(tmp_path / "ok.png").read_bytes())
    _deep_folder(root)
    out = tmp_path / "s.h5"
    cmd = [sys.executable, "-m", "mlsp.cli", "extract", str(root), "-o", str(out), "--backbone",
           "mobilenet_v2", "--alpha", "0.35", "--weights",
           str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]), "--quiet"]
    got = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr
    assert "skipped 1 entry: 1 .xmp files (not photos)" in got.stderr
    assert "1 done, 4 failed, 0 pending of 5" in got.stdout
    with h5py.File(out, "r") as h5:
        errors = dict(zip([s.decode() for s in h5["images/id"][...]],
                          [s.decode() for s in h5["images/error"][...]]))
    assert errors["good"] == ""
    assert errors["pipe"].startswith("a FIFO (named pipe)")
    assert errors["zero"].startswith("a character device (symbolic link to /dev/zero)")
    assert errors["\\xff"].startswith("file name is not valid UTF-8")
    assert sum("File name too long" in e for e in errors.values()) == 1


# -- model files that do not belong together -------------------------------------------------

def _head_folder(folder, seed, **changes):
    """A small real head saved as mlsp saves one (write_model), with a complete sidecar."""
    import keras

    from mlsp.inference.model_format import make_sidecar, write_model

    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(4)(inp)))
    sidecar = make_sidecar(name="m", head="single_3fc", output="mos", n_bins=None,
                           bin_scores=None, pooling="narrow", wide_size=0, levels=["a"],
                           level_channels=[6], store_config={"backbone": "mobilenet_v2",
                                                             "alpha": 0.35},
                           store_path=None, mean=3.0, std=0.5, score_range=(1, 7),
                           threshold=4.0, train={})
    write_model(folder, model, sidecar)
    if changes:
        import json

        side = json.loads((folder / "model.json").read_text())
        for key, value in changes.items():
            node = side
            *path, last = key.split(".")
            for k in path:
                node = node[k]
            node[last] = value
        (folder / "model.json").write_text(json.dumps(side))
    return folder


def test_a_model_file_from_another_training_is_refused(tmp_path):
    import shutil

    from mlsp.errors import ModelFileError
    from mlsp.inference.model_format import read_model

    a, b = _head_folder(tmp_path / "a", 1), _head_folder(tmp_path / "b", 2)
    read_model(a)  # belongs: loads
    shutil.copy(b / "model.keras", a / "model.keras")  # the swap, for real
    with pytest.raises(ModelFileError) as err:
        read_model(a)
    msg = str(err.value)
    assert "a/model.keras does not belong to" in msg and "different trainings" in msg
    assert "\n" not in msg
    # a folder saved before fingerprints were recorded loads without the check
    _head_folder(tmp_path / "old", 3, model_fingerprint=None)
    read_model(tmp_path / "old")


@pytest.mark.parametrize("field,value,words", [
    ("head", "mystery_head", "field 'head' is 'mystery_head', not a head this mlsp knows"),
    ("target.std", "wide", "field 'target.std' is 'wide', not a finite number"),
    ("target.mean", None, "field 'target.mean' is None, not a finite number"),
    ("pooling", "sideways", "field 'pooling' is 'sideways'"),
    ("level_channels", ["6"], "field 'level_channels' is not a positive whole number")])
def test_a_sidecar_field_that_cannot_be_used_is_one_line(tmp_path, field, value, words):
    from mlsp.cli import main

    folder = _head_folder(tmp_path / "m", 1, **{field: value})
    got = CliRunner().invoke(main, ["predict", str(folder), str(tmp_path)])
    assert got.exit_code == 1 and "Traceback" not in got.output
    lines = [ln for ln in got.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0] and "model.json" in lines[0], got.output


# -- outputs: checked before the work, written whole or not at all ---------------------------

def test_predictions_to_a_full_device_are_refused_before_scoring(tmp_path):
    from mlsp.cli import main
    from mlsp.outputs import OutputError, write_atomic

    model = _head_folder(tmp_path / "m", 1)
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=256k")
    try:
        fill_device(disk)
        got = CliRunner().invoke(main, ["predict", str(model), str(tmp_path / "nothere.jpg"),
                                        "-o", str(disk / "p.csv")])
        lines = [ln for ln in got.output.splitlines() if ln.strip()]
        assert got.exit_code == 1 and len(lines) == 1, got.output
        assert "p.csv" in lines[0] and "No space left on device" in lines[0]
        assert "nothere" not in lines[0]  # refused before any image was looked at
        with pytest.raises(OutputError, match="No space left on device.*nothing was written"):
            write_atomic(disk / "q.csv", "x" * 300_000, "predictions")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no partial file
    finally:
        unmount(disk)


def test_an_onnx_export_into_a_read_only_place_is_refused_before_converting(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnx")
    import time

    from mlsp.cli import main

    model = _head_folder(tmp_path / "m", 1)
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "size=1m,ro")
    try:
        t = time.monotonic()
        got = CliRunner().invoke(main, ["export", str(model), "-o", str(ro / "m.onnx")])
        lines = [ln for ln in got.output.splitlines() if ln.strip()]
        assert got.exit_code == 1 and len(lines) == 1, got.output
        assert "Read-only file system" in lines[0] and str(ro) in lines[0]
        assert time.monotonic() - t < 60  # no backbone was built: the check comes first
    finally:
        unmount(ro)


def test_onnx_runtime_with_a_read_only_model_folder_exports_into_the_user_cache(
        tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    import shutil

    from mlsp.inference import onnx as export

    model = _head_folder(tmp_path / "src", 1)
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "size=1m")
    try:
        shutil.copytree(model, ro / "m")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        written = []

        def fake_export(model_path, out, weights=None, tta="crops"):
            written.append(out)  # the conversion itself is tested in test_onnx_export.py
            return out

        monkeypatch.setattr(export, "export_onnx", fake_export)
        path = export.cached_export(ro / "m", None, "crops")
        assert path == (tmp_path / "cache" / "mlsp" / "onnx" / export._fingerprint(ro / "m")
                        / "model.crops.onnx")
        assert written == [path]
        monkeypatch.setenv("XDG_CACHE_HOME", str(ro / "cache"))  # nowhere to write at all
        with pytest.raises(ValueError, match="cannot write the ONNX export beside the model "
                                             "nor in the cache.*Read-only file system"):
            export.cached_export(ro / "m", None, "crops")
    finally:
        unmount(ro)


# -- absurd declared sizes -------------------------------------------------------------------

def test_a_small_store_declaring_billions_of_rows_is_damaged_not_allocated(tmp_path):
    import resource

    import h5py

    from mlsp.cli import main
    from mlsp.stores.features import FeatureStore, Level

    path = tmp_path / "s.h5"
    FeatureStore.create(path, ["a", "b"], ["/x/a.jpg", "/x/b.jpg"], {"backbone": "t",
                        "augmentations": ["a0"]}, [Level("l", 4, 0)], 1, 0).close()
    n = 3_000_000_000
    with h5py.File(path, "r+") as h5:  # the header now declares 3e9 rows; nothing written
        for name in list(h5["images"]):
            dtype = h5["images"][name].dtype
            del h5["images"][name]
            h5["images"].create_dataset(name, (n,), dtype=dtype, chunks=(1024,))
    assert path.stat().st_size < 1_000_000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = CliRunner().invoke(main, ["info", str(path)])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # < 200 MB
    lines = [ln for ln in got.output.splitlines() if ln.strip()]
    assert got.exit_code == 1 and len(lines) == 1, got.output
    assert "damaged store: the header declares 3,000,000,000 images rows, which cannot fit" \
        in lines[0] and str(path) in lines[0]


# -- labels whose scales disagree ------------------------------------------------------------

def test_a_mos_on_0_100_with_votes_over_5_bins_is_refused(tmp_path):
    from mlsp.labels import load_labels

    f = tmp_path / "l.csv"
    f.write_text("id,mos,c1,c2,c3,c4,c5\na,72.5,0,1,2,5,2\nb,31,3,4,2,1,0\nc,55,1,2,4,2,1\n")
    with pytest.raises(ValueError) as err:
        load_labels(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: the MOS column and the vote columns c1..c5 are on different "
                          "scales: MOS spans 31..72.5, the votes score bins 1..5")
    assert "\n" not in msg
    # the same votes with a MOS on their own scale (not exactly their mean) are accepted
    f.write_text("id,mos,c1,c2,c3,c4,c5\na,3.8,0,1,2,5,2\nb,2.1,3,4,2,1,0\nc,3.0,1,2,4,2,1\n")
    assert load_labels(f).mos.tolist() == [3.8, 2.1, 3.0]


def test_a_store_path_that_is_a_fifo_or_a_device_is_refused_without_opening_it(tmp_path):
    from mlsp.cli import main

    os.mkfifo(tmp_path / "s.h5")
    (tmp_path / "z.h5").symlink_to("/dev/zero")
    for name, kind in (("s.h5", "a FIFO (named pipe)"), ("z.h5", "a character device")):
        got = CliRunner().invoke(main, ["info", str(tmp_path / name)])
        assert got.exit_code == 1
        assert got.output.strip() == f"Error: {tmp_path / name}: {kind}, not a store file"


def test_training_options_refuse_nan_margins():
    from mlsp.training.config import TrainConfig

    with pytest.raises(OptionError, match="binary_margin must be a finite number >= 0, got nan"):
        TrainConfig(binary_margin=math.nan).resolved()


def test_predict_inputs_skip_sidecars_with_a_count_and_fail_fifos_by_name(tmp_path):
    from mlsp.inference.scoring import expand_inputs

    _photo(tmp_path / "a.jpg")
    (tmp_path / "a.xmp").write_text("<x/>")
    (tmp_path / "notes.txt").write_text("hello")
    os.mkfifo(tmp_path / "p.jpg")
    from collections import Counter

    skipped = Counter()
    items = expand_inputs([tmp_path], skipped)
    assert skipped == {".xmp files (not photos)": 1, ".txt files (not photos)": 1}
    assert [it.id for it in items] == ["a", "p"]
    fifo = tmp_path / "direct"
    os.mkfifo(fifo)
    assert [it.path for it in expand_inputs([fifo])] == [str(fifo)]  # given: failed when read


def test_train_into_a_read_only_place_is_refused_before_training(tmp_path):
    from mlsp.cli import main

    ro = tmp_path / "ro"
    mount_tmpfs(ro, "size=1m,ro")
    try:
        (tmp_path / "l.csv").write_text("id,mos\na,1\n")
        for extra in ([], ["--folds", "3"]):
            got = CliRunner().invoke(main, ["train", str(tmp_path / "l.csv"), "--labels",
                                            str(tmp_path / "l.csv"), "--out",
                                            str(ro / "model"), *extra])
            lines = [ln for ln in got.output.splitlines() if ln.strip()]
            assert got.exit_code == 1 and len(lines) == 1, got.output
            assert "Read-only file system" in lines[0] and "ro/model" in lines[0]
    finally:
        unmount(ro)
