"""Every ``from mlsp... import name`` in benchmarks/ names something that exists: the
benchmarks run rarely (minutes to hours), so a moved module would otherwise surface only
when someone needs its figures (bench_iv3_speed.py's ONNX part imported two modules that
the package split of this wave had moved)."""
import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _imports():
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlsp":
                for alias in node.names:
                    yield pytest.param(node.module, alias.name,
                                       id=f"{path.name}:{node.lineno}:{alias.name}")


@pytest.mark.parametrize("module,name", list(_imports()))
def test_benchmark_import_resolves(module, name):
    mod = importlib.import_module(module)
    if not hasattr(mod, name):
        importlib.import_module(f"{module}.{name}")  # a submodule; raises if missing
