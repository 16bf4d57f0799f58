"""The predliq command line: outputs, determinism to the byte, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main

CONFIG = """
name = "tiny"
seed = 11
steps = 40
[accounts]
count = 300
order_rate = 0.05
[[markets]]
name = "BTC-PERP"
initial_price = 30000.0
sigma_annual = 3.0
position_sigma_base = 0.5
[[shocks]]
market = "BTC-PERP"
tick = 10
log_return = -0.2
over_ticks = 5
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(CONFIG)
    return p


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_simulate_writes_partition_with_manifest(tmp_path, config_file):
    out = tmp_path / "out"
    r = _run("simulate", "--config", str(config_file), "--out", str(out))
    assert r.exit_code == 0, r.output
    part = out / "scenario=tiny" / "seed=11"
    manifest = json.loads((part / "manifest.json").read_text())
    markets = pd.read_parquet(part / "markets.parquet")
    events = pd.read_parquet(part / "events.parquet")
    assert manifest["rows"]["markets"] == len(markets) == (40 + 1) * 1  # (steps + 1) x markets
    assert manifest["rows"]["events"] == len(events)
    assert manifest["config"]["seed"] == 11 and len(manifest["config_hash"]) == 64
    assert markets["liquidations"].sum() > 0
    assert "liquidations" in r.output and "value conserved exactly" in r.output
    # A rerun of the same config finds the partition complete and does nothing.
    again = _run("simulate", "--config", str(config_file), "--out", str(out))
    assert again.exit_code == 0 and "already complete" in again.output
    # Another config into the same partition is refused...
    other = _run("simulate", "--config", str(config_file), "--out", str(out), "--set", "steps=41")
    assert other.exit_code == 2 and "already holds a different run" in other.output
    # ...unless asked to overwrite.
    over = _run(
        "simulate",
        "--config",
        str(config_file),
        "--out",
        str(out),
        "--set",
        "steps=41",
        "--overwrite",
    )
    assert over.exit_code == 0
    assert len(pd.read_parquet(part / "markets.parquet")) == 42


def test_same_seed_same_bytes_and_seed_option(tmp_path, config_file):
    for name in ("a", "b"):
        assert (
            _run("simulate", "--config", str(config_file), "--out", str(tmp_path / name)).exit_code
            == 0
        )
    pa, pb = (tmp_path / n / "scenario=tiny" / "seed=11" for n in ("a", "b"))
    for f in (
        "markets.parquet",
        "events.parquet",
        "accounts.parquet",
        "manifest.json",
        "summary.json",
    ):
        assert (pa / f).read_bytes() == (pb / f).read_bytes(), f
    r = _run("simulate", "--config", str(config_file), "--out", str(tmp_path / "c"), "--seed", "5")
    assert r.exit_code == 0
    pc = tmp_path / "c" / "scenario=tiny" / "seed=5"
    assert (pc / "events.parquet").read_bytes() != (pa / "events.parquet").read_bytes()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "markets.0.tick_size=0"], "markets.0.tick_size must be positive, was 0.0"),
        (["--set", "venue=kraken"], "venue must be one of"),
        (["--set", "markets.0.taker_fee=-1"], "markets.0.taker_fee"),
        (["--set", "accounts.colour=1"], "accounts.colour is not a known key"),
        (["--set", "steps=[1,"], "--set steps value does not parse"),
        (
            ["--set", "markets.0.margin.brackets.0.maintenance_margin=0.2"],
            "maintenance_margin must be below initial_margin",
        ),
    ],
)
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, config_file, extra, needle):
    out = tmp_path / "out"
    r = _run("simulate", "--config", str(config_file), "--out", str(out), *extra)
    assert r.exit_code == 2
    assert needle in r.output
    assert r.output.strip().count("\n") == 0 and r.output.startswith("error: ")
    assert not out.exists()


def test_missing_or_malformed_config_file(tmp_path):
    r = _run("simulate", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "cannot be read" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[[markets]\n")
    r = _run("simulate", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "is not valid TOML" in r.output


def test_interrupted_write_leaves_no_partition(tmp_path, config_file, monkeypatch):
    import engine.history as history

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(history, "_write_table", boom)
    out = tmp_path / "out"
    r = _run("simulate", "--config", str(config_file), "--out", str(out))
    assert r.exit_code != 0
    parent = out / "scenario=tiny"
    assert not (parent / "seed=11").exists()
    assert list(parent.iterdir()) == []  # the temporary folder was removed too


def test_a_bug_is_a_traceback_not_an_input_error(tmp_path, config_file, monkeypatch):
    """A plain ValueError from inside the engine is a programming error: the command line lets
    it through (exit 1, the exception kept) instead of printing it as a refusal of input."""
    import pipelines.simulate as simulate

    def bug(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(simulate, "write_run", bug)
    r = _run("simulate", "--config", str(config_file), "--out", str(tmp_path / "out"))
    assert r.exit_code == 1
    assert isinstance(r.exception, ValueError) and "error:" not in r.output


def test_help_and_console_script():
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("simulate", "demo"):
        assert command in r.stdout


def test_demo_runs_and_prints_the_summary_table():
    r = _run("demo", "--stress-only", "--set", "accounts.count=2000", "--set", "steps=300")
    assert r.exit_code == 0, r.output
    for column in ("liquidations", "bad debt", "IF before", "IF after", "ADL notional"):
        assert column in r.output
    assert "value conserved exactly" in r.output


def test_the_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    r = _run(
        "demo",
        "--quick",
        "--workers",
        "1",
        "--out",
        str(out),
        "--set",
        "accounts.count=1000",
        "--set",
        "steps=200",
    )
    assert r.exit_code == 0, r.output
    assert "registered breach-forecaster v1 as champion" in r.output
    assert "out of sample" in r.output and str(out / "report" / "report.html") in r.output
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["lineage"]["model_version"] == 1 and summary["frontier_in_sample"]["predictive"]
    assert (out / "models" / "breach-forecaster" / "model.txt").exists()


def test_unwritable_output_fails_before_running(tmp_path, config_file):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _run("simulate", "--config", str(config_file), "--out", str(blocker / "runs"))
    assert r.exit_code == 2
    assert "cannot be created" in r.output and "liquidations" not in r.output
    r = _run("demo", "--out", str(blocker / "runs"))
    assert r.exit_code == 2 and "cannot be created" in r.output
