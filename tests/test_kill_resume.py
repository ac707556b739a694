"""kill -9 of a real extraction process at arbitrary moments, then resume (issue: robustness).

The resumed store must equal an uninterrupted run; rows marked done at the
moment of the kill must already be correct; the file must stay readable.
"""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.images.sources import from_list
from mlsp.images.synthetic import make_synthetic_set
from mlsp.stores.features import FeatureStore

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])


def _command(labels, out):
    return [sys.executable, "-m", "mlsp.cli", "extract", "--list", str(labels), "-o", str(out),
            "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", WEIGHTS,
            "--flush-every", "2", "--quiet"]


def _done_now(out):
    """Rows marked done, read while the writer runs (the status is raw data, no locking)."""
    try:
        with h5py.File(out, "r", locking=False) as h5:
            return int((h5["images/status"][...] == 1).sum())
    except (OSError, KeyError):
        return 0


def _start_and_kill(cmd, out, delay, env, min_done=0):
    """Start an extraction, wait until ``min_done`` more rows are done, wait ``delay``, kill -9."""
    before = _done_now(out) if out.exists() else 0
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # a hang guard: a loaded machine starts slowly
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and _done_now(out) >= before + min_done:
            break
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    labels = make_synthetic_set(tmp_path / "imgs", n=40, seed=3, min_side=80, max_side=200)
    items = from_list(labels)
    reference = tmp_path / "reference.h5"
    extract(items, reference, ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS),
            progress=False)
    out = tmp_path / "killed.h5"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done_after_kill = []
    # a first kill mid-run, between two flushes; a second one just after the resume writes
    for delay, min_done in ((0.13, 5), (0.0, 1)):
        code = _start_and_kill(_command(labels, out), out, delay, env, min_done)
        assert code == -signal.SIGKILL
        with FeatureStore.open(out) as fs, FeatureStore.open(reference) as ref:
            done = fs.done_indices()
            done_after_kill.append(len(done))
            if len(done):  # whatever is marked done is already complete and right
                np.testing.assert_allclose(fs.dataset("narrow")[done.tolist()].astype(np.float32),
                                           ref.dataset("narrow")[done.tolist()].astype(np.float32),
                                           rtol=1e-3, atol=1e-3)
    assert 5 <= done_after_kill[0] < len(items), "the kill came too early or too late"
    assert done_after_kill[0] < done_after_kill[1] < len(items)  # nothing finished was lost
    subprocess.run(_command(labels, out), env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    with FeatureStore.open(out) as fs, FeatureStore.open(reference) as ref:
        assert (fs.status == 1).all()
        diff = max(float(np.abs(fs.dataset(k)[...].astype(np.float32)
                                - ref.dataset(k)[...].astype(np.float32)).max())
                   for k in ("narrow", "wide"))
        print(f"\nkill -9: {done_after_kill} rows done after the kills, none lost; "
              f"max |resumed - uninterrupted| = {diff:.3g}")
        for kind in ("narrow", "wide"):
            np.testing.assert_allclose(fs.dataset(kind)[...].astype(np.float32),
                                       ref.dataset(kind)[...].astype(np.float32),
                                       rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(fs.h5["images/height"][...], ref.h5["images/height"][...])
