"""Stylized facts: the real files reproduce the reference table; simulated runs are described."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.config import resolve
from engine.stylized import file_statistics
from pipelines.cli import main
from pipelines.describe import describe

DATA = Path(__file__).resolve().parents[2] / "pipelines" / "data" / "market"

# shared/reference/stylized_facts.md: sigma 1m %, Parkinson %, excess kurtosis, acf |r| 1 and 5,
# corr(imbalance, r), worst 1m %, move %.
REFERENCE = {
    "2020-03-12": (1.337, 1.378, 5.5, 0.44, 0.19, 0.46, -4.55, -18.0),
    "2021-05-19": (1.194, 1.817, 7.3, 0.47, 0.36, 0.56, -6.52, -8.5),
    "2022-06-13": (0.236, 0.245, 5.8, 0.23, 0.14, 0.56, -0.73, -16.0),
    "2024-08-05": (0.344, 0.323, 20.0, 0.26, 0.20, 0.61, -3.36, -9.9),
}
KEYS = (
    "sigma_1m_pct",
    "parkinson_1m_pct",
    "excess_kurtosis",
    "acf_abs_1",
    "acf_abs_5",
    "corr_imbalance_return",
    "worst_1m_pct",
    "move_pct",
)


@pytest.mark.parametrize("day", sorted(REFERENCE))
def test_real_file_statistics_match_the_reference(day):
    stats = file_statistics(DATA / f"BTCUSDT-PERP_1m_{day}.csv.gz")
    for key, expected in zip(KEYS, REFERENCE[day], strict=True):
        assert stats[key] == pytest.approx(expected, abs=0.011 if abs(expected) < 2 else 0.06), key


def test_describe_measures_a_cascade():
    cfg = resolve(
        {
            "seed": 3,
            "steps": 240,
            "tick_ms": 15_000,
            "markets": [
                {
                    "name": "ALT",
                    "initial_price": 10.0,
                    "sigma_annual": 1.0,
                    "position_sigma_base": 3_000.0,
                    "depth_usd": 2e5,
                }
            ],
            "accounts": {
                "count": 3000,
                "leverage_min": 5.0,
                "leverage_max": 25.0,
                "order_rate": 0.02,
            },
            "keepers": {"capacity_per_block": 200},
            "index": {"model": "garch"},
            "shocks": [{"market": "ALT", "tick": 100, "log_return": -0.08, "over_ticks": 8}],
        }
    )
    sim, (stats,) = describe(cfg)
    assert stats["minutes"] == 61
    assert stats["amplification"] > 1.2
    assert stats["mark_drawdown_pct"] > stats["index_drawdown_pct"]
    assert stats["liquidation_dispersion"] > 1.0  # liquidations cluster
    assert stats["excess_kurtosis"] > 0


def test_facts_and_describe_commands():
    r = CliRunner().invoke(main, ["facts", str(DATA)])
    assert r.exit_code == 0 and "2020-03-12" in r.output and "excess kurtosis" in r.output
    r = CliRunner().invoke(main, ["facts", "/nonexistent-folder"])
    assert r.exit_code == 2
    builtin = "stress"  # a shipped config, by name
    r = CliRunner().invoke(
        main,
        [
            "simulate",
            "--config",
            builtin,
            "--describe",
            "--set",
            "accounts.count=500",
            "--set",
            "steps=120",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "cascade amplification" in r.output
    r = CliRunner().invoke(main, ["simulate", "--config", builtin])
    assert r.exit_code == 2 and "--out is required" in r.output
