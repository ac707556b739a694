"""Reading input files safely: a regular file, never more bytes than the format can need.

A path in a photo folder or a list may be a FIFO (opening it waits for a writer that never
comes), a device (``/dev/zero`` reads forever), a folder or a socket, directly or through a
symbolic link.  :func:`read_regular` opens without blocking (``O_NONBLOCK``), checks the
type of what was opened (``fstat``, so a link swapped after a check cannot fool it) and
reads at most ``max_bytes``; anything else is :class:`UnreadableFileError`, one line naming
the file and what it is.  Keras-free.
"""
from __future__ import annotations

import os
import stat

from .errors import MLSPError

__all__ = ["UnreadableFileError", "read_regular", "describe_kind", "LIST_MAX_BYTES",
           "os_cause", "display_path"]

#: The most a list, label or sidecar file may hold (AVA.txt is 20 MB; a list of ten
#: million paths about 1 GB).
LIST_MAX_BYTES = 2 << 30


class UnreadableFileError(MLSPError, ValueError):
    """An input that is not a readable regular file; ``cause`` is the reason alone."""

    def __init__(self, name: str, cause: str):
        super().__init__(name, cause)
        self.name, self.cause = name, cause

    def __str__(self) -> str:
        return f"{self.name}: {self.cause}"


def display_path(path) -> str:
    """A path as text that can always be printed and stored: bytes of a file name that
    are not UTF-8 are written as ``\\xNN`` escapes."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def os_cause(err: OSError) -> str:
    return err.strerror or type(err).__name__


def describe_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, words in ((stat.S_ISDIR, "a folder (directory)"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _link_note(path) -> str:
    try:
        return f" (symbolic link to {display_path(os.readlink(path))})" if os.path.islink(path) else ""
    except OSError:
        return ""


def read_regular(path, max_bytes: int, what: str = "file", name: str | None = None) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Raises :class:`UnreadableFileError` naming the file and the cause: a FIFO, device,
    socket or folder (through a link or not), a broken link, a file larger than the format
    can need, or the OS error (permission, name too long, ...)."""
    name = name or display_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if os.path.islink(path) and not os.path.exists(path):
            raise UnreadableFileError(name, f"broken symbolic link (to "
                                            f"{display_path(os.readlink(path))})") from None
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise UnreadableFileError(name, f"{describe_kind(mode)}{_link_note(path)}, not a "
                                            f"regular {what}") from None
        raise UnreadableFileError(name, f"cannot read {what}: {os_cause(err)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(name, f"{describe_kind(st.st_mode)}{_link_note(path)}, "
                                            f"not a regular {what}; nothing was read from it")
        if st.st_size > max_bytes:
            raise UnreadableFileError(name, f"{st.st_size:,} bytes, more than a {what} can "
                                            f"need (at most {max_bytes:,})")
        os.set_blocking(fd, True)
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise UnreadableFileError(name, f"grew past {max_bytes:,} bytes while being read")
        return b"".join(chunks)
    except OSError as err:
        raise UnreadableFileError(name, f"cannot read {what}: {os_cause(err)}") from None
    finally:
        os.close(fd)
