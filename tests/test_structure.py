"""The code's shape (issue 10): no import circle, no private name imported across modules,
heads loadable without the extraction or training packages.  Run as a script to print the
import graph's cycles: ``python tests/test_structure.py`` (module-level imports, then all
imports including those inside functions)."""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mlsp"


def _modules():
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _imports(name, path, is_pkg, known, top_level_only):
    """(imported mlsp module, imported names) pairs of one module."""
    tree = ast.parse(path.read_text(), str(path))
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level, including inside try / if blocks
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        for stmt in tree.body:  # class bodies run at import time too (not their methods)
            if isinstance(stmt, ast.ClassDef):
                nodes += [n for s in stmt.body if not isinstance(s, (ast.FunctionDef,
                                                                     ast.AsyncFunctionDef))
                          for n in ast.walk(s)]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names if a.name.split(".")[0] == "mlsp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module
                                                                    else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "mlsp":
                continue
            names = tuple(a.name for a in node.names)
            found.append((mod, names))
            found += [(f"{mod}.{n}", ()) for n in names if f"{mod}.{n}" in known]
    return found


def import_graph(top_level_only=True):
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        edges = set()
        for mod, _ in _imports(name, path, is_pkg, mods, top_level_only):
            parts = mod.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
                target = ".".join(parts[:k])
                # a module's own parent packages are run before it: not a circle
                if target in mods and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def private_imports():
    """``from mlsp.x import _name`` across modules: (importing module, source, name)."""
    mods = _modules()
    bad = []
    for name, (path, is_pkg) in mods.items():
        for mod, names in _imports(name, path, is_pkg, mods, top_level_only=False):
            bad += [(name, mod, n) for n in names if n.startswith("_") and not n.startswith("__")]
    return bad


def test_no_import_circle_at_import_time():
    assert cycles(import_graph(top_level_only=True)) == []


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_heads_and_layers_do_not_import_extraction_or_training():
    graph = import_graph(top_level_only=False)
    for name, edges in graph.items():
        if name.startswith(("mlsp.heads", "mlsp.layers", "mlsp.feature_kinds")):
            assert not [e for e in edges if e.startswith(("mlsp.extract", "mlsp.training"))], name


if __name__ == "__main__":
    for label, top in (("module-level imports", True), ("all imports (also in functions)", False)):
        found = cycles(import_graph(top))
        print(f"{label}: {len(found)} cycle(s)")
        for c in found:
            print("   ", " <-> ".join(c))
    print(f"private names imported across modules: {private_imports() or 'none'}")


def test_inference_never_imports_training_at_any_depth():
    """Issue 16: scoring, the model format and the ONNX export need no training code, not
    even inside a function (``ast.walk`` over the whole module finds those too)."""
    graph = import_graph(top_level_only=False)
    for name, edges in graph.items():
        if name.startswith(("mlsp.inference", "mlsp.stores", "mlsp.extract", "mlsp.vocabulary",
                            "mlsp.errors", "mlsp.feature_kinds")):
            assert not [e for e in edges if e.startswith("mlsp.training")], name


def test_the_import_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A real fault made for real: an import back into training inside a function of an
    inference module is found (the module-level check alone would miss it)."""
    pkg = tmp_path / "mlsp"
    (pkg / "inference").mkdir(parents=True)
    (pkg / "training").mkdir()
    for f in ("__init__.py", "inference/__init__.py", "training/__init__.py",
              "training/data.py"):
        (pkg / f).write_text("")
    (pkg / "inference" / "scorer.py").write_text(
        "def score():\n    from ..training.data import StoreFeatures\n    return StoreFeatures\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    deep = import_graph(top_level_only=False)["mlsp.inference.scorer"]
    shallow = import_graph(top_level_only=True)["mlsp.inference.scorer"]
    assert "mlsp.training.data" in deep and "mlsp.training.data" not in shallow
