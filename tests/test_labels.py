"""Labels: AVA.txt / CSV loading, splits, and alignment with a feature store."""

import time
from pathlib import Path

import numpy as np
import pytest

from mlsp.labels import (Alignment, Labels, align_with_store, load_ava, load_csv, load_labels,
                         read_id_list)
from mlsp.stores.features import FeatureStore, Level

AVA_SAMPLE = Path("/work/shared/data/ava_format/AVA.txt")
TEST_LIST = Path("/work/shared/data/ava_format/generic_test.jpgl")

AVA_LINES = """\
1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396
2 953958 10 7 15 26 26 21 10 8 1 2 1 21 1396
3 111111 0 0 0 0 0 0 0 0 0 0 0 0 1396
4 954184 0 0 4 8 41 56 10 3 4 0 0 0 1396
"""


@pytest.fixture
def ava(tmp_path):
    p = tmp_path / "AVA.txt"
    p.write_text(AVA_LINES)
    return p


def test_load_ava_by_hand(ava):
    with pytest.warns(UserWarning, match="dropped 1 images with 0 votes"):
        lab = load_ava(ava)
    assert lab.ids == ["953619", "953958", "954184"]
    # 953619: counts 0 1 5 17 38 36 15 6 5 1, total 124
    # mos = (2*1 + 3*5 + 4*17 + 5*38 + 6*36 + 7*15 + 8*6 + 9*5 + 10*1) / 124 = 699 / 124
    assert lab.mos[0] == pytest.approx(699 / 124)
    assert lab.votes.tolist() == [124, 126, 126]
    assert lab.distribution.shape == (3, 10)
    assert np.allclose(lab.distribution.sum(1), 1)
    assert lab.distribution[0, 4] == pytest.approx(38 / 124)
    assert lab.mos.dtype == np.float64
    assert lab.tags.tolist() == [[1, 22], [1, 21], [0, 0]]
    assert lab.score_range == (1.0, 10.0)
    assert lab.split is None
    with pytest.warns(UserWarning):
        assert load_labels(ava).ids == lab.ids  # dispatch


@pytest.mark.skipif(not AVA_SAMPLE.exists(), reason="shared AVA sample not present")
def test_shared_ava_sample_and_test_list():
    lab = load_labels(AVA_SAMPLE)
    assert lab.source.startswith("ava:") and len(lab) >= 10
    ids = read_id_list(TEST_LIST)
    assert len(ids) == 20000 and all(i.isdigit() for i in ids[:100])


def test_load_ava_fast(tmp_path):
    # the real AVA.txt has 255,530 lines; loading it must take a moment, not minutes
    n = 255_530
    rng = np.random.default_rng(0)
    data = np.column_stack([np.arange(1, n + 1), np.arange(n) + 100000,
                            rng.integers(0, 60, (n, 10)), rng.integers(0, 60, (n, 2)),
                            np.full(n, 1396)])
    path = tmp_path / "big.txt"
    with open(path, "w") as f:
        f.write("\n".join(" ".join(map(str, r)) for r in data.tolist()))
    t0 = time.perf_counter()
    lab = load_ava(path)
    assert time.perf_counter() - t0 < 120  # generous: guards against a quadratic reader, not a benchmark
    assert len(lab) == n and lab.ids[-1] == str(n - 1 + 100000)


def test_read_id_list(tmp_path):
    p = tmp_path / "ids.jpgl"
    p.write_text("12\n\n 34 \nimg/56.jpg\nsyn.001\n")
    assert read_id_list(p) == ["12", "34", "56", "syn.001"]


def test_with_split():
    n = 200
    lab = Labels(ids=[f"i{k:03d}" for k in range(n)], mos=np.linspace(1, 10, n))
    test = [f"i{k:03d}" for k in range(0, n, 10)]  # 20 test images
    s = lab.with_split(val_fraction=0.05, seed=1, test_ids=test + ["not-there"])
    assert (s.split == "test").sum() == 20
    assert (s.split == "val").sum() == round(0.05 * 180) == 9
    assert (s.split == "train").sum() == 171
    assert set(np.array(s.ids)[s.split == "test"]) == set(test)
    assert lab.split is None  # a copy
    # deterministic, seed dependent, independent of row order
    assert (lab.with_split(0.05, 1, test).split == s.split).all()
    assert (lab.with_split(0.05, 2, test).split != s.split).any()
    perm = np.random.default_rng(5).permutation(n)
    shuffled = lab.subset(perm).with_split(0.05, 1, test)
    assert dict(zip(shuffled.ids, shuffled.split)) == dict(zip(s.ids, s.split))
    # no test ids: no test split
    none = lab.with_split(0.1, 0)
    assert set(none.split) == {"train", "val"} and (none.split == "val").sum() == 20
    # an existing split's test rows are kept, a complete split is kept as is
    again = s.subset(np.flatnonzero(s.split != "val")).with_split(0.05, 0)
    assert (again.split == "test").sum() == 20 and (again.split == "val").sum() == 9
    assert (s.with_split(0.5, 9).split == s.split).all()


def test_subset_mask_and_indices(ava):
    with pytest.warns(UserWarning):
        lab = load_ava(ava)
    a = lab.subset(np.array([True, False, True]))
    b = lab.subset([2, 0])
    assert a.ids == ["953619", "954184"] and b.ids == ["954184", "953619"]
    assert b.mos[1] == lab.mos[0] and (b.distribution[0] == lab.distribution[2]).all()
    assert b.tags[0].tolist() == [0, 0] and b.votes.tolist() == [126, 124]
    assert len(lab.subset(np.array([], dtype=int))) == 0


def _write(tmp_path, text, name="labels.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_basic_distribution_and_split(tmp_path):
    p = _write(tmp_path, "id,path,mos,p1,p2,p3,split\n"
                         "a,x/a.jpg,2.0,0.0,1.0,0.0,train\n"
                         "b,x/b.jpg,1.5,2,2,0,Validation\n"
                         "c,x/c.jpg,3,0,0,5,test\n")
    lab = load_labels(p)
    assert lab.ids == ["a", "b", "c"]
    assert lab.mos.tolist() == [2.0, 1.5, 3.0]
    assert lab.distribution.tolist() == [[0, 1, 0], [0.5, 0.5, 0], [0, 0, 1]]
    assert lab.split.tolist() == ["train", "val", "test"]
    assert lab.votes is None  # p-columns are probabilities
    # the MOS is the expectation over bins 1..3: the scale is 1..3, not the observed 1.5..3
    assert lab.score_range == (1.0, 3.0) and not lab.range_observed
    assert load_csv(p, score_range=(1, 5)).score_range == (1.0, 5.0)


def test_csv_path_ids_counts_and_named_columns(tmp_path):
    p = _write(tmp_path, "image,score,c1,c2,c3,c4\n"
                         "/data/img/one.jpg,3.5,1,1,1,1\n"
                         "/data/img/two.png,4.0,0,0,0,3\n")
    lab = load_csv(p)
    assert lab.ids == ["one", "two"] and lab.mos.tolist() == [3.5, 4.0]
    assert lab.distribution[0].tolist() == [0.25] * 4 and lab.votes.tolist() == [4, 3]
    q = _write(tmp_path, "name,rating,a,b,fold\nx,0.7,1,3,test\ny,0.1,1,1,train\n", "q.csv")
    lab = load_csv(q, id_col="name", mos_col="rating", dist_cols=["a", "b"], split_col="fold")
    assert lab.ids == ["x", "y"] and lab.distribution[0].tolist() == [0.25, 0.75]
    assert lab.split.tolist() == ["test", "train"] and lab.score_range == (0.1, 0.7)
    # no MOS column: the distribution's mean (bin k scores k)
    r = _write(tmp_path, "id,vote_1,vote_2,vote_3\nm,1,0,1\n", "r.csv")
    assert load_csv(r).mos.tolist() == [2.0]


@pytest.mark.parametrize("body, cause", [
    ("a,5\nb,oops\n", "line 3: non-numeric MOS 'oops'"),
    ("a,5\n,4\n", "line 3: missing id"),
    ("a,5\nb,4\na,3\n", "line 4: duplicate id 'a'"),
])
def test_csv_bad_rows(tmp_path, body, cause):
    p = _write(tmp_path, "id,mos\n" + body)
    with pytest.raises(ValueError) as err:
        load_csv(p)
    msg = str(err.value)
    assert str(p) in msg and cause in msg and "\n" not in msg


def test_csv_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="no id column"):
        load_csv(_write(tmp_path, "foo,mos\nx,1\n"))
    with pytest.raises(ValueError, match="no MOS column"):
        load_csv(_write(tmp_path, "id,foo\nx,1\n"))


# -- alignment with a feature store ----------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(11)
    ids = [f"img{k}" for k in rng.permutation(12)]  # store order shuffled
    levels = [Level("a", 2, 0), Level("b", 1, 2)]
    st = FeatureStore.create(tmp_path / "f.h5", ids, [f"/x/{i}.jpg" for i in ids],
                             {"backbone": "test", "alpha": 1.0}, levels, 2, 0)
    status = np.ones(12, np.int8)
    status[[ids.index("img3"), ids.index("img7")]] = -1
    status[ids.index("img5")] = 0
    st.h5["images/status"][...] = status
    # every feature row encodes its image number, so a misalignment shows up
    nums = np.array([int(i[3:]) for i in ids], np.float16)
    st.h5["features/narrow"][...] = np.broadcast_to(nums[:, None, None], (12, 2, 3))
    yield st
    st.close()


def test_align_with_store_shuffled(store):
    rng = np.random.default_rng(2)
    lab_ids = [f"img{k}" for k in rng.permutation(list(range(10)) + [20, 21])]
    lab = Labels(ids=lab_ids, mos=[float(i[3:]) for i in lab_ids])
    al = align_with_store(lab, store)
    assert isinstance(al, Alignment)
    assert al.store_index.dtype == np.int64 and al.label_index.dtype == np.int64
    assert sorted(al.missing) == ["img20", "img21"]
    assert sorted(al.failed) == ["img3", "img7"] and al.pending == ["img5"]
    assert len(al) == 7 and al.unlabelled == 2  # img10, img11
    assert (np.diff(al.store_index) > 0).all()  # ready for h5py fancy indexing
    sids = store.ids
    assert [sids[i] for i in al.store_index] == [lab.ids[j] for j in al.label_index]
    feats = store.dataset("narrow")[al.store_index]
    assert np.array_equal(feats[:, 0, 0].astype(np.float64), lab.mos[al.label_index])
    text = al.report()
    assert "7 of 12" in text and "img20" in text and "img5" in text and "\n" not in text


def test_align_empty(store):
    al = align_with_store(Labels(ids=[], mos=[]), store)
    assert len(al) == 0 and al.store_index.shape == (0,) and al.unlabelled == 12
