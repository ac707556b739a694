"""Real faults against the store (issue 9): a full disk (a small tmpfs), a second writer
(a real second process), a store cut short, a read-only folder, another spelling of the
same image paths.  Each asserts what is on disk afterwards, not what was printed only."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _faults import fill_device, mount_tmpfs, unmount

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.images.sources import ImageItem, from_list
from mlsp.images.synthetic import make_synthetic_set
from mlsp.stores.features import (DONE, FAILED, PENDING, FeatureStore, Level, StoreBusyError,
                                  StoreDamagedError,
                                  StoreError, StoreWriteError)
from mlsp.stores.repair import repair_store

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])
OPTS = dict(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(labels, out, *extra):
    cmd = [sys.executable, "-m", "mlsp.cli", "extract", "--list", str(labels), "-o", str(out),
           "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", WEIGHTS, "--quiet", *extra]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _error_lines(proc):
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


def _store(path, n, wide=2, channels=6, aug=3, seed=0):
    """A finished store with known random features (no backbone needed)."""
    levels = [Level("a", channels - 2, 0), Level("b", 2, channels - 2)]
    ids = [f"im{k:03d}" for k in range(n)]
    rng = np.random.default_rng(seed)
    narrow = rng.normal(size=(n, aug, channels)).astype(np.float16)
    wides = rng.normal(size=(n, aug, wide, wide, channels)).astype(np.float16)
    with FeatureStore.create(path, ids, [f"/x/{i}.jpg" for i in ids],
                             {"backbone": "t", "augmentations": [f"a{k}" for k in range(aug)]},
                             levels, aug, wide) as fs:
        fs.write_rows([{"index": k, "narrow": narrow[k], "wide": wides[k], "height": 10,
                        "width": 20, "scale": 1.0} for k in range(n)])
    return narrow, wides


# -- full disk (item 1) ----------------------------------------------------------------------

def test_full_disk_stops_in_one_line_and_resume_equals_an_uninterrupted_run(tmp_path):
    labels = make_synthetic_set(tmp_path / "imgs", n=40, seed=3, min_side=80, max_side=160)
    reference = tmp_path / "reference.h5"
    extract(from_list(labels), reference, ExtractOptions(**OPTS), progress=False)
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=20m")  # 40 rows of ~0.76 MB each need ~30 MB
    try:
        out = disk / "s.h5"
        refused = _cli(labels, out)  # the estimate refuses before anything is written
        assert refused.returncode == 1
        lines = _error_lines(refused)
        assert len(lines) == 1 and "need about 30.4 MB" in lines[0] and "free" in lines[0], lines
        assert not out.exists()

        full = _cli(labels, out, "--no-space-check")
        assert full.returncode == 1, (full.returncode, full.stderr[-2000:])  # not 0, not 139
        lines = _error_lines(full)
        assert len(lines) == 1, lines
        assert "No space left on device" in lines[0] and "done and safe" in lines[0]
        assert not list(disk.glob("*.tmp")) and not list(disk.glob("*.lock"))
        with FeatureStore.open(out) as fs, FeatureStore.open(reference) as ref:
            done = fs.done_indices()
            assert 0 < len(done) < 40
            for kind in ("narrow", "wide"):  # nothing marked done that is not the real data
                got = fs.dataset(kind)[done.tolist()].astype(np.float32)
                np.testing.assert_allclose(got, ref.dataset(kind)[done.tolist()].astype(np.float32),
                                           rtol=1e-3, atol=1e-3)
        safe = len(done)

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = _cli(labels, out)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        with FeatureStore.open(out) as fs, FeatureStore.open(reference) as ref:
            assert (fs.status == 1).all()
            diff = max(float(np.abs(fs.dataset(k)[...].astype(np.float32)
                                    - ref.dataset(k)[...].astype(np.float32)).max())
                       for k in ("narrow", "wide"))
        print(f"\nfull disk: {safe} rows safe at the fault, {40 - safe} redone on resume, "
              f"0 done rows lost; max |resumed - uninterrupted| = {diff:.3g}")
        assert diff <= 1e-3
    finally:
        unmount(disk)


def test_creating_a_store_on_a_full_file_system_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=1m")
    try:
        fill_device(disk)  # take every free block
        with pytest.raises(StoreWriteError) as err:
            _store(disk / "s.h5", 200)
        msg = str(err.value)
        assert "\n" not in msg and "No space left on device" in msg and "s.h5" in msg
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no .tmp, no .lock
    finally:
        unmount(disk)


def test_write_rows_never_marks_done_what_did_not_reach_the_disk(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=2m")
    try:
        levels = [Level("a", 1000, 0)]
        with FeatureStore.create(disk / "s.h5", [str(k) for k in range(20)],
                                 ["x"] * 20, {}, levels, 8, 5) as fs:  # 0.4 MB a row
            with pytest.raises(StoreWriteError, match="No space left on device"):
                for k in range(20):
                    fs.write_rows([{"index": k, "height": 1, "width": 1, "scale": 1.0,
                                    "narrow": np.full((8, 1000), k + 1, np.float16),
                                    "wide": np.full((8, 5, 5, 1000), k + 1, np.float16)}])
            done = fs.done_indices()
        assert 0 < len(done) < 20
        with FeatureStore.open(disk / "s.h5") as fs:
            for k in done.tolist():
                assert (fs.dataset("wide")[k] == k + 1).all()
                assert (fs.dataset("narrow")[k] == k + 1).all()
    finally:
        unmount(disk)


def test_a_block_of_rows_and_failures_costs_two_fsyncs_and_keeps_the_order(tmp_path,
                                                                           monkeypatch):
    """RowWriter's flush: rows and failures of one block are written, fsynced once, then
    their statuses set and fsynced again (2 fsyncs, not 4); statuses read back."""
    import mlsp.stores.features as features

    levels = [Level("a", 4, 0)]
    with FeatureStore.create(tmp_path / "s.h5", [str(k) for k in range(4)], ["x"] * 4, {},
                             levels, 2, 0) as fs:
        calls = []
        real = features.os.fsync
        monkeypatch.setattr(features.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
        fs.write_block([{"index": 2, "height": 3, "width": 4, "scale": 1.0,
                         "narrow": np.full((2, 4), 7, np.float16)}],
                       [(0, "bad file", 0, 0), (3, "too big", 9, 9)])
        assert len(calls) == 2
    with FeatureStore.open(tmp_path / "s.h5") as fs:
        assert fs.status.tolist() == [FAILED, PENDING, DONE, FAILED]
        assert (fs.dataset("narrow")[2] == 7).all()
        assert fs.errors[0] == "bad file" and fs.errors[3] == "too big"


# -- one writer at a time (item 4) -----------------------------------------------------------

HOLDER = """
import sys, time
from mlsp.stores.features import FeatureStore
fs = FeatureStore.open(sys.argv[1], "r+")
print("ready", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    _store(path, 4)
    tmp = tmp_path / "s.h5.tmp"
    tmp.write_bytes(b"half-made store of the other process")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = path.read_bytes()  # as the holder has it open
        pid = str(holder.pid)
        with pytest.raises(StoreBusyError, match=f"process {pid}"):
            FeatureStore.open(path, "r+")
        with pytest.raises(StoreBusyError, match=f"process {pid}"):
            _store(path, 2)  # create: would replace the store and write its .tmp
        with pytest.raises(StoreBusyError, match=f"open for writing in process {pid}"):
            FeatureStore.open(path)  # a reader (info, train) is told who writes

        import mlsp.extract.extractor as extractor

        def no_model(*a, **k):
            raise AssertionError("the model was built before the store was locked")

        monkeypatch.setattr(extractor, "MLSPModel", no_model)
        items = [ImageItem("a", str(tmp_path / "a.jpg"))]
        with pytest.raises(StoreBusyError, match=f"process {pid}") as err:
            extract(items, path, ExtractOptions(**OPTS), overwrite=True, progress=False)
        assert "\n" not in str(err.value)
        assert path.read_bytes() == before  # --overwrite did not delete the other's work
        assert tmp.read_bytes() == b"half-made store of the other process"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FeatureStore.open(path, "r+") as fs:  # kill -9 released the lock (kernel)
        assert fs.n_images == 4


# -- damaged, not locked; salvage (item 5) ---------------------------------------------------

def test_a_cut_store_is_named_damaged_and_repair_keeps_what_reads_back(tmp_path):
    path = tmp_path / "s.h5"
    narrow, wides = _store(path, 60, wide=4, channels=64, aug=4)
    size = path.stat().st_size
    with h5py.File(path, "r") as h5:  # independent truth: where each row's chunks lie
        ends = np.array([max(h5[f"features/{k}"].id.get_chunk_info_by_coord(
            (i, a) + (0,) * (h5[f"features/{k}"].ndim - 2)).byte_offset
            + h5[f"features/{k}"].id.get_chunk_info_by_coord(
            (i, a) + (0,) * (h5[f"features/{k}"].ndim - 2)).size
            for k in ("narrow", "wide") for a in range(4)) for i in range(60)])
    cut = int(size * 0.6)
    os.truncate(path, cut)
    with pytest.raises(StoreDamagedError) as err:
        FeatureStore.open(path)
    msg = str(err.value)
    assert "truncated" in msg and "another process" not in msg and "mlsp repair" in msg
    assert f"{cut:,}" in msg and f"{size:,}" in msg

    check = repair_store(path, check_only=True)
    assert path.stat().st_size == cut and not check.changed  # --check changes nothing
    report = repair_store(path)
    assert report.kept == check.kept and report.reset == check.reset
    assert report.kept + len(report.reset) == 60 and report.kept > 0 and report.reset
    with FeatureStore.open(path) as fs:
        done = fs.done_indices()
        assert len(done) == report.kept
        assert (ends[done] <= cut).all()  # nothing kept that lay beyond the cut
        np.testing.assert_array_equal(fs.dataset("narrow")[done.tolist()], narrow[done])
        np.testing.assert_array_equal(fs.dataset("wide")[done.tolist()], wides[done])
        assert (fs.status[report.reset] == 0).all()
        assert fs.info()["images"] == 60  # the whole file reads (metadata too)


def test_an_overwritten_header_is_named_damaged(tmp_path):
    path = tmp_path / "s.h5"
    _store(path, 3)
    with open(path, "r+b") as f:
        f.write(b"\0" * 64)
    with pytest.raises(StoreDamagedError, match="damaged store") as err:
        FeatureStore.open(path)
    assert "another process" not in str(err.value)


# -- read-only output (item 7), resume by another spelling (item 6) ---------------------------

def test_a_read_only_folder_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=1m")
    try:
        import mlsp.extract.extractor as extractor

        def no_model(*a, **k):
            raise AssertionError("the model was built before the output was checked")

        monkeypatch.setattr(extractor, "MLSPModel", no_model)
        t = time.monotonic()
        with pytest.raises(StoreError, match="Read-only file system") as err:
            extract([ImageItem("a", "a.jpg")], ro / "s.h5", ExtractOptions(**OPTS),
                    progress=False)
        assert "\n" not in str(err.value) and time.monotonic() - t < 60
    finally:
        unmount(ro)


def test_resume_accepts_another_spelling_of_the_same_paths(tmp_path, monkeypatch):
    make_synthetic_set(tmp_path / "imgs", n=6, seed=1, min_side=80, max_side=120)
    names = sorted(p.name for p in (tmp_path / "imgs").glob("syn*"))[:6]
    out = tmp_path / "s.h5"
    monkeypatch.chdir(tmp_path)
    relative = [ImageItem(Path(n).stem, f"imgs/{n}") for n in names]
    first = extract(relative, out, ExtractOptions(**OPTS), progress=False, limit=3)
    assert first.done == 3
    monkeypatch.chdir(tmp_path / "imgs")  # another working folder, absolute paths
    absolute = [ImageItem(Path(n).stem, str(tmp_path / "imgs" / n)) for n in names]
    second = extract(absolute, out, ExtractOptions(**OPTS), progress=False)
    assert second.done == 6 and second.processed_now == 3
    other = absolute[:5] + [ImageItem(absolute[5].id, str(tmp_path / "imgs" / names[0]))]
    with pytest.raises(StoreError) as err:
        extract(other, out, ExtractOptions(**OPTS), progress=False)
    assert "row 5" in str(err.value) and "--overwrite" not in str(err.value)


# -- memory stays bounded on big photos (item 3) ----------------------------------------------

def test_a_crop_above_the_memory_budget_is_downscaled_just_enough_or_failed(tmp_path):
    import cv2

    from mlsp.extract.model import MLSPModel
    from mlsp.extract.worker import activation_bytes_per_pixel

    model = MLSPModel("mobilenet_v2", 0.35, WEIGHTS)
    per_pixel = activation_bytes_per_pixel(model)
    assert 150 * 4 < per_pixel < 250 * 4  # 188 floats a pixel: summed from the layers
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), rng.integers(0, 255, (1600, 1200, 3), dtype=np.uint8))
    crop = (1600 * 0.875) * (1200 * 0.875)
    budget = int(crop * per_pixel / 4)  # a quarter of what the full-size crop needs
    items = [ImageItem("big", str(big))]
    got = extract(items, tmp_path / "s.h5", ExtractOptions(**OPTS, max_memory=budget),
                  model=model, progress=False)
    assert got.done == 1
    with FeatureStore.open(tmp_path / "s.h5") as fs:
        scale = float(fs.h5["images/scale"][0])
    assert 0.49 < scale < 0.5  # sqrt(1/4), just enough (0.999 margin)
    tiny = extract(items, tmp_path / "t.h5", ExtractOptions(**OPTS, max_memory=500_000),
                   model=model, progress=False)
    assert tiny.failed == 1  # even the smallest input the backbone takes needs more
    assert "above the memory budget of 0.5 MB (--max-memory)" in tiny.failures[0]["error"]


def _sigint_default():
    """The child takes SIGINT as Ctrl-C even when this test runs where SIGINT is ignored:
    a shell without job control starts background commands (``pytest ... &``) with SIGINT
    ignored, children inherit that, and Python then installs no KeyboardInterrupt handler;
    the job would run to its end and exit 0 (issue 20: the failure "not understood")."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_within_seconds_and_keeps_what_is_written(tmp_path):
    labels = make_synthetic_set(tmp_path / "imgs", n=150, seed=4, min_side=300, max_side=600)
    out = tmp_path / "s.h5"
    cmd = [sys.executable, "-m", "mlsp.cli", "extract", "--list", str(labels), "-o", str(out),
           "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", WEIGHTS, "--quiet",
           "--flush-every", "2"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_default)

    def done_now():
        try:
            with h5py.File(out, "r", locking=False) as h5:
                return int((h5["images/status"][...] == 1).sum())
        except (OSError, KeyError):
            return 0

    deadline = time.monotonic() + 600  # a hang guard only: a loaded machine is slow
    while proc.poll() is None and done_now() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    at_signal = done_now()
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    stopped = time.monotonic() - t
    assert not (tmp_path / "s.h5.lock").exists()
    with FeatureStore.open(out) as fs:  # the file is closed cleanly, the rows are kept
        done, pending = len(fs.done_indices()), int((fs.status == PENDING).sum())
    assert done >= at_signal
    if pending == 0:  # the job ended before the signal landed: nothing was interrupted
        assert proc.returncode == 0
        return
    # behaviour, not speed: the exit code says work is left, one line says what to do;
    # the time is printed for the record (a few seconds on a quiet machine)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1] == (f"{out}: interrupted; {done} done, 0 failed, {pending} pending of 150; "
                         f"run the same command again to resume"), err
    print(f"Ctrl-C stopped the job in {stopped:.1f} s")
