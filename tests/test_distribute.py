"""Data-parallel head training (``train_head(distribute=True)`` / ``mlsp train --distribute``)
on CPU with 2 logical devices, each backend in its own subprocess (slow: ~40-60 s each)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlsp.stores.features import Level
from mlsp.stores.reader import StoreFeatures
from mlsp.training.data import FeatureSequence

JOB = r'''
import json, sys
backend, tmp = sys.argv[1], sys.argv[2]
if backend == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
import numpy as np
from mlsp.labels import Labels
from mlsp.stores.features import FeatureStore, Level
from mlsp.inference.model_format import read_model as load_trained
from mlsp.training.trainer import train_head
tmp = Path(tmp)
n, A, C = 40, 8, 6
cfg = {"backbone": "toy", "alpha": 1.0, "weights": "toy.h5", "weights_sha256": "abc",
       "weights_seed": -1, "preprocessing": "x", "augmentation_mode": "crops",
       "augmentations": [f"a{i}" for i in range(A)], "crop_fraction": 0.875,
       "pool_narrow": 1, "pool_wide": 2, "max_side": 0, "min_side": 32}
ids = [f"i{k:03d}" for k in range(n)]
fs = FeatureStore.create(tmp / "s.h5", ids, ids, cfg, [Level("a", 4, 0), Level("b", 2, 4)], A, 2)
rng = np.random.default_rng(0)
base = rng.normal(size=(n, 1, C))
nar = (base + 0.1 * rng.normal(size=(n, A, C))).astype(np.float16)
fs.write_rows([{"index": k, "narrow": nar[k], "height": 64, "width": 64, "scale": 1.0,
                "wide": np.broadcast_to(nar[k][:, None, None], (A, 2, 2, C)).astype(np.float16)}
               for k in range(n)])
fs.close()
labels = Labels(ids=ids, mos=5 + base[:, 0, 0], score_range=(1, 10))
res = train_head(tmp / "s.h5", labels, head="single_3fc", epochs=2, batch_size=15, lr=1e-3,
                 width=16, val_fraction=0.25, out_dir=tmp / "m", progress=False, plots=False,
                 baseline=False, distribute=True)
model, side = load_trained(tmp / "m")
print("RESULT " + json.dumps({"distribute": side["train"]["distribute"],
                              "batch": side["train"]["batch_size"], "backend": side["backend"],
                              "n_pred": int(len(res.predictions["mos_pred"])),
                              "finite": bool(np.isfinite(res.predictions["mos_pred"]).all()),
                              "epochs": len(res.history["loss"])}))
'''


def _run(backend, tmp_path, extra_env):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **extra_env}
    script = tmp_path / "job.py"
    script.write_text(JOB)
    p = subprocess.run([sys.executable, str(script), backend, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stdout[-2000:] + p.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def _check(got, backend, strategy):
    d = got["distribute"]
    assert got["backend"] == backend and d["strategy"] == strategy
    assert d["replicas"] == 2 and len(d["devices"]) == 2
    assert d["model_devices"] == 2  # the variables really lived on both devices
    assert got["batch"] == 16  # 15 rounded up to a multiple of the 2 devices
    assert got["epochs"] == 2 and got["n_pred"] == 40 and got["finite"]


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpu_devices(tmp_path):
    pytest.importorskip("jax")
    got = _run("jax", tmp_path, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    _check(got, "jax", "keras.distribution.DataParallel")


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_on_two_logical_cpus(tmp_path):
    pytest.importorskip("tensorflow")
    got = _run("tensorflow", tmp_path, {})
    _check(got, "tensorflow", "tf.distribute.MirroredStrategy")


def test_batches_split_evenly_across_devices(tmp_path):
    """multiple_of: every batch (the last, short one included) splits evenly."""
    from mlsp.stores.features import FeatureStore

    A, C, n = 8, 3, 7
    cfg = {"backbone": "toy", "alpha": 1.0, "weights": "toy.h5", "weights_sha256": "abc",
           "weights_seed": -1, "preprocessing": "x", "augmentation_mode": "crops",
           "augmentations": [f"a{i}" for i in range(A)], "crop_fraction": 0.875,
           "pool_narrow": 1, "pool_wide": 0, "max_side": 0, "min_side": 32}
    ids = [f"i{k}" for k in range(n)]
    fs = FeatureStore.create(tmp_path / "s.h5", ids, ids, cfg, [Level("a", C, 0)], A, 0)
    fs.write_rows([{"index": k, "narrow": np.full((A, C), k, np.float16), "height": 8,
                    "width": 8, "scale": 1.0} for k in range(n)])
    fs.close()
    f = StoreFeatures(tmp_path / "s.h5", progress=False)
    seq = FeatureSequence(f, np.arange(n), np.zeros(n), batch_size=4, augment="random",
                          multiple_of=2)
    sizes = [len(seq[b][0]) for b in range(len(seq))]
    assert sizes == [4, 2]  # 7 samples: one dropped (a different one each epoch)
    with pytest.raises(ValueError, match="multiple"):
        FeatureSequence(f, np.arange(n), np.zeros(n), batch_size=5, multiple_of=2)
