"""`mlsp predict` for a photographer (issue 19): the default model on a folder of real
photos, best first with rank and percentile, without TensorFlow; the ONNX scores are the
Keras scores; --top, --json, --html."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlsp import zoo
from mlsp.inference import photos as scoring

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LIVEC = next((p / "shared" / "data" / "livec" for p in HERE.parents
              if (p / "shared" / "data" / "livec" / "labels.csv").is_file()), HERE / "no-livec")
needs_livec = pytest.mark.skipif(not LIVEC.is_dir(), reason=f"no shared LIVE Challenge at {LIVEC}")
PHOTOS = ["100.png", "1000.jpg", "1002.jpg"]


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "my photos"
    d.mkdir()
    for name in PHOTOS:
        shutil.copy(LIVEC / "images" / name, d / name)
    return d


PROBE = """
import sys
from mlsp.cli import main
try:
    main(sys.argv[1:], prog_name="mlsp")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@needs_livec
def test_predict_a_folder_with_the_default_model_without_tensorflow(folder):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", PROBE, "predict", str(folder)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out, heavy = p.stdout.rsplit("HEAVY=", 1)
    assert heavy.strip() == "", f"imported {heavy.strip()}"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["rank", "id", "path", "score", "percentile", "error"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == len(PHOTOS)
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    ref = zoo.reference_scores(zoo.resolve("quality"))
    for r in rows:  # the percentile is the share of training photos scored lower
        share = 100 * sum(v < float(r["score"]) for v in ref) / len(ref)
        assert float(r["percentile"]) == pytest.approx(share, abs=0.06)


@needs_livec
@pytest.mark.parametrize("name", ["quality", "beauty"])
def test_onnx_scores_are_the_keras_scores(folder, name):
    fast, where = scoring.score(name, [folder], runtime="auto")
    assert scoring.uses_onnxruntime(where)
    keras_rows, _ = scoring.score(name, [folder], runtime="keras")
    k = {r["id"]: r["score"] for r in keras_rows}
    assert all(r["score"] is not None for r in fast)
    for r in fast:
        assert abs(r["score"] - k[r["id"]]) < 1e-3, (r, k[r["id"]])


@needs_livec
def test_top_json_and_contact_sheet(folder, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict

    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = CliRunner().invoke(predict, ["quality", str(folder), "--top", "2", "--json",
                                     "--html", str(tmp_path / "sheet.html")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["rank"] for x in rows] == [1, 2] and rows[0]["score"] >= rows[1]["score"]
    assert "scored 3 of 4 images" in r.stderr and "sheet.html" in r.stderr
    html = (tmp_path / "sheet.html").read_text()
    shown = [float(v) for v in re.findall(r'data-score="([0-9.]+)"', html)]
    assert shown == [pytest.approx(x["score"], abs=1e-4) for x in rows]
    assert "broken.jpg" in html and "Not scored" in html  # failures at the end
    assert html.count("data:image/jpeg;base64,") == 2 and "the 2 best of 3 photos" in html


def test_no_photos_says_what_is_missing():
    from click.testing import CliRunner

    from mlsp.inference.commands import predict

    r = CliRunner().invoke(predict, ["beauty"])
    assert r.exit_code == 2 and "give PHOTOS" in r.output and "'beauty'" in r.output
