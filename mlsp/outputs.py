"""Writing results safely: checked writable before the work, written whole or not at all.

A prediction file on a full device, an ONNX export into a read-only folder, a report into
a folder that cannot be made: found before minutes of work (:func:`check_writable` writes
and syncs a small probe file next to the output), and written through a temporary file
renamed over the output (:func:`write_atomic`), so a failure never leaves half a file and
is one line, :class:`OutputError`, naming the file and the cause.  Keras-free.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import MLSPError

__all__ = ["OutputError", "check_writable", "check_folder_writable", "write_atomic",
           "atomic_path", "output_error"]

#: Bytes the writability probe writes and syncs: a full device refuses them.
PROBE_BYTES = 64 * 1024


class OutputError(MLSPError, ValueError):
    """An output that cannot be written (read-only folder, full device, not a file)."""


def output_error(path, err: OSError, what: str = "output") -> OutputError:
    cause = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        cause += " (the device is full; free space or choose another place)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause += " (choose a folder you can write to)"
    return OutputError(f"{os.fspath(path)}: cannot write the {what}: {cause}; nothing was "
                       f"written")


def _special(path: Path) -> bool:
    """An existing output that is not a regular file or a folder (/dev/null, a FIFO):
    written in place, never replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_folder_writable(folder, what: str = "output folder", make: bool = True,
                          shown=None) -> Path:
    """Prove a file can be written and synced in ``folder``: made first (``make``), or else,
    while it does not exist, in the nearest folder above it that does."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: cannot write the {what}: it exists and is not a folder")
    place = folder
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            while not place.exists() and place != place.parent:
                place = place.parent
    except FileExistsError:
        raise OutputError(f"{folder}: cannot write the {what}: a file is in the way of "
                          f"the folder") from None
    except OSError as err:
        raise output_error(shown or folder, err, what) from None
    fd, probe = None, None
    try:
        fd, probe = tempfile.mkstemp(dir=place, prefix=".mlsp-probe-")
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    except OSError as err:
        raise output_error(shown or folder, err, what) from None
    finally:
        if fd is not None:
            os.close(fd)
        if probe is not None:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return folder


def check_writable(path, what: str = "output") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder in its
    place, a parent that cannot be made, a read-only folder, a full device."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: it is a folder")
    if _special(path):
        return path
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: cannot write the {what}: the file is read-only")
    check_folder_writable(path.parent if str(path.parent) else Path("."), what, shown=path)
    return path


@contextlib.contextmanager
def atomic_path(path, what: str = "output"):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.  Any
    OSError (full device, permission) is an :class:`OutputError`; the temporary is removed."""
    path = Path(path)
    if _special(path):
        try:
            yield path
        except OSError as err:
            raise output_error(path, err, what) from None
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise output_error(path, err, what) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path, data, what: str = "output") -> Path:
    """Write ``data`` (str or bytes) to ``path`` whole, or raise :class:`OutputError`."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path, what) as tmp:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
    return Path(path)
