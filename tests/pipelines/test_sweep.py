"""Seed sweeps: parallel workers, and a sweep killed with SIGKILL resumes to the same bytes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.simulate import parse_seeds

ROOT = Path(__file__).resolve().parents[2]
CASCADE = ROOT / "configs" / "scenarios" / "cascade.toml"
SMALL = ["--set", "accounts.count=400", "--set", "steps=160", "--set", "shocks.0.tick=60"]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_parse_seeds():
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    for bad in ("3-1", "a", "-2", "1,,2"):
        with pytest.raises(ValueError, match="--seeds must look like"):
            parse_seeds(bad)


def test_parallel_sweep_equals_serial_sweep(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    r = CliRunner().invoke(
        main, ["simulate", "--config", str(CASCADE), "--seeds", "0-3", "--out", str(serial), *SMALL]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        main,
        [
            "simulate",
            "--config",
            str(CASCADE),
            "--seeds",
            "0-3",
            "--workers",
            "2",
            "--out",
            str(parallel),
            *SMALL,
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.count("liquidations") == 4
    a, b = _files(serial), _files(parallel)
    assert len(a) == 4 * 8 and a == b  # 7 tables + manifest per seed


def test_sigkill_mid_sweep_then_rerun_gives_the_uninterrupted_files(tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "simulate",
        "--config",
        str(CASCADE),
        "--seeds",
        "0-5",
        "--out",
        str(out),
        *SMALL,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    first = out / "scenario=cascade" / "seed=0" / "manifest.json"
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists()
    partitions = sorted(p.name for p in (out / "scenario=cascade").iterdir())
    assert len([p for p in partitions if p.startswith("seed=")]) < 6  # it really was cut short
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "clean"
    r = subprocess.run(
        [*cmd[: -len(SMALL) - 2], "--out", str(clean), *SMALL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert _files(out) == _files(clean)  # no leftover temporary folder either


def test_a_bad_input_found_inside_a_worker_is_one_line_as_in_a_serial_run(tmp_path, broken_replay):
    """The workers' tracebacks go to the log file; the terminal gets the serial run's line —
    also when another cluster on the machine holds Dask's usual HTTP port, 8787 (held here)."""
    import socket

    from pipelines.cluster import WORKER_LOG

    held = socket.socket()
    with contextlib.suppress(OSError):  # already taken by someone else: just as good
        held.bind(("0.0.0.0", 8787))
        held.listen()
    bad = broken_replay("high", "-1")
    before = WORKER_LOG.stat().st_size if WORKER_LOG.exists() else 0
    command = [sys.executable, "-m", "pipelines.cli", "simulate", "--config", "replay"]
    command += ["--set", f'index.replay_file="{bad}"', "--set", "steps=60"]
    runs = {}
    for how in (["--seed", "1"], ["--seeds", "1-4", "--workers", "2"]):
        out = tmp_path / how[-1]
        runs[how[0]] = subprocess.run(
            [*command, *how, "--out", str(out)], capture_output=True, text=True, timeout=300
        )
        assert not out.exists() or not any(out.rglob("*.parquet"))
    serial, parallel = runs["--seed"], runs["--seeds"]
    assert serial.returncode == parallel.returncode == 2
    error = [line for line in serial.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "line 6" in error[0]
    assert parallel.stderr.strip().splitlines() == error, parallel.stderr
    assert WORKER_LOG.read_text()[before:].count("Compute Failed") >= 1
    held.close()


def test_a_parallel_sweep_stopped_midway_leaves_no_process(tmp_path, sig=signal.SIGINT):
    """Ctrl-C during a sweep on a local cluster of 2 workers: the command exits and none of
    its workers, nannies or helpers outlives it (SIGTERM was measured the same way)."""
    import psutil

    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "pipelines.cli", "simulate", "--config", str(CASCADE)]
    # Far more seeds than can finish before the signal: on a slow machine 8 small seeds all
    # finished first (a clean-clone run on 2026-12-03; the stderr shows all 8 done).
    cmd += ["--seeds", "0-199", "--workers", "2", "--out", str(out), *SMALL]
    with (tmp_path / "stderr.txt").open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            # As at a terminal: a test session started in the background inherits SIGINT
            # ignored, and so would the command.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.time() + 180
    while not any(out.rglob("manifest.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert any(out.rglob("manifest.json")), "the sweep wrote nothing before it was stopped"
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "a 2-worker sweep runs worker processes"
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) != 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    _, left = psutil.wait_procs(workers, timeout=15)
    group = [p for p in psutil.process_iter() if _group_of(p) == proc.pid]
    for p in left + group:
        p.kill()
    assert not left and not group, [p.name() for p in left + group]


def _group_of(p) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None
