"""One writer per store: an advisory lock held for the whole life of a writing job.

Why a lock file (``STORE.lock``, ``flock``) and not HDF5's own file locking:
HDF5 locks the inode it opened, and only while it is open.  A store's life spans
several files and moments that HDF5 does not cover: it is built as ``STORE.tmp``
(opening that with mode "w" truncates it *before* HDF5 tries its lock), renamed
into place, unlinked by ``--overwrite``, reopened to resume.  A lock on a stable
name beside the store covers all of them, is taken before anything is touched,
and is released by the kernel when the holder dies (``kill -9`` leaves no stale
lock, only a harmless empty file, which the next writer reuses).  The holder
writes its pid into the file so that a refused writer can name it.

Readers (``info``, training) do not take this lock; HDF5's own lock keeps them
out of a file while it is open for writing, and :func:`holder` names the writer.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["StoreLock", "StoreLockedError", "holder", "lock_path"]


class StoreLockedError(OSError):
    """Another process is writing the store; the message names it (pid) when it can."""


def lock_path(store) -> Path:
    store = Path(store)
    return store.with_name(store.name + ".lock")


def _read_pid(fd) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "ignore").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def holder(store) -> int | None:
    """The pid of the process writing ``store`` (0 when the pid is unknown), or None
    when no process holds its lock."""
    path = lock_path(store)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(pid: int | None) -> str:
    return "another process" if not pid else f"process {pid}"


class StoreLock:
    """Exclusive, non-blocking lock on ``STORE.lock``; :meth:`acquire` refuses in one line."""

    def __init__(self, store):
        self.store = Path(store)
        self.path = lock_path(self.store)
        self.fd: int | None = None

    def acquire(self) -> "StoreLock":
        if self.fd is not None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise OSError(err.errno, f"{self.store}: cannot write in {self.path.parent} "
                                         f"({err.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise StoreLockedError(
                    f"{self.store}: being written by {describe_holder(pid)} (lock {self.path.name}); "
                    f"wait for it to finish, or stop it and run again") from None
            try:  # the file we locked may have been unlinked by its last holder meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:  # the pid is for messages only: a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still held: a waiter re-checks the inode
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
