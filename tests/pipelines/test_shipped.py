"""What ships with the package is found by name, from any folder."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.shipped import CONFIGS, catalog, config_path, scenarios_place


def test_every_shipped_config_is_listed_by_name_with_one_line(tmp_path):
    files = {p.stem for p in CONFIGS.glob("**/*.toml")}
    shipped = catalog()
    assert {s.name for s in shipped} == files and len(shipped) == len(files)
    assert all(s.about and s.about.endswith(".") for s in shipped)
    # Run from an empty folder: nothing may be found relative to the working directory.
    listing = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "scenarios"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = listing.splitlines()
    for s in shipped:
        assert sum(line.split()[:1] == [s.name] for line in lines) == 1
    assert "--replays real: 4 real 1-minute crash files" in listing


def test_a_name_resolves_to_the_shipped_file_and_a_path_wins(tmp_path, monkeypatch):
    assert config_path("cascade") == CONFIGS / "scenarios" / "cascade.toml"
    assert config_path("short_squeeze") == CONFIGS / "eval" / "short_squeeze.toml"
    assert config_path("stress") == CONFIGS / "stress.toml"
    assert scenarios_place("eval") == CONFIGS / "eval"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cascade").write_text('name = "mine"\n')
    assert str(config_path("cascade")) == "cascade"  # a file of that name in the folder wins


def test_an_unknown_name_is_one_line_with_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["simulate", "--config", "cascad", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.strip() == (
        "error: config 'cascad' is neither a file nor a shipped config (predliq scenarios lists "
        "them)"
    )
    assert not any(tmp_path.iterdir())


def test_simulate_by_name_equals_simulate_by_path(tmp_path):
    small = ["--set", "accounts.count=300", "--set", "steps=60", "--seed", "3"]
    for how, place in (("name", "cascade"), ("path", str(CONFIGS / "scenarios/cascade.toml"))):
        r = CliRunner().invoke(
            main, ["simulate", "--config", place, "--out", str(tmp_path / how), *small]
        )
        assert r.exit_code == 0, r.output
    by_name = sorted(p.relative_to(tmp_path / "name") for p in (tmp_path / "name").rglob("*"))
    by_path = sorted(p.relative_to(tmp_path / "path") for p in (tmp_path / "path").rglob("*"))
    assert by_name == by_path
    for rel in by_name:
        a, b = tmp_path / "name" / rel, tmp_path / "path" / rel
        assert a.is_dir() or a.read_bytes() == b.read_bytes()
