"""Imports flow one way: engine/ never imports predictor, pipelines, lightgbm or mlflow."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"predictor", "pipelines", "lightgbm", "mlflow"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_stands_alone():
    files = list((ROOT / "engine").rglob("*.py"))
    assert files
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_attest_reads_engine_outputs_only():
    """attest/ reads the engine's Parquet outputs; of the engine's code it uses only the error
    base and the atomic folder writer, and never the predictor or the pipelines."""
    files = [p for p in (ROOT / "attest").rglob("*.py") if "node_modules" not in p.parts]
    assert files
    for path in files:
        names = _imports(path)
        assert not names & {"predictor", "pipelines", "lightgbm", "mlflow"}, path
        text = path.read_text()
        engine = {line.split()[1] for line in text.splitlines() if line.startswith("from engine")}
        assert engine <= {"engine.errors", "engine.atomic"}, (path, engine)


def test_predictor_does_not_import_pipelines():
    for path in (ROOT / "predictor").rglob("*.py"):
        assert "pipelines" not in _imports(path), path


def test_engine_is_mypy_clean():
    import subprocess
    import sys

    pytest.importorskip("mypy")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "engine"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _graph(package: str) -> dict[str, set[str]]:
    """Return module of ``package`` -> the modules of that package it imports (anywhere in the
    file)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(), filename=str(path))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m.split(".")[0] == package} - {name}
    return graph


@pytest.mark.parametrize(
    "package, known",
    [
        ("engine", ("engine.sim", "engine.liquidation")),
        ("predictor", ("predictor.model", "predictor.serving")),
        ("pipelines", ("pipelines.evaluate", "pipelines.report")),
    ],
)
def test_no_module_imports_one_that_imports_it_back(package, known):
    graph = _graph(package)
    assert set(known) <= set(graph)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    cycles = sorted(
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and reaches(b, a)
    )
    assert not cycles, cycles


def test_liquidation_and_policy_know_nothing_of_the_simulation():
    for name in ("liquidation", "policy", "adl", "rules", "valuation", "screen"):
        text = (ROOT / "engine" / f"{name}.py").read_text()
        assert "Simulation" not in text and "sim." not in text, name


LONG_FILE_LINES = 500
"""An engine module longer than this says why at its top (a docstring line starting
"Longer than 500 lines:"), so that a long file is a decision, not drift."""


def test_engine_modules_are_short_or_say_why():
    long = []
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > LONG_FILE_LINES and "Longer than 500 lines:" not in doc:
            long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, long
