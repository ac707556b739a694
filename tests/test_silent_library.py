"""A silent library (issue 16): with progress off, ``import mlsp`` -> extract -> train ->
predict prints nothing, TensorFlow's start-up log included (before: its absl lines and, on a
CPU host, a CUDA "failed call to cuInit" error, plus a "skipped ..." line for a bad image).
Run in a fresh interpreter, where the backend is imported for the first time."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import mlsp
from mlsp.images.synthetic import make_synthetic_set

labels = make_synthetic_set("photos", n=12, seed=0, max_side=128)
open("photos/broken.jpg", "wb").write(b"not an image")
store = mlsp.extract("photos", "photos.h5", backbone="mobilenet_v2", alpha=0.35,
                     weights="bundled")
head = mlsp.train(store, labels, epochs=1)
rows = head.predict(["photos/syn00000.jpg", "photos/broken.jpg"])
assert rows[0]["score"] is not None and rows[1]["score"] is None
"""


def test_library_prints_nothing_with_progress_off(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}  # the user set none
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == ""
    assert r.stderr == ""
