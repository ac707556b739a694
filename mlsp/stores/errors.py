"""Store errors, one line each, and telling a damaged store from a busy one.

The classes live in :mod:`mlsp.errors` (the one error tree); every part of the store
package raises them through here, and ``features`` re-exports them.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import StoreBusyError, StoreDamagedError, StoreError, StoreWriteError
from .lock import StoreLock, StoreLockedError, describe_holder, holder

__all__ = ["StoreError", "StoreBusyError", "StoreDamagedError", "StoreWriteError",
           "acquire_lock", "describe_open_error", "os_cause"]


def acquire_lock(path) -> StoreLock:
    """The writer's lock on ``path`` (and its ``.tmp``), or a one-line StoreError.

    Made first by every writer: a folder that refuses writes (read-only, no permission)
    is reported here, before any expensive work."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"{path}: cannot make its folder: {os_cause(err)}") from None
    try:
        return StoreLock(path).acquire()
    except StoreLockedError as err:
        raise StoreBusyError(str(err)) from None
    except OSError as err:
        text = err.strerror or str(err)
        raise StoreError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def os_cause(err: BaseException) -> str:
    """The operating system's words for a failed write ("No space left on device")."""
    m = re.search(r"error message = '([^']+)'", str(err))
    if m:
        return m.group(1)
    if getattr(err, "errno", None):
        return os.strerror(err.errno)
    return _first_line(err)


def describe_open_error(path, err: OSError) -> StoreError:
    """Tell a locked store from a damaged one (HDF5's truncation message says "sblock")."""
    text = " ".join(str(err).split())
    m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if m:
        have, want = int(m.group(1)), int(m.group(2))
        return StoreDamagedError(
            f"{path}: damaged store: truncated to {have:,} of its {want:,} bytes "
            f"({100 * have / max(want, 1):.0f}%); `mlsp repair {path}` keeps the rows written "
            f"before the cut and sets the rest pending")
    if re.search(r"\block\b|unable to lock", text, re.IGNORECASE):
        pid = holder(path)
        return StoreBusyError(f"{path}: open for writing in {describe_holder(pid)} "
                              f"(a running extraction?); wait for it to finish")
    if "signature" in text.lower():
        return StoreDamagedError(f"{path}: damaged store or not HDF5: no HDF5 signature "
                                 f"(the header is overwritten or it is another kind of file)")
    return StoreDamagedError(f"{path}: damaged store, HDF5 cannot open it: "
                             f"{str(err).splitlines()[0]}")
