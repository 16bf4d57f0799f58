"""Every scenario of the library runs under the engine's laws (a short, small version of each)."""

from pathlib import Path

import pytest

from engine.config import load_config
from engine.sim import Simulation

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "configs" / "scenarios").glob("*.toml"))
DATA = ROOT / "pipelines" / "data" / "market"


def test_the_library_has_every_scenario_family():
    names = {p.stem for p in SCENARIOS}
    assert names >= {
        "calm",
        "volatile",
        "flash_crash",
        "cascade",
        "oracle_lag",
        "congestion",
        "illiquid_alt",
        "correlated_crash",
        "replay",
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs_and_conserves_value(path):
    cfg = load_config(path, ["accounts.count=300", "steps=80"])
    sim = Simulation(cfg)
    for _ in range(cfg.steps):
        sim.step()
    assert sim.ledger.conservation_error() == 0
    assert (sim.ledger.size.sum(axis=0) == 0).all()
