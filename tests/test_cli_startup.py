"""Start-up of the command line (issue 11): no backend where no model is needed, one-line
errors for a missing backend, whole command descriptions in ``mlsp --help``."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *args, extra_path=None, env_extra=None, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(extra_path or []), str(ROOT)])
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, cwd=cwd, timeout=300)


PROBE = """
import sys
import mlsp
from mlsp.cli import main
try:
    main(sys.argv[1:], prog_name="mlsp")
except SystemExit:
    pass
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [[], ["--help"], ["info", "--help"], ["merge", "--help"],
                                  ["train", "--help"], ["predict", "--help"],
                                  ["info", "NOT_A_STORE"], ["merge", "NOT_A_STORE", "-o", "m.h5"]])
def test_light_commands_import_no_backend(tmp_path, args):
    (tmp_path / "NOT_A_STORE").write_text("plain text, not HDF5")
    p = _python(PROBE, *args, cwd=tmp_path)
    assert "HEAVY=\n" in p.stdout, (p.stdout, p.stderr)
    if "NOT_A_STORE" in args:  # the file is really read, and refused in one line
        assert "NOT_A_STORE" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "m.h5").exists()


def test_import_mlsp_stays_light():
    p = _python("import sys, mlsp; print(sorted(m for m in ('keras', 'tensorflow') "
                "if m in sys.modules))")
    assert p.stdout.strip() == "[]", p.stderr


def test_model_commands_do_import_the_backend(tmp_path):
    """The other side: a command that needs a model gets Keras before its body runs."""
    p = _python(PROBE, "predict", "quality", str(tmp_path), "--runtime", "keras", cwd=tmp_path)
    assert "HEAVY=" in p.stdout and "keras" in p.stdout.split("HEAVY=")[1], p.stderr
    # a shipped model scored by its own ONNX file: no backend at all
    p = _python(PROBE, "predict", "quality", str(tmp_path), cwd=tmp_path)
    assert "HEAVY=\n" in p.stdout, (p.stdout, p.stderr)


def test_broken_backend_is_one_line_naming_the_fix(tmp_path):
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("simulated broken TensorFlow")\n')
    p = _python("from mlsp.cli import main; main(prog_name='mlsp')", "demo", "--out",
                str(tmp_path / "demo"), extra_path=[str(fake.parent)],
                env_extra={"KERAS_BACKEND": "tensorflow"})
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "simulated broken TensorFlow" in lines[0] and "pip install tensorflow" in lines[0]
    assert not (tmp_path / "demo").exists()  # nothing was started


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed")
def test_missing_jax_backend_names_the_extra(tmp_path):
    p = _python("from mlsp.cli import main; main(prog_name='mlsp')", "demo", "--out",
                str(tmp_path / "demo"), env_extra={"KERAS_BACKEND": "jax"})
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "'jax'" in p.stderr and "pip install 'mlsp[jax]'" in p.stderr


def test_help_lists_whole_descriptions():
    from click.testing import CliRunner

    from mlsp.cli import main

    out = CliRunner().invoke(main, ["--help"], terminal_width=100).output
    listing = " ".join(out.split("Commands:")[1].split())
    for name, command in main.commands.items():
        first = " ".join(command.help.strip().split("\n\n")[0].split())
        assert f"{name} {first}" in listing, name
    # the case of the issue: cut at "(MLSP sec." before
    assert "Train a head on the features in STORE (MLSP sec. 3.3); --folds K cross-validates." \
        in listing
