"""Shared helpers: small configs and hand-built ledgers for engine tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import SimConfig, resolve
from engine.state import Ledger

USD = 1_000_000


def small_config(**top: Any) -> SimConfig:
    """Return a valid one-market config; keyword arguments override top-level keys."""
    data: dict[str, Any] = {
        "seed": 3,
        "steps": 50,
        "markets": [
            {
                "name": "BTC",
                "initial_price": 100.0,
                "sigma_annual": 0.8,
                "base_quantum_exponent": -6,
                "tick_size": 0.01,
            }
        ],
        "accounts": {"count": 200, "leverage_min": 2.0, "leverage_max": 20.0},
        "oracle": {"delay_ticks": 0},
    }
    data.update(top)
    return resolve(data)


def hand_ledger(
    m: int,
    positions: list[tuple[float, list[float]]],
    cross: list[bool] | None = None,
    price: list[float] | None = None,
    exponent: int = -6,
    insurance_usd: float = 0.0,
) -> Ledger:
    """Return a ledger with the maker in row 0 and one trader per ``(collateral_usd, sizes)``.

    Sizes are base units opened at ``price`` against the maker; collateral sits in the cross pool
    (cross traders) or is split evenly across the isolated pools of the markets they trade.
    """
    n = len(positions) + 1
    led = Ledger.empty(n, m, 2)
    led.is_maker[0] = True
    if cross is not None:
        led.cross[1:] = cross
    price = price or [100.0] * m
    led.deposit(np.array([0]), 0, np.array([10**9 * USD]))
    for k in range(m):
        led.insurance[k] = int(insurance_usd * USD)
        led.net_deposits += int(insurance_usd * USD)
    for row, (collateral, sizes) in enumerate(positions, start=1):
        traded = [k for k, s in enumerate(sizes) if s != 0] or [0]
        if led.cross[row]:
            led.deposit(np.array([row]), 0, np.array([int(collateral * USD)]))
        else:
            for k in traded:
                led.deposit(np.array([row]), k, np.array([int(collateral * USD / len(traded))]))
        for k, s in enumerate(sizes):
            if s == 0:
                continue
            q = int(round(s * 10**-exponent))
            cost = int(np.floor(q * price[k] * USD * 10.0**exponent))
            led.trade_one(row, k, q, -cost)
            led.trade_one(0, k, -q, cost)
    return led


@pytest.fixture
def cfg_small() -> SimConfig:
    return small_config()


SMALL_HISTORY_SCENARIOS = ("cascade", "flash_crash")
SMALL_HISTORY_SEEDS = (0, 1, 2, 3)


def write_small_histories(root, scenarios=SMALL_HISTORY_SCENARIOS, seeds=SMALL_HISTORY_SEEDS):
    """Simulate shrunken shipped scenarios (900 accounts, 3 hours) into ``root``."""
    from pathlib import Path

    from engine.config import load_config
    from engine.history import write_run
    from engine.sim import Simulation

    configs = Path(__file__).resolve().parent.parent / "configs" / "scenarios"
    for name in scenarios:
        for seed in seeds:
            cfg = load_config(
                configs / f"{name}.toml",
                ["accounts.count=900", "steps=720", f"seed={seed}"],
            )
            sim = Simulation(cfg)
            sim.run()
            write_run(sim, root)
    return root


@pytest.fixture
def broken_replay(tmp_path):
    """Return a function writing a copy of the first shipped crash file into ``tmp_path`` with
    one value of line 6 replaced: ``broken_replay("high", "-1")`` -> the file's path."""
    import gzip

    from pipelines.shipped import real_crash_files

    lines = gzip.open(real_crash_files()[0], "rt").read().splitlines()

    def write(column: str, value: str, name: str = "broken"):
        header, row = lines[0].split(","), lines[5].split(",")
        row[header.index(column)] = value
        bad = tmp_path / f"BTCUSDT-PERP_1m_{name}.csv"
        bad.write_text("\n".join([*lines[:5], ",".join(row), *lines[6:]]) + "\n")
        return bad

    return write


@pytest.fixture(scope="session")
def small_histories(tmp_path_factory):
    """A read-only history root: two crash scenarios x seeds 0-3 (copy it before changing it)."""
    return write_small_histories(tmp_path_factory.mktemp("histories"))


@pytest.fixture(scope="session")
def trained_model(small_histories, tmp_path_factory):
    """(tracking URI, export folder) of a forecaster trained and registered once per session."""
    from click.testing import CliRunner

    from pipelines.cli import main

    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    export = root / "models"
    args = ["train", "--data", str(small_histories), "--tracking-uri", uri]
    result = CliRunner().invoke(main, [*args, "--export-dir", str(export)])
    assert result.exit_code == 0, result.output
    return uri, export / "breach-forecaster"


@pytest.fixture(autouse=True, scope="session")
def _compiled_model_cache(tmp_path_factory):
    """Keep compiled forecasters of the test session out of the user's cache."""
    previous = os.environ.get("PREDLIQ_CACHE")
    os.environ["PREDLIQ_CACHE"] = str(tmp_path_factory.mktemp("predliq-cache"))
    yield
    if previous is None:
        os.environ.pop("PREDLIQ_CACHE", None)
    else:
        os.environ["PREDLIQ_CACHE"] = previous


# Helper processes of Python's multiprocessing (used by Dask's workers) that live as long as
# the interpreter which started them and end with it: not something a test left behind.
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""This pytest-xdist worker's name (gw0, gw1...), None when the suite runs in one process."""


def _group_members() -> set[int]:
    """Process ids in this process's group (what a shell pipeline or CI started with it)."""
    import psutil

    group, members = os.getpgrp(), set()
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == group:
                members.add(p.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return members


def _started_by_this_session(before: set[int]) -> list:
    """Processes this test session started that are still running: its descendants, and
    orphans of its process group (a child whose parent died is re-parented, but keeps its
    group) that were not in the group when the session began (``before``: its pipeline
    neighbours, such as ``| tee``, and whatever runs it)."""
    import psutil

    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for pid in _group_members() - before - {me.pid}:
        try:
            p = psutil.Process(pid)
            # With the suite spread over workers (`pytest -n` with pytest-xdist installed), the
            # other worker's processes share the group: only orphans that inherited this
            # worker's name are its own.
            if p.environ().get("PYTEST_XDIST_WORKER") == _WORKER:
                found.setdefault(pid, p)
        except psutil.Error:
            continue
    alive = []
    for p in found.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                if not any(h in " ".join(p.cmdline()) for h in _INTERPRETER_HELPERS):
                    alive.append(p)
        except psutil.Error:
            continue
    return alive


@pytest.fixture(autouse=True, scope="session")
def _no_process_outlives_the_suite():
    """Fail the session when a process a test started (a server, a cluster's worker, a
    browser) is still running after every test has finished; then stop it."""
    import psutil

    before = _group_members()
    yield
    _, left = psutil.wait_procs(_started_by_this_session(before), timeout=10)
    if left:
        names = "; ".join(f"{p.pid} {p.name()}" for p in left)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        pytest.fail(f"{len(left)} process(es) outlived the tests that started them: {names}")


ATTEST_TEST_PTAU = Path(__file__).parent / "attest" / "data" / "test_2e12.ptau"
"""The shipped powers of tau of 2^12 the attestation tests prove with (see its README)."""
_ATTEST_WARM_UP = (
    "import sys; from pathlib import Path; from attest import toolchain; "
    "from attest.build import keys; keys(2, 4, 4, toolchain.supplied_ptau(Path(sys.argv[1])))"
)


def _is_attest_test(item: pytest.Item) -> bool:
    return item.path.parent.name == "attest" and item.path.parent.parent.name == "tests"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the attestation tests last, so that the setup of their circuits (about 45 s of one
    core in snarkjs) is made in the background while the other tests run (attest_home)."""
    items.sort(key=_is_attest_test)


@pytest.fixture(autouse=True, scope="session")
def attest_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The attestation tests' toolchain home (PREDLIQ_ATTEST_HOME) and the process setting up
    the two-market circuits of batches of 4 and aggregates of 4 over the test powers of tau
    (None when no attestation test is selected). PREDLIQ_TEST_ATTEST_HOME keeps the home
    between runs while working on those tests."""
    kept = os.environ.get("PREDLIQ_TEST_ATTEST_HOME")
    home = Path(kept) if kept else tmp_path_factory.mktemp("attest-home")
    before = os.environ.get("PREDLIQ_ATTEST_HOME")
    os.environ["PREDLIQ_ATTEST_HOME"] = str(home)
    warm_up = None
    if any(_is_attest_test(item) for item in request.session.items):
        warm_up = subprocess.Popen(
            [sys.executable, "-c", _ATTEST_WARM_UP, str(ATTEST_TEST_PTAU)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    yield home, warm_up
    if warm_up is not None and warm_up.poll() is None:
        warm_up.kill()
        warm_up.wait()
    if before is None:
        del os.environ["PREDLIQ_ATTEST_HOME"]
    else:
        os.environ["PREDLIQ_ATTEST_HOME"] = before
