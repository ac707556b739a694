"""Sharded extraction: a deterministic partition of the input list, and merging the shards.

``mlsp extract --shard K/N`` keeps the K-th of N contiguous blocks of the image
list (K = 0..N-1, e.g. a Slurm array task id), so N independent jobs each write
their own store.  ``mlsp merge`` joins the shards into one store whose rows are
in the original order, after checking that the shards were made with the same
configuration from the same list and that no image is missing or doubled.  By
default the merged features are HDF5 virtual datasets that point into the shard
files (no copy; keep the shards beside it); ``copy=True`` writes one standalone file.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from .features import (PENDING, FeatureStore, StoreError, StoreWriteError, acquire_lock,
                       config_mismatch)

SHARD_KEYS = ("shard_index", "shard_count", "shard_offset", "list_images", "list_sha256")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 0/4 (K counts from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def list_sha256(items) -> str:
    digest = hashlib.sha256()
    for it in items:
        digest.update(f"{it.id}\0{it.path}\n".encode("utf-8"))
    return digest.hexdigest()


def shard_items(items, k: int, n: int):
    """The K-th of N contiguous blocks of ``items`` and the attributes its store records."""
    total = len(items)
    start, stop = (k * total) // n, ((k + 1) * total) // n
    attrs = {"shard_index": k, "shard_count": n, "shard_offset": start,
             "list_images": total, "list_sha256": list_sha256(items)}
    return items[start:stop], attrs


def _check_shards(stores):
    first = stores[0]
    for s in stores[1:]:
        diff = config_mismatch(first.config, s.config)
        if diff:
            raise StoreError(f"{s.path}: configuration differs from {first.path}: {'; '.join(diff)}")
        if [lv.name for lv in s.levels] != [lv.name for lv in first.levels]:
            raise StoreError(f"{s.path}: level table differs from {first.path}")
    for s in stores:
        pending = int((s.status == PENDING).sum())
        if pending:
            raise StoreError(f"{s.path}: {pending} images still pending; finish that shard first "
                             f"(run its extract command again)")
    sharded = ["shard_count" in s.config for s in stores]
    if any(sharded) and not all(sharded):
        raise StoreError("mixing shard stores with plain stores")
    if all(sharded):
        cfg = [s.config for s in stores]
        count = cfg[0]["shard_count"]
        for s, c in zip(stores, cfg):
            for key in ("shard_count", "list_images", "list_sha256"):
                if c[key] != cfg[0][key]:
                    raise StoreError(f"{s.path}: {key} {c[key]!r} differs from {stores[0].path} "
                                     f"({cfg[0][key]!r}): shards of different jobs")
        got = sorted(c["shard_index"] for c in cfg)
        if got != list(range(count)):
            missing = sorted(set(range(count)) - set(got))
            doubled = sorted({k for k in got if got.count(k) > 1})
            raise StoreError(f"shards do not cover 0..{count - 1} exactly once "
                             f"(missing {missing}, doubled {doubled})")
        stores = sorted(stores, key=lambda s: s.config["shard_index"])
        expected = 0
        for s in stores:
            if s.config["shard_offset"] != expected:
                raise StoreError(f"{s.path}: starts at row {s.config['shard_offset']}, "
                                 f"expected {expected}")
            expected += s.n_images
        if expected != cfg[0]["list_images"]:
            raise StoreError(f"shards hold {expected} images, the list had {cfg[0]['list_images']}")
    ids = [i for s in stores for i in s.ids]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise StoreError(f"image id {dup!r} appears in more than one shard")
    return stores


def merge_stores(shards, out, copy: bool = False, block: int = 256) -> Path:
    """Merge shard stores into ``out`` (virtual datasets, or a full copy)."""
    out = Path(out)
    if out.exists():
        raise StoreError(f"{out}: exists; remove it or choose another path")
    lock = acquire_lock(out)  # one writer: the merged store and its .tmp
    opened = []
    tmp = out.with_name(out.name + ".tmp")
    try:
        opened.extend(FeatureStore.open(p) for p in shards)
        stores = _check_shards(opened)
        _write_merged(tmp, stores, out, copy, block)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise StoreWriteError(f"{out}: cannot write the merged store: "
                              f"{str(err).splitlines()[0]}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for s in opened:
            s.close()
        lock.release()
    return out


def _write_merged(tmp, stores, out, copy, block):
    """The merged file under its temporary name; flushed and fsynced before it returns."""
    with h5py.File(tmp, "w") as h5:
        for key, value in stores[0].h5.attrs.items():
            if key not in SHARD_KEYS:
                h5.attrs[key] = value
        h5.attrs["merged_from"] = np.array(
            [os.path.relpath(s.path, out.parent) for s in stores],
            dtype=h5py.string_dtype("utf-8"))
        for name in ("id", "path", "height", "width", "scale", "status", "error"):
            parts = [s.h5[f"images/{name}"][...] for s in stores]
            h5.create_dataset(f"images/{name}", data=np.concatenate(parts),
                              dtype=stores[0].h5[f"images/{name}"].dtype)
        stores[0].h5.copy(stores[0].h5["levels"], h5, "levels")
        h5.create_group("features")
        for kind in stores[0].h5["features"]:
            src0 = stores[0].h5[f"features/{kind}"]
            n = sum(s.h5[f"features/{kind}"].shape[0] for s in stores)
            shape = (n,) + src0.shape[1:]
            if copy:
                dst = h5.create_dataset(f"features/{kind}", shape, src0.dtype,
                                        chunks=src0.chunks)
                row = 0
                for s in stores:
                    src = s.h5[f"features/{kind}"]
                    for a in range(0, src.shape[0], block):
                        b = min(a + block, src.shape[0])
                        dst[row + a:row + b] = src[a:b]
                    row += src.shape[0]
            else:
                layout = h5py.VirtualLayout(shape=shape, dtype=src0.dtype)
                row = 0
                for s in stores:
                    src = s.h5[f"features/{kind}"]
                    rel = os.path.relpath(s.path.resolve(), out.parent.resolve())
                    layout[row:row + src.shape[0]] = h5py.VirtualSource(rel, src.name, src.shape)
                    row += src.shape[0]
                h5.create_virtual_dataset(f"features/{kind}", layout)
        h5.flush()  # raises here, not lost in a destructor, if a write failed
        os.fsync(h5.id.get_vfd_handle())
