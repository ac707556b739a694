"""The MLSP feature store: one HDF5 file, a public format readable with plain h5py.

Hosu et al. 2019, sec. 3.1: features of the 8 augmentations of every image are
stored "in a single HDF5 file", as float16 ("no significant decrease in
performance [...] when converting features from 32 to 16 bit").

Layout (``format = "mlsp-features"``, ``format_version = 1``)::

    /                 attrs: configuration (backbone, weights, pooling, ...)
    images/id         (N,)  UTF-8 string
    images/path       (N,)  UTF-8 string
    images/height     (N,)  int32, original size (0 until processed)
    images/width      (N,)  int32
    images/scale      (N,)  float32, resize factor applied before cropping (1 = none)
    images/status     (N,)  int8: 0 pending, 1 done, -1 failed
    images/error      (N,)  fixed-length UTF-8 (256 bytes), reason of a failure
    levels/name       (L,)  UTF-8 string, tapped layers in model order
    levels/channels   (L,)  int32
    levels/offset     (L,)  int32, first channel of each level in the concatenation
    features/narrow   (N, A, C)        float16, chunk (1, 1, C)
    features/wide     (N, A, P, P, C)  float16, chunk (1, 1, P, P, C)   (if P > 0)
    features/wide_fore, features/wide_back  (N, A, P, P, C)  float16   (optional, M+MNet
                      ForePool / BackPool, Eq. 1-2), features/spp (N, A, 26, C) float16
                      (optional, MTP-NasNet pyramid 1+9+16 cells); chunk = one row.
                      Root attribute ``pooling_kinds`` lists the kinds ("area" if absent).

Crash safety: every dataset is allocated when the file is made (the file is
built under a temporary name and renamed into place), so extraction only ever
overwrites raw bytes inside space that already exists and never touches HDF5
metadata.  Rows are written and flushed before their status turns to 1, so a
``kill -9`` loses at most the images in flight.  Fixed-length error strings
keep that true for failures too.  No compression, for the same reason (and
float16 activations compress poorly).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..files import describe_kind

from .errors import (StoreBusyError, StoreDamagedError, StoreError,  # noqa: F401 (re-exported)
                     StoreWriteError, acquire_lock, describe_open_error, os_cause)
from .lock import StoreLock
from .sanity import check_declared_rows

FORMAT = "mlsp-features"
FORMAT_VERSION = 1
ERROR_BYTES = 256
#: ``images/status`` codes: the one definition (everything else imports these names).
PENDING, DONE, FAILED = 0, 1, -1
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed"}

#: Configuration attributes that must agree for a store to be resumed or reused.
IDENTITY_KEYS = (
    "backbone", "alpha", "weights_sha256", "weights_seed", "preprocessing",
    "augmentation_mode", "augmentations", "crop_fraction", "pool_narrow", "pool_wide",
    "max_side", "min_side", "pooling_kinds",
)
#: The value an identity key has in a store made before the key existed (or set to None).
IDENTITY_DEFAULTS = {"pooling_kinds": ["area"]}
#: Keys of a row (``write_rows``) that are not feature kinds.
ROW_META = ("index", "height", "width", "scale")


@dataclass(frozen=True)
class Level:
    name: str
    channels: int
    offset: int


def _dataset(group, name, shape, dtype, chunks=None):
    """A dataset whose space is allocated now, never filled (see the module doc)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if chunks is not None:
        dcpl.set_chunk(tuple(chunks))
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(tuple(shape))
    tid = h5py.h5t.py_create(dtype if isinstance(dtype, np.dtype) else np.dtype(dtype), logical=True)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _text(values):
    return np.array([str(v) for v in values], dtype=h5py.string_dtype("utf-8"))


def _clip_utf8(text: str, limit: int = ERROR_BYTES) -> bytes:
    data = " ".join(str(text).split()).encode("utf-8")
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


def _attr(value):
    if isinstance(value, (list, tuple)):
        return _text(value) if all(isinstance(v, str) for v in value) else np.asarray(value)
    if value is None:
        return ""
    return value


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class FeatureStore:
    """Read and write one feature store.  Use :meth:`create` or :meth:`open`."""

    def __init__(self, h5: h5py.File, path: Path, lock: StoreLock | None = None):
        self.h5 = h5
        self.path = Path(path)
        self.lock = lock  # held by a writer for as long as the store is open
        if self.h5.attrs.get("format") != FORMAT:
            raise StoreError(f"{path}: not an mlsp feature store (no format='{FORMAT}' attribute)")
        version = int(self.h5.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise StoreError(f"{path}: store format version {version}, this mlsp reads {FORMAT_VERSION}")
        check_declared_rows(self.h5, self.path)

    # -- making and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path, ids, paths, config: dict, levels, n_augmentations: int,
               wide_size: int, extra: dict | None = None,
               lock: StoreLock | None = None) -> "FeatureStore":
        """Make a new store for ``ids``/``paths``, atomically (temp file, then rename).

        ``extra``: more feature kinds, name -> per-row shape, e.g.
        ``{"wide_fore": (5, 5, C), "spp": (26, C)}``: ``features/<name>`` of shape
        (N, A, *shape), float16, one row per chunk, allocated now like the others.
        ``lock``: the caller's :func:`acquire_lock` (else taken here); it stays held by
        the returned store.  A failed write (full disk) removes the temporary file and
        raises one line.
        """
        path = Path(path)
        if len(ids) != len(paths):
            raise ValueError("ids and paths differ in length")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"{path}: cannot make its folder: {os_cause(err)}") from None
        own = lock is None
        lock = lock or acquire_lock(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            cls._build(tmp, ids, paths, config, levels, n_augmentations, wide_size, extra)
            os.replace(tmp, path)
        except BaseException as err:
            try:
                tmp.unlink()
            except OSError:
                pass
            if own:
                lock.release()
            if isinstance(err, OSError):
                raise StoreWriteError(f"{path}: cannot create the store: {os_cause(err)} "
                                      f"(nothing was written)") from None
            raise
        return cls.open(path, "r+", lock=lock)

    @staticmethod
    def _build(tmp, ids, paths, config, levels, n_augmentations, wide_size, extra):
        channels = int(sum(lv.channels for lv in levels))
        n = len(ids)
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["format_version"] = FORMAT_VERSION
            for key, value in config.items():
                h5.attrs[key] = _attr(value)
            img = h5.create_group("images")
            img.create_dataset("id", data=_text(ids))
            img.create_dataset("path", data=_text(paths))
            for name, dtype in (("height", "int32"), ("width", "int32"), ("scale", "float32")):
                _dataset(img, name, (n,), dtype)[...] = 0
            _dataset(img, "status", (n,), "int8")[...] = PENDING
            _dataset(img, "error", (n,), h5py.string_dtype("utf-8", ERROR_BYTES))[...] = b""
            lev = h5.create_group("levels")
            lev.create_dataset("name", data=_text([lv.name for lv in levels]))
            lev.create_dataset("channels", data=np.array([lv.channels for lv in levels], "int32"))
            lev.create_dataset("offset", data=np.array([lv.offset for lv in levels], "int32"))
            feats = h5.create_group("features")
            if n:
                _dataset(feats, "narrow", (n, n_augmentations, channels), "float16",
                         (1, 1, channels))
                if wide_size:
                    _dataset(feats, "wide", (n, n_augmentations, wide_size, wide_size, channels),
                             "float16", (1, 1, wide_size, wide_size, channels))
            else:  # HDF5 cannot chunk an empty axis; an empty store is still a valid store
                feats.create_dataset("narrow", (0, n_augmentations, channels), "float16")
                if wide_size:
                    feats.create_dataset(
                        "wide", (0, n_augmentations, wide_size, wide_size, channels), "float16")
            for name, shape in (extra or {}).items():
                if name in ("narrow", "wide") or name in ROW_META or "/" in name:
                    raise ValueError(f"extra feature kind {name!r} not allowed")
                shape = tuple(int(v) for v in shape)
                if n:
                    _dataset(feats, name, (n, n_augmentations) + shape, "float16",
                             (1, 1) + shape)
                else:
                    feats.create_dataset(name, (0, n_augmentations) + shape, "float16")
            h5.flush()
            os.fsync(h5.id.get_vfd_handle())

    @classmethod
    def open(cls, path, mode: str = "r", lock: StoreLock | None = None) -> "FeatureStore":
        """Open a store; a writer (mode "r+") holds its lock until :meth:`close`
        (``lock``: one the caller already holds, handed over to the store)."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such store")
        kind = path.stat().st_mode
        if not stat.S_ISREG(kind):  # HDF5 would block on a FIFO, read a device forever
            raise StoreError(f"{path}: {describe_kind(kind)}, not a store file")
        own = lock is None and mode != "r"
        if own:
            lock = acquire_lock(path)
        try:
            try:
                h5 = h5py.File(path, mode)
            except OSError as err:
                raise describe_open_error(path, err) from None
            try:
                return cls(h5, path, lock if mode != "r" else None)
            except Exception:
                h5.close()
                raise
        except BaseException:
            if own:
                lock.release()
            raise

    @property
    def is_open(self) -> bool:
        return bool(self.h5.id.valid)

    def close(self):
        try:
            if self.h5.id.valid:
                self.h5.close()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading ------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return {k: _plain(v) for k, v in self.h5.attrs.items()}

    @property
    def ids(self) -> list[str]:
        return [_plain(v) for v in self.h5["images/id"][...]]

    @property
    def paths(self) -> list[str]:
        return [_plain(v) for v in self.h5["images/path"][...]]

    @property
    def status(self) -> np.ndarray:
        return self.h5["images/status"][...]

    @property
    def errors(self) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.h5["images/error"][...]]

    @property
    def levels(self) -> list[Level]:
        g = self.h5["levels"]
        return [Level(_plain(n), int(c), int(o))
                for n, c, o in zip(g["name"][...], g["channels"][...], g["offset"][...])]

    @property
    def augmentations(self) -> list[str]:
        return list(self.config["augmentations"])

    @property
    def n_images(self) -> int:
        return int(self.h5["images/id"].shape[0])

    @property
    def channels(self) -> int:
        return int(self.h5["features/narrow"].shape[-1])

    def has(self, kind: str) -> bool:
        return f"features/{kind}" in self.h5

    def dataset(self, kind: str = "narrow") -> h5py.Dataset:
        if not self.has(kind):
            raise StoreError(f"{self.path}: has no features/{kind}")
        return self.h5[f"features/{kind}"]

    def read(self, kind: str, rows, aug=slice(None), channels=slice(None)) -> np.ndarray:
        """``features/<kind>[rows, aug, ..., channels]`` as stored (float16).

        ``rows``: an int, a slice or ascending indices; ``aug`` an int or a slice;
        ``channels``: a slice (fast: one hyperslab) or ascending indices (read whole
        rows, then pick: h5py takes one index list per read)."""
        ds = self.dataset(kind)
        sel = (rows, aug) + (slice(None),) * (ds.ndim - 3)
        if isinstance(channels, slice):
            return ds[sel + (channels,)]
        return ds[sel][..., channels]

    def done_indices(self) -> np.ndarray:
        return np.flatnonzero(self.status == DONE)

    def select_levels(self, spec=None) -> tuple[list[Level], np.ndarray]:
        """Levels chosen by ``spec`` and the channel indices they occupy.

        ``spec``: None (all), or a comma-separated string / list of level names,
        indices (negative counts from the end) and Python-style ranges:
        ``"-5:"`` is the last five levels, ``"0:3"`` the first three,
        ``"mixed_5b,block8_10_mixed"`` two by name.
        """
        levels = self.levels
        if spec is None or spec == "" or spec == "all":
            chosen = list(range(len(levels)))
        else:
            items = spec.split(",") if isinstance(spec, str) else list(spec)
            names = {lv.name: i for i, lv in enumerate(levels)}
            chosen = []
            for item in items:
                item = str(item).strip()
                if item in names:
                    chosen.append(names[item])
                elif re.fullmatch(r"-?\d+", item):
                    k = int(item)
                    if not -len(levels) <= k < len(levels):
                        raise StoreError(f"{self.path}: level index {k} out of range "
                                         f"(the store has {len(levels)} levels)")
                    chosen.append(k % len(levels))
                elif re.fullmatch(r"-?\d*:-?\d*", item):
                    a, b = (int(p) if p else None for p in item.split(":"))
                    chosen.extend(range(len(levels))[slice(a, b)])
                else:
                    raise StoreError(f"{self.path}: no level {item!r} (names, indices or a:b; "
                                     f"e.g. -5: for the last five)")
            chosen = sorted(set(chosen))
            if not chosen:
                raise StoreError(f"{self.path}: level selection {spec!r} selects nothing")
        picked = [levels[i] for i in chosen]
        index = np.concatenate([np.arange(lv.offset, lv.offset + lv.channels) for lv in picked])
        return picked, index

    def info(self) -> dict:
        status = self.status
        st = os.stat(self.path)
        datasets = {}
        self.h5.visititems(lambda name, obj: datasets.__setitem__(name, {
            "shape": list(obj.shape), "dtype": str(obj.dtype),
            "chunks": list(obj.chunks) if obj.chunks else None,
        }) if isinstance(obj, h5py.Dataset) else None)
        errors = self.errors
        failed = [{"id": i, "error": errors[k]}
                  for k, i in zip(np.flatnonzero(status == FAILED), np.array(self.ids)[status == FAILED])]
        return {
            "path": str(self.path),
            "config": self.config,
            "images": int(status.size),
            "done": int((status == DONE).sum()),
            "failed": int((status == FAILED).sum()),
            "pending": int((status == PENDING).sum()),
            "levels": len(self.levels),
            "channels": self.channels,
            "augmentations": self.augmentations,
            "datasets": datasets,
            "bytes_on_disk": int(st.st_blocks * 512),
            "bytes_apparent": int(st.st_size),
            "failures": failed,
        }

    # -- writing (extraction) -----------------------------------------------------------
    def write_rows(self, rows):
        """Write finished images, then flush and fsync, then mark them done (crash-safe order).

        ``rows``: iterable of dicts with index, height, width, scale and one array per
        feature kind: narrow (A, C), wide (A, P, P, C), and any other ``features/``
        dataset (e.g. wide_fore, spp).  A row must carry (not None) every kind the store
        has (else StoreError, before anything is written); kinds the store lacks are
        ignored, as "wide" always was for a store made with wide size 0.  See
        :meth:`write_block`."""
        self.write_block(rows, ())

    def mark_failed(self, failures):
        """Record ``(index, reason, height, width)`` failures; flushed at once."""
        self.write_block((), failures)

    def write_block(self, rows, failures):
        """Write finished ``rows`` (see :meth:`write_rows`) and ``failures`` (``(index,
        reason, height, width)``), fsync, then set their statuses and fsync again: two
        fsyncs a block, and no status changes before its row's bytes are on the device.

        Features go straight to their preallocated chunks (``write_direct_chunk``: one
        chunk is one row and augmentation), never through HDF5's chunk cache, whose
        write errors surface only when a dataset object is garbage-collected and are
        then lost (a full disk used to leave rows of zeros marked done).  Any failed
        write raises :class:`StoreWriteError` before a status changes.
        """
        rows = sorted(rows, key=lambda r: r["index"])
        failures = list(failures)
        if not rows and not failures:
            return
        feats = self.h5["features"]
        kinds = list(feats.keys())
        for r in rows:
            missing = [k for k in kinds if r.get(k) is None]
            if missing:
                raise StoreError(f"{self.path}: row {r['index']} lacks features {missing}")
        datasets = {kind: feats[kind] for kind in kinds}
        img = self.h5["images"]
        try:
            for r in rows:
                i = r["index"]
                for kind, ds in datasets.items():
                    self._write_row(ds, i, r[kind])
                img["height"][i] = r["height"]
                img["width"][i] = r["width"]
                img["scale"][i] = r["scale"]
                img["error"][i] = b""
            for index, reason, height, width in failures:
                img["error"][index] = _clip_utf8(reason)
                img["height"][index] = height or 0
                img["width"][index] = width or 0
            self._sync()
            for r in rows:
                img["status"][r["index"]] = DONE
            for index, *_ in failures:
                img["status"][index] = FAILED
            self._sync()
        except OSError as err:
            raise self._write_error(err, len(rows) + len(failures)) from None

    @staticmethod
    def _write_row(ds: h5py.Dataset, index: int, value) -> None:
        block = np.ascontiguousarray(np.broadcast_to(np.asarray(value), ds.shape[1:]), "<f2")
        if ds.is_virtual or ds.chunks != (1, 1) + tuple(ds.shape[2:]):
            ds[index] = block  # not an extraction store's layout: let h5py do it
            return
        for a in range(block.shape[0]):
            ds.id.write_direct_chunk((index, a) + (0,) * (block.ndim - 1), block[a].tobytes())

    def _sync(self) -> None:
        """Flush HDF5's buffers and have the kernel put the bytes on the device."""
        self.h5.flush()
        os.fsync(self.h5.id.get_vfd_handle())

    def _write_error(self, err: BaseException, n_rows: int) -> StoreWriteError:
        try:
            status = self.status
            counts = f"{int((status == DONE).sum())} of {status.size} rows are done and safe"
        except Exception:
            counts = "rows marked done before this block are safe"
        return StoreWriteError(f"{self.path}: write failed: {os_cause(err)}; {counts} "
                               f"(the {n_rows} being written stay pending); free space and "
                               f"run the same command again to resume")

    def reset_failed(self):
        """Turn failed images back to pending (``--retry-failed``)."""
        status = self.status
        failed = np.flatnonzero(status == FAILED)
        if failed.size:
            status[failed] = PENDING
            self.h5["images/status"][...] = status
            self._sync()
        return int(failed.size)


def config_mismatch(stored: dict, wanted: dict) -> list[str]:
    """The identity settings in which two configurations differ, as readable lines."""
    out = []
    for key in IDENTITY_KEYS:
        a, b = (d.get(key) for d in (stored, wanted))
        a, b = (IDENTITY_DEFAULTS.get(key, "") if v is None else v for v in (a, b))
        if isinstance(a, float) or isinstance(b, float):
            try:
                if float(a) == float(b):
                    continue
            except (TypeError, ValueError):
                pass
        if _plain(a) != _plain(b) and json.dumps(_plain(a)) != json.dumps(_plain(b)):
            out.append(f"{key}: store has {a!r}, asked for {b!r}")
    return out
