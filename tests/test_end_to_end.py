"""Synthetic images -> real MobileNetV2 MLSP features -> Single-3FC -> scores (slow).

The synthetic scores depend only on blur / noise / JPEG degradation, which
multi-level features capture (MLSP sec. 1: low-level factors); a head trained
for a few epochs must rank the test images far better than a constant.
"""
import json
from pathlib import Path

import numpy as np
import pytest

WEIGHTS = Path("/work/shared/weights/mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not WEIGHTS.is_file(), reason="MobileNetV2 weights not available")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.extract.model import MLSPModel
    from mlsp.images.sources import from_list
    from mlsp.images.synthetic import make_synthetic_set
    from mlsp.labels import load_labels
    from mlsp.training.trainer import train_head

    tmp = tmp_path_factory.mktemp("e2e")
    labels_csv = make_synthetic_set(tmp / "photos", n=120, seed=0)
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35, weights=str(WEIGHTS), wide_size=0)
    mlsp = MLSPModel("mobilenet_v2", 0.35, str(WEIGHTS), wide_size=0)
    summary = extract(from_list(labels_csv), tmp / "f.h5", opts, model=mlsp, progress=False)
    assert summary.done == 120
    res = train_head(tmp / "f.h5", load_labels(labels_csv), head="single_3fc", epochs=40,
                     batch_size=16, seed=0, test_fraction=0.25, val_fraction=0.15,
                     out_dir=tmp / "model", progress=False)
    return tmp, labels_csv, mlsp, res


def test_head_beats_constant_and_reports_baseline(run):
    tmp, _, _, res = run
    m = json.loads((res.out_dir / "metrics.json").read_text())
    test = m["test"]
    print(f"\ntest n={test['n']}: head SRCC {test['srcc']:.3f} PLCC {test['plcc']:.3f} "
          f"RMSE {test['rmse']:.3f}; ridge SRCC {m['baseline_ridge']['test']['srcc']:.3f} "
          f"RMSE {m['baseline_ridge']['test']['rmse']:.3f}; constant RMSE "
          f"{m['constant']['test']['rmse']:.3f}")
    assert test["n"] == 30
    assert test["srcc"] > 0.5  # a constant predictor has no rank correlation at all
    assert m["constant"]["test"]["srcc"] is None  # undefined for a constant -> null in JSON
    assert test["rmse"] < m["constant"]["test"]["rmse"]
    assert m["baseline_ridge"]["test"]["srcc"] is not None
    assert (res.out_dir / "scatter.png").stat().st_size > 1000


def test_predict_images_matches_store_predictions(run):
    from mlsp.inference.trained_head import predict_images, predict_store

    tmp, _, mlsp, res = run
    files = [tmp / "photos" / f"syn{i:05d}.jpg" for i in (0, 5, 17)]
    from_images = predict_images(res.out_dir, files, mlsp_model=mlsp, progress=False)
    from_store = {r["id"]: r["score"] for r in
                  predict_store(res.out_dir, tmp / "f.h5", ids=[f.stem for f in files],
                                progress=False)}
    for r in from_images:
        assert r["score"] == pytest.approx(from_store[r["id"]], abs=1e-3)
    # the weights file is found by name + SHA-256 when pointed at its folder
    again = predict_images(res.out_dir, files[:1], weights=WEIGHTS.parent, progress=False)
    assert again[0]["score"] == pytest.approx(from_images[0]["score"], abs=1e-3)
    assert np.isfinite([r["score"] for r in from_images]).all()
