"""The built-in synthetic data set: determinism, sizes, and the known scores."""

import csv
import itertools

import numpy as np
import pytest

from mlsp.images.decode import decode_image
from mlsp.images.synthetic import score_from_degradation, make_synthetic_set


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    labels = make_synthetic_set(out, n=24, seed=7, min_side=64, max_side=160)
    with open(labels, newline="") as f:
        return out, labels, list(csv.DictReader(f))


def test_deterministic_and_seed_dependent(synth, tmp_path):
    out, labels, rows = synth
    again = make_synthetic_set(tmp_path / "a", n=24, seed=7, min_side=64, max_side=160)
    assert again.read_bytes() == labels.read_bytes()
    assert (tmp_path / "a" / "syn00003.jpg").read_bytes() == (out / "syn00003.jpg").read_bytes()
    other = make_synthetic_set(tmp_path / "b", n=24, seed=8, min_side=64, max_side=160)
    assert other.read_bytes() != labels.read_bytes()
    # image i depends only on (seed, i): a shorter set is a prefix
    short = make_synthetic_set(tmp_path / "c", n=5, seed=7, min_side=64, max_side=160)
    assert labels.read_bytes().startswith(short.read_bytes())


def test_columns_files_and_sizes(synth):
    out, _, rows = synth
    assert list(rows[0]) == ["id", "path", "mos", *(f"p{k}" for k in range(1, 11)),
                             "blur", "noise", "jpeg_quality", "width", "height"]
    assert [r["id"] for r in rows] == [f"syn{i:05d}" for i in range(24)]
    sizes = [(int(r["width"]), int(r["height"])) for r in rows]
    assert len(set(sizes)) == 24  # every image has its own size
    assert len({w for w, _ in sizes}) > 12 and len({h for _, h in sizes}) > 12
    for r, (w, h) in zip(rows, sizes):
        assert 64 <= w <= 160 and 64 <= h <= 160
        assert r["path"] == r["id"] + ".jpg"
        data = (out / r["path"]).read_bytes()
        assert data[:3] == b"\xff\xd8\xff"  # JPEG
        assert decode_image(data).shape == (h, w, 3)


def test_labels_consistent_with_scoring(synth):
    _, _, rows = synth
    for r in rows:
        blur, noise, q = float(r["blur"]), float(r["noise"]), int(r["jpeg_quality"])
        assert 0 <= blur <= 4 and 0 <= noise <= 25 and 5 <= q <= 95
        p = np.array([float(r[f"p{k}"]) for k in range(1, 11)])
        mos = float(r["mos"])
        assert 1 <= mos <= 10
        assert abs(p.sum() - 1) < 1e-5 and (p >= 0).all()
        assert abs(mos - np.arange(1, 11) @ p) < 1e-4  # MOS = mean of the distribution
        m, p2 = score_from_degradation(blur, noise, q)
        assert abs(m - mos) < 1e-6 and np.allclose(p, p2, atol=1e-6)
    mos = [float(r["mos"]) for r in rows]
    assert max(mos) - min(mos) > 2  # the set spans a useful range of quality


def test_score_monotone_in_each_degradation():
    blurs, noises, quals = np.linspace(0, 4, 9), np.linspace(0, 25, 9), np.arange(95, 4, -10)
    for b, n, q in itertools.product(blurs, noises, quals):
        m = score_from_degradation(b, n, q)[0]
        assert 1 <= m <= 10
        assert score_from_degradation(b + 0.5, n, q)[0] <= m
        assert score_from_degradation(b, n + 3, q)[0] <= m
        assert score_from_degradation(b, n, q - 10)[0] <= m
    best, worst = score_from_degradation(0, 0, 95)[0], score_from_degradation(4, 25, 5)[0]
    assert best > 9 and worst < 2
    # strictly decreasing away from saturation, and equal to 10 - 9*severity mid-range
    assert score_from_degradation(2, 0, 95)[0] < score_from_degradation(1, 0, 95)[0]
    sev = 0.4 * 2 / 4 + 0.3 * 10 / 25 + 0.3 * (95 - 50) / 90
    assert abs(score_from_degradation(2, 10, 50)[0] - (10 - 9 * sev)) < 0.01


def test_distribution_shape():
    m, p = score_from_degradation(1, 5, 80)
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-12
    assert abs(np.argmax(p) + 1 - m) <= 0.5 + 1e-9  # peaked at the MOS


def test_default_set_is_fast(tmp_path):
    import time
    t = time.perf_counter()
    labels = make_synthetic_set(tmp_path)
    assert time.perf_counter() - t < 120  # generous: the machine may be loaded
    assert len(labels.read_text().splitlines()) == 65 and labels == tmp_path / "labels.csv"
