"""The ONNX export (issue 11): one graph, image in, score out, equal to the Keras path.

Real OASIS photos in several sizes (a crop, an enlargement, a tiny one that the size
rules upscale before the graph), the bundled MobileNetV2-0.35, a head trained briefly.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

OASIS = Path("/work/shared/data/oasis")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx",
                                                                     "onnx")),
                       reason="needs pip install 'mlsp[onnx]'"),
    pytest.mark.skipif(not (OASIS / "labels.csv").is_file(), reason="OASIS photos not here"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import keras
    from PIL import Image

    from mlsp.data import BUNDLED_WEIGHTS
    from mlsp.extract.extractor import ExtractOptions, extract
    from mlsp.images.sources import ImageItem
    from mlsp.labels import load_labels
    from mlsp.training.trainer import train_head

    if keras.backend.backend() != "tensorflow":
        pytest.skip("ONNX export with free image sizes needs the TensorFlow backend")
    tmp = tmp_path_factory.mktemp("onnx")
    rows = list(csv.DictReader(open(OASIS / "labels.csv")))[:10]
    (tmp / "photos").mkdir()
    for r in rows:
        Image.open(OASIS / r["path"]).save(tmp / "photos" / f"{r['id']}.png")
    with open(tmp / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "mos"])
        w.writerows([[r["id"], r["mos"]] for r in rows])
    items = [ImageItem(r["id"], str(tmp / "photos" / f"{r['id']}.png")) for r in rows]
    opts = ExtractOptions(backbone="mobilenet_v2", alpha=0.35,
                          weights=str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]), wide_size=0,
                          workers=1)
    assert extract(items, tmp / "f.h5", opts, progress=False).done == len(rows)
    res = train_head(tmp / "f.h5", load_labels(tmp / "labels.csv"), head="single_3fc",
                     epochs=2, batch_size=4, width=32, val_fraction=0.2, out_dir=tmp / "model",
                     progress=False, plots=False, baseline=False)
    # photos of other sizes than the store's 500 x 400
    src = Image.open(tmp / "photos" / f"{rows[0]['id']}.png")
    sizes = {"crop": src.crop((13, 7, 13 + 333, 7 + 217)),
             "tall": src.rotate(90, expand=True).crop((0, 0, 311, 499)),
             "big": src.resize((911, 729)), "tiny": src.resize((30, 23))}
    for name, im in sizes.items():
        im.save(tmp / "photos" / f"size_{name}.png")
    return tmp, res.out_dir


def test_onnx_scores_equal_keras_scores(trained):
    import onnxruntime as ort
    from PIL import Image

    from mlsp.inference.trained_head import predict_images

    tmp, model = trained
    photos = sorted((tmp / "photos").glob("*.png"))
    keras_rows = predict_images(model, photos, progress=False)
    onnx_rows = predict_images(model, photos, progress=False, runtime="onnx")
    assert [r["id"] for r in keras_rows] == [r["id"] for r in onnx_rows]
    assert all(r["score"] is not None for r in keras_rows + onnx_rows), onnx_rows
    diff = np.abs(np.array([r["score"] for r in keras_rows])
                  - np.array([r["score"] for r in onnx_rows]))
    assert diff.max() < 1e-3, diff
    assert np.ptp([r["score"] for r in keras_rows]) > 10 * diff.max()  # not all alike
    # the exported file alone, as a user without mlsp runs it, on an image of any size
    exported = model / "model.crops.onnx"
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    image = np.asarray(Image.open(tmp / "photos" / "size_tall.png").convert("RGB"))
    assert image.shape[:2] == (499, 311)
    (mos,) = session.run(["mos"], {"image": image})
    want = next(r["score"] for r in keras_rows if r["id"] == "size_tall")
    assert abs(float(mos[0]) - want) < 1e-3


def test_export_command_writes_one_file(trained, tmp_path):
    from click.testing import CliRunner

    from mlsp.cli import main

    _, model = trained
    out = tmp_path / "scorer.onnx"
    res = CliRunner().invoke(main, ["export", str(model), "-o", str(out), "--tta", "whole"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and not list(tmp_path.glob("*.partial"))
    res = CliRunner().invoke(main, ["export", str(model), "-o", str(tmp_path / "x.onnx"),
                                    "--weights", str(out)])  # not the backbone's weights
    assert res.exit_code == 1 and "differs from sha256" in res.output
    assert not (tmp_path / "x.onnx").exists()
