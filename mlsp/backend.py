"""Loading the Keras backend without its start-up chatter, or a one-line error naming the fix.

TensorFlow prints absl / oneDNN notices on file descriptor 2 at import (before any log level
applies) and, on a GPU build, probes CUDA on first use ("failed call to cuInit" on a CPU
host); none of it says anything to an mlsp user, and the README promises a silent library.
:func:`load_backend` sets TensorFlow's log variables (only those the user has not set) and
imports Keras with fd 2 muted.  The command line and ``import mlsp``'s entry points call it.
"""
from __future__ import annotations

import os
import sys

from .errors import BackendUnavailableError

__all__ = ["load_backend", "QUIET_ENV", "BACKEND_FIX"]

#: TensorFlow's own logging variables and their quiet values (a user's own setting wins).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR"}
#: What installs each Keras backend (named in the one-line error when it is missing).
BACKEND_FIX = {"tensorflow": "pip install tensorflow", "jax": "pip install 'mlsp[jax]'",
               "torch": "pip install 'mlsp[torch]'"}


def load_backend() -> None:
    """Import Keras and its backend quietly (once); a missing or broken backend is a
    :class:`~mlsp.errors.BackendUnavailableError` naming the fix, not a traceback."""
    if "keras" in sys.modules:
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # the user chose no TensorFlow logging:
        import logging  # its Python-side notices (e.g. tf.function retracing, which model

        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # selection's many small
    for key, value in QUIET_ENV.items():  # fits trigger) stay out of a silent library
        os.environ.setdefault(key, value)
    backend = os.environ.get("KERAS_BACKEND") or "tensorflow"
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import keras

                if keras.backend.backend() == "tensorflow":  # a GPU build probes CUDA here,
                    import tensorflow as tf  # logging "failed call to cuInit" on CPU hosts

                    tf.config.list_physical_devices("GPU")
            finally:
                os.dup2(saved, 2)
    except Exception as err:  # ImportError, or a backend built against other libraries
        for name in [m for m in sys.modules if m == "keras" or m.startswith("keras.")]:
            del sys.modules[name]  # a half-imported keras must not pass for a working one
        from .errors import one_line

        fix = BACKEND_FIX.get(backend, f"install {backend}")
        raise BackendUnavailableError(
            f"the Keras backend '{backend}' cannot be loaded ({type(err).__name__}: "
            f"{one_line(err)}); fix: {fix}, or choose an installed backend with "
            f"KERAS_BACKEND=tensorflow|jax|torch") from None
    finally:
        os.close(saved)
