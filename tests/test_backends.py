"""The same features, head outputs and losses on every installed Keras backend (issue: scale)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

BACKENDS = [b for b, module in (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch"))
            if importlib.util.find_spec(module)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backends")
    weights = tmp / "head.weights.h5"
    code = ("import keras; from mlsp.heads import build_head; keras.utils.set_random_seed(1); "
            f"build_head('single_3fc', 1824).save_weights({str(weights)!r})")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    out = {}
    probe = Path(__file__).with_name("backend_probe.py")
    for backend in BACKENDS:
        path = tmp / f"{backend}.npz"
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        run = subprocess.run([sys.executable, str(probe), str(path), str(weights)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{backend}: {run.stderr[-2000:]}"
        out[backend] = dict(np.load(path))
    return out


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two Keras backends installed")
@pytest.mark.parametrize("key", ["narrow", "wide", "wide_fore", "wide_back", "spp", "scores", "emd"])
def test_backends_agree(results, key):
    ref = results["tensorflow"][key] if "tensorflow" in results else results[BACKENDS[0]][key]
    for backend, res in results.items():
        assert str(res["backend"]) == backend
        np.testing.assert_allclose(res[key], ref, rtol=2e-4, atol=2e-4, err_msg=f"{backend} {key}")
