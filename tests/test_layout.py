"""Imports flow one way: engine/ never imports predictor, pipelines, lightgbm or mlflow."""

import ast
from pathlib import Path

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


def test_predictor_does_not_import_pipelines():
    for path in (ROOT / "predictor").rglob("*.py"):
        assert "pipelines" not in _imports(path), path


def test_engine_is_mypy_clean():
    import subprocess
    import sys

    import pytest

    pytest.importorskip("mypy")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "engine"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
