"""Sharded extraction plus merge gives the store of a single-job run (issue: scale)."""
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mlsp.cli import main
from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.extractor import ExtractOptions, extract
from mlsp.extract.model import MLSPModel
from mlsp.images.sources import ImageItem, from_list
from mlsp.images.synthetic import make_synthetic_set
from mlsp.stores.features import FeatureStore, StoreError
from mlsp.stores.merge import merge_stores, parse_shard, shard_items

WEIGHTS = str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)])
OPTS = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS)
IGNORED_ATTRS = {"created", "merged_from", "shard_index", "shard_count", "shard_offset",
                 "list_images", "list_sha256"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    labels = make_synthetic_set(root / "imgs", n=7, seed=5, min_side=80, max_side=140)
    items = from_list(labels)
    bad = root / "imgs" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    items.insert(3, ImageItem("broken", str(bad)))
    model = MLSPModel("mobilenet_v2", 0.35, WEIGHTS)
    single = root / "single.h5"
    extract(items, single, OPTS, model=model, progress=False)
    shards = []
    for k in range(3):
        part, attrs = shard_items(items, k, 3)
        path = root / "shards" / f"part{k}.h5"
        extract(part, path, OPTS, model=model, progress=False, extra_config=attrs)
        shards.append(path)
    return root, items, single, shards, model


def _assert_same_store(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert "features/narrow" in names and "features/wide" in names
        for name in names:
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
        keys = set(a.attrs) - IGNORED_ATTRS
        assert keys == set(b.attrs) - IGNORED_ATTRS
        for key in keys:
            assert np.array_equal(np.asarray(a.attrs[key]), np.asarray(b.attrs[key])), key


def test_partition_is_deterministic_and_complete():
    items = [ImageItem(str(i), f"{i}.jpg") for i in range(10)]
    parts = [shard_items(items, k, 3)[0] for k in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    assert [it for p in parts for it in p] == items
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "1", "a/b"):
        with pytest.raises(ValueError):
            parse_shard(bad)


@pytest.mark.parametrize("copy", [False, True])
def test_merged_store_equals_single_job(setup, tmp_path, copy):
    root, items, single, shards, _ = setup
    out = root / f"merged_{copy}.h5"
    merge_stores(list(reversed(shards)), out, copy=copy)  # any order of arguments
    _assert_same_store(single, out)
    with FeatureStore.open(out) as fs:
        assert fs.ids == [it.id for it in items]
        assert (fs.status == -1).sum() == 1
        if not copy:
            assert fs.dataset("narrow").is_virtual
    here = os.getcwd()
    os.chdir(tmp_path)  # the virtual datasets find their shards from anywhere
    try:
        with FeatureStore.open(out) as fs:
            assert float(np.abs(fs.dataset("narrow")[-1].astype(np.float32)).sum()) > 0
    finally:
        os.chdir(here)


def test_merge_refuses_missing_doubled_and_foreign_shards(setup, tmp_path):
    root, items, single, shards, model = setup
    with pytest.raises(StoreError, match=r"missing \[1\]"):
        merge_stores([shards[0], shards[2]], tmp_path / "m1.h5")
    with pytest.raises(StoreError, match="doubled"):
        merge_stores([shards[0], shards[0], shards[2]], tmp_path / "m2.h5")
    other, attrs = shard_items(items, 1, 3)
    foreign = tmp_path / "foreign.h5"
    extract(other, foreign, ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=WEIGHTS,
                                           wide_size=3), progress=False, extra_config=attrs)
    with pytest.raises(StoreError, match="configuration differs.*pool_wide"):
        merge_stores([shards[0], foreign, shards[2]], tmp_path / "m3.h5")
    pending = tmp_path / "pending.h5"
    extract(other, pending, OPTS, model=model, progress=False, extra_config=attrs, limit=1)
    with pytest.raises(StoreError, match="pending"):
        merge_stores([shards[0], pending, shards[2]], tmp_path / "m4.h5")
    assert not (tmp_path / "m4.h5").exists()


def test_cli_shard_and_merge(setup, tmp_path):
    root, items, single, shards, _ = setup
    runner = CliRunner()
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(it.path for it in items))
    outs = []
    for k in range(2):
        out = tmp_path / f"s{k}.h5"
        r = runner.invoke(main, ["extract", "--list", str(listing), "-o", str(out), "--shard",
                                 f"{k}/2", "--backbone", "mobilenet_v2", "--alpha", "0.35",
                                 "--weights", WEIGHTS, "--quiet"])
        assert r.exit_code == 0, r.output
        assert f"shard {k}/2" in r.output
        outs.append(out)
    r = runner.invoke(main, ["merge", *map(str, outs), "-o", str(tmp_path / "all.h5")])
    assert r.exit_code == 0, r.output
    assert "8 images (7 done, 1 failed) from 2 shards" in r.output
    r = runner.invoke(main, ["extract", "--list", str(listing), "-o", str(tmp_path / "x.h5"),
                             "--shard", "3/2"])
    assert r.exit_code != 0 and "0 <= K < N" in r.output
