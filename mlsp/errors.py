"""mlsp's errors: one tree, one-line messages naming the file or option and the cause.

Every error mlsp raises on purpose is an :class:`MLSPError`, and every ``MLSPError`` is a
``ValueError`` (callers that caught ValueError keep working; those that caught the
RuntimeError some of them were before still do).  The command line turns each into one
line (:func:`one_line`), in one handler.  Keras-free, import-free: every layer may use it.
"""
from __future__ import annotations

__all__ = ["MLSPError", "OptionError", "ModelFileError", "StoreError", "StoreBusyError",
           "StoreDamagedError", "StoreWriteError", "WeightsError", "DecodeError",
           "BackendUnavailableError", "one_line"]


class MLSPError(ValueError):
    """Base of mlsp's own errors."""


class OptionError(MLSPError):
    """An option value (or a combination of them) that cannot work."""


class ModelFileError(MLSPError):
    """A trained-head folder whose files are not a readable mlsp model."""


class StoreError(MLSPError):
    """A store that cannot be used as asked; the message names the file and the cause."""


class StoreBusyError(StoreError):
    """Another process writes the store (its lock is held)."""


class StoreDamagedError(StoreError):
    """The file is not a readable HDF5 store (truncated, overwritten header, ...)."""


class StoreWriteError(StoreError):
    """The store cannot be written (disk full, read-only, ...)."""


class WeightsError(MLSPError, RuntimeError):
    """Backbone weights that cannot be found, downloaded or trusted."""


class DecodeError(MLSPError):
    """An image file that cannot be decoded."""


class BackendUnavailableError(MLSPError, RuntimeError):
    """A needed backend or tool is missing (a Keras backend, Ray, the ONNX tools)."""


def one_line(err) -> str:
    """The first non-empty line of an error (or message), else the exception's type name;
    a KeyError's message without the quotes ``str(KeyError)`` adds."""
    if isinstance(err, BaseException):
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        fallback = type(err).__name__
    else:
        text, fallback = str(err), "error"
    return next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), fallback)
