"""Per-photo uncertainty: a fold ensemble's spread, a distribution head's score_std."""
import csv
import json

import numpy as np
import pytest

from mlsp.inference.uncertainty import score_std


def test_score_std_of_distributions_by_hand():
    bins = [1, 2, 3, 4, 5]
    np.testing.assert_allclose(score_std([[0, 0, 1, 0, 0], [0.5, 0, 0, 0, 0.5]], bins),
                               [0.0, 2.0])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    m = (p * bins).sum()
    assert score_std(p[None], bins)[0] == pytest.approx(np.sqrt((p * (np.array(bins) - m) ** 2)
                                                                .sum()))


def _ridge_folds(path, lab):
    """Two ridge heads fitted on different halves: the fold models of an ensemble."""
    from mlsp.labels.split import split_labels
    from mlsp.training.trainer import train

    out = []
    for j in range(2):
        held = [i for k, i in enumerate(lab.ids) if k % 2 == j]
        res = train(path, split_labels(lab, 0.15, j, held), head="ridge", seed=j)
        out.append((res.model, res.sidecar))
    return out


def test_fold_ensemble_spread_is_the_std_of_its_fold_models(tmp_path):
    from _mmstore import make_ext_store

    import mlsp
    from mlsp.inference.commands import predict
    from mlsp.training.crossval import ensemble_models
    from mlsp.inference.trained_head import TrainedHead

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    lab.split = None
    folds = _ridge_folds(path, lab)
    TrainedHead(*ensemble_models(folds)).save(tmp_path / "ens")
    head = mlsp.load(tmp_path / "ens")   # saved and read back: the fold layers survive
    rows = head.predict_store(path)
    # independent truth: each fold model scoring alone
    alone = np.array([[r["score"] for r in TrainedHead(m, sc).predict_store(path)]
                      for m, sc in folds])
    np.testing.assert_allclose([r["score"] for r in rows], alone.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([r["spread"] for r in rows], alone.std(0, ddof=1), rtol=1e-3,
                               atol=1e-4)
    assert min(r["spread"] for r in rows) > 0 and "score_std" not in rows[0]
    # a single model has no spread
    assert "spread" not in TrainedHead(*folds[0]).predict_store(path, ids=["im000"])[0]
    # the CLI's CSV and JSON carry it
    from click.testing import CliRunner

    r = CliRunner().invoke(predict, [str(tmp_path / "ens"), "--features", str(path)])
    assert r.exit_code == 0, r.output
    table = {t["id"]: t for t in csv.DictReader(r.output.splitlines())}  # best first
    assert float(table[rows[0]["id"]]["spread"]) == pytest.approx(rows[0]["spread"], abs=1e-4)
    r = CliRunner().invoke(predict, [str(tmp_path / "ens"), "--features", str(path),
                                     "--format", "json", "im001"])
    assert json.loads(r.output)[0]["spread"] == pytest.approx(rows[1]["spread"], abs=1e-6)
    # evaluate's predictions.csv too
    from mlsp.inference.trained_head import evaluate_trained

    evaluate_trained(tmp_path / "ens", path, lab, out_dir=tmp_path / "ev", progress=False)
    with open(tmp_path / "ev" / "predictions.csv") as f:
        ev = list(csv.DictReader(f))
    assert float(ev[0]["spread"]) == pytest.approx(rows[0]["spread"], abs=1e-4)


def test_distribution_head_reports_its_predicted_std(tmp_path):
    from _mmstore import make_ext_store

    from mlsp.training.trainer import train

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    res = train(path, lab, head="single_3fc", output="distribution", epochs=1, batch_size=16)
    rows = res.trained.predict_store(path, ids=["im000", "im001"])
    for r in rows:
        assert r["score_std"] == pytest.approx(
            float(score_std(np.array(r["distribution"])[None], res.sidecar["bin_scores"])[0]))
        assert r["score_std"] > 0 and "spread" not in r


@pytest.mark.slow
def test_photos_scored_from_files_carry_the_same_spread(tmp_path):
    """predict() on image files (features computed in memory) gives the spread the store
    gives: 12 generated photos, bundled MobileNetV2-0.35, two ridge fold models."""
    import mlsp
    from mlsp.images.sources import from_list
    from mlsp.images.synthetic import make_synthetic_set
    from mlsp.labels import load_labels
    from mlsp.training.crossval import ensemble_models
    from mlsp.inference.trained_head import TrainedHead

    labels = make_synthetic_set(tmp_path / "photos", n=12, seed=0, min_side=64, max_side=112)
    store = mlsp.extract(labels, tmp_path / "f.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled", workers=1)
    lab = load_labels(labels)
    lab.split = None
    head = TrainedHead(*ensemble_models(_ridge_folds(store, lab)))
    items = from_list(labels)[:3]
    from_files = head.predict([it.path for it in items])
    from_store = head.predict_store(store, ids=[it.id for it in items])
    np.testing.assert_allclose([r["spread"] for r in from_files],
                               [r["spread"] for r in from_store], rtol=1e-3, atol=1e-4)
    assert all(r["spread"] > 0 for r in from_files)
