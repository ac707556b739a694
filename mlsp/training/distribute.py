"""Data-parallel head training over all local devices (``train_head(distribute=True)``).

JAX (and any backend with the Keras distribution API): ``keras.distribution.DataParallel``
over ``keras.distribution.list_devices()``: variables replicated, each batch split
across the devices.  TensorFlow: ``tf.distribute.MirroredStrategy`` (TF-only code,
used only behind this option).  Both are set up by :func:`data_parallel`, a context
manager wrapped around model building, compiling and fitting.
"""
from __future__ import annotations

import contextlib

import keras

__all__ = ["data_parallel", "model_devices"]


@contextlib.contextmanager
def data_parallel(enabled: bool = True):
    """Yields ``info``: {"strategy": name, "devices": [...], "replicas": n}.

    With ``enabled=False`` nothing changes (one device, the backend's default).
    """
    if not enabled:
        yield {"strategy": None, "devices": [], "replicas": 1}
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
            [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield {"strategy": "tf.distribute.MirroredStrategy", "devices": list(devices),
                   "replicas": int(strategy.num_replicas_in_sync)}
        return
    if backend != "jax":
        raise ValueError(f"distribute=True needs the jax or tensorflow backend, not {backend!r}")
    from keras import distribution as kd

    devices = kd.list_devices()
    previous = kd.distribution()
    kd.set_distribution(kd.DataParallel(devices=devices))
    try:
        yield {"strategy": "keras.distribution.DataParallel", "devices": list(devices),
               "replicas": len(devices)}
    finally:
        kd.set_distribution(previous)


def model_devices(model) -> int:
    """How many devices hold (a replica of) the model's first variable."""
    v = model.trainable_variables[0]
    backend = keras.backend.backend()
    if backend == "jax":
        return len(v.value.sharding.device_set)
    if backend == "tensorflow":
        values = getattr(v.value if hasattr(v, "value") else v, "values", None)
        inner = getattr(v, "_value", None)
        values = values or getattr(inner, "values", None)
        return len(values) if values else 1
    return 1
