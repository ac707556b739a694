"""Salvage a damaged store (``mlsp repair``): keep the rows that read back, redo the rest.

The store is built so that this is possible (see :mod:`mlsp.stores.features`):
all metadata and every chunk are allocated when the file is made, features of a
row live only in that row's chunks, and a row is marked done after its bytes are
on disk.  A store cut short (a copy that stopped, a full disk during a copy, a
file system that lost its tail) therefore keeps everything that lies before the
cut.  Repair re-extends the file to the length its header declares (the missing
tail reads as zeros, a hole), then checks every done row: a row whose chunks all
lie before the cut and read back stays done; any other row goes back to pending,
so that running the same extraction again redoes exactly those rows.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from .features import (DONE, FAILED, FeatureStore, StoreDamagedError, StoreError, acquire_lock,
                       describe_open_error)

__all__ = ["RepairReport", "repair_store"]


@dataclass
class RepairReport:
    path: str
    damage: str | None  # None: the file opened as it is
    rows: int = 0
    done_before: int = 0
    kept: int = 0
    reset: list = field(default_factory=list)  # row indices set back to pending
    changed: bool = False

    def as_dict(self) -> dict:
        return {"path": self.path, "damage": self.damage, "rows": self.rows,
                "done_before": self.done_before, "kept": self.kept,
                "reset": len(self.reset), "reset_rows": self.reset, "changed": self.changed}


def _declared_size(path: Path) -> tuple[int, int] | None:
    """(actual size, size the header declares) of a truncated HDF5 file, else None."""
    try:
        with h5py.File(path, "r", locking=False):
            return None
    except OSError as err:
        text = " ".join(str(err).split())
        m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
        if not m:
            raise describe_open_error(path, err) from None
        return int(m.group(1)), int(m.group(2))


def _row_reads_back(datasets, index: int, limit: int) -> bool:
    """Every chunk of the row is indexed, lies before ``limit`` and reads back."""
    for ds in datasets:
        try:
            if ds.chunks == (1, 1) + tuple(ds.shape[2:]) and not ds.is_virtual:
                for a in range(ds.shape[1]):
                    info = ds.id.get_chunk_info_by_coord((index, a) + (0,) * (ds.ndim - 2))
                    if info.byte_offset is None or info.byte_offset + info.size > limit:
                        return False
            ds[index]
        except Exception:  # HDF5 raises OSError, RuntimeError, ValueError, KeyError...
            return False
    return True


def repair_store(path, check_only: bool = False) -> RepairReport:
    """Find the damage and (unless ``check_only``) rebuild the store from what reads back.

    The rebuilt store has the same configuration, image list and levels; rows that
    read back are copied and stay done, failures stay failed, every other row is
    pending.  It replaces the damaged file atomically.  Raises
    :class:`StoreDamagedError` when even the image list or configuration is lost.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    lock = acquire_lock(path)
    try:
        cut = _declared_size(path)
        limit, damage = os.path.getsize(path), None
        if cut is not None:
            have, want = cut
            damage = (f"truncated to {have:,} of its {want:,} bytes "
                      f"({100 * have / max(want, 1):.0f}%)")
            limit = have
            os.truncate(path, want)  # the lost tail becomes a hole that reads as zeros
        report = None
        try:
            report = _salvage(path, limit, damage, check_only)
        finally:
            if cut is not None and not (report and report.changed):
                os.truncate(path, cut[0])  # leave the damaged file exactly as it was
        return report
    finally:
        lock.release()


def _salvage(path: Path, limit: int, damage, check_only: bool) -> RepairReport:
    try:
        src = FeatureStore.open(path, "r")
    except StoreError as err:
        raise StoreDamagedError(f"{path}: cannot be salvaged: {err}") from None
    with src:
        try:
            status, ids, paths = src.status, src.ids, src.paths
            config, levels = src.config, src.levels
            kinds = {k: src.dataset(k) for k in src.h5["features"].keys()}
            img = {k: src.h5[f"images/{k}"][...] for k in ("height", "width", "scale", "error")}
        except Exception as err:
            raise StoreDamagedError(f"{path}: cannot be salvaged: its image list or "
                                    f"configuration is lost ({type(err).__name__}: {err})") from None
        report = RepairReport(str(path), damage, rows=int(status.size),
                              done_before=int((status == DONE).sum()))
        done = [int(i) for i in (status == DONE).nonzero()[0]]
        good = []
        for i in done:
            (good if _row_reads_back(kinds.values(), i, limit) else report.reset).append(i)
        report.kept = len(good)
        if check_only or (damage is None and not report.reset):
            return report
        new = path.with_name(path.name + ".repair")
        shapes = {k: tuple(int(v) for v in ds.shape[2:]) for k, ds in kinds.items()}
        wide = shapes.get("wide", (0,))[0]
        extra = {k: v for k, v in shapes.items() if k not in ("narrow", "wide")}
        with FeatureStore.create(new, ids, paths, config, levels, int(kinds["narrow"].shape[1]),
                                 wide, extra=extra) as out:
            for block in range(0, len(good), 16):
                out.write_rows([{"index": i, "height": img["height"][i], "width": img["width"][i],
                                 "scale": img["scale"][i],
                                 **{k: ds[i] for k, ds in kinds.items()}}
                                for i in good[block:block + 16]])
            failed = [int(i) for i in (status == FAILED).nonzero()[0]]
            out.mark_failed([(i, img["error"][i].decode("utf-8", "replace"), img["height"][i],
                              img["width"][i]) for i in failed])
    os.replace(new, path)
    report.changed = True
    return report
