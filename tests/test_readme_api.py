"""The README's "Python API" example runs as written (in a temporary folder)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README has no api-example block"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert (tmp_path / "demo" / "model" / "model.keras").is_file()
    assert (tmp_path / "demo" / "model" / "model.json").is_file()
    srcc, val_srcc = (float(v) for v in out[0].split())
    assert -1.0 <= srcc <= 1.0 and -1.0 <= val_srcc <= 1.0
    assert 1.0 <= float(out[1]) <= 10.0  # a score on the generated set's 1-10 scale
    assert "'score'" in out[2]
    assert -1.0 <= float(out[3]) <= 1.0
