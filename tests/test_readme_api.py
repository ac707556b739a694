"""The README's "Python API" example runs as written (in a temporary folder):
extract -> cross_validate -> train -> predict (Keras and ONNX runtimes) -> export."""
import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx", "onnx")):
        pytest.skip("the example's ONNX lines need pip install 'mlsp[onnx]'")
    text = README.read_text()
    block = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README has no api-example block"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert (tmp_path / "demo" / "model" / "model.keras").is_file()
    assert (tmp_path / "demo" / "model" / "model.json").is_file()
    assert (tmp_path / "demo" / "model.onnx").stat().st_size > 1e6  # backbone + head
    mean, low, high = (float(v) for v in out[0].split())
    assert -1.0 <= low <= mean <= high <= 1.0  # Fisher z: the interval stays inside [-1, 1]
    srcc, val_srcc = (float(v) for v in out[1].split())
    assert -1.0 <= srcc <= 1.0 and -1.0 <= val_srcc <= 1.0
    keras_score, onnx_score = float(out[2]), float(out[3])
    assert 1.0 <= keras_score <= 10.0  # a score on the generated set's 1-10 scale
    assert abs(onnx_score - keras_score) < 1e-2 * max(1.0, abs(keras_score))
    assert -1.0 <= float(out[4]) <= 1.0
