"""The trader population: Hawkes arrivals, trader kinds, and collateral top-ups."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import resolve
from engine.events import EventKind
from engine.sim import Simulation
from engine.traders import TraderType


def hawkes(steps=3000, **traders):
    return resolve(
        {
            "seed": 5,
            "steps": steps,
            "tick_ms": 15_000,
            "markets": [
                {
                    "name": "BTC",
                    "initial_price": 100.0,
                    "sigma_annual": 0.3,
                    "position_sigma_base": 10.0,
                }
            ],
            "accounts": {"count": 2000},
            "traders": {
                "model": "hawkes",
                "base_rate_per_minute": 0.004,
                "branching_ratio": 0.7,
                "move_weight": 0.0,
                "liquidation_weight": 0.0,
                **traders,
            },
        }
    )


def order_counts(sim: Simulation) -> np.ndarray:
    r = sim.records
    return (r["orders_accepted"] + r["orders_rejected"]).sum(axis=1)[1:]


def test_hawkes_arrivals_have_the_stationary_rate_and_cluster():
    sim = Simulation(hawkes())
    sim.run()
    counts = order_counts(sim)
    mu = 0.004 * 0.25 * 2000  # orders per block from the base rate
    assert counts.mean() == pytest.approx(mu / (1 - 0.7), rel=0.15)
    # Over-dispersed over 5-minute windows (Poisson arrivals would give var/mean = 1) and
    # autocorrelated: arrivals cluster.
    windows = counts[: counts.size // 20 * 20].reshape(-1, 20).sum(axis=1)
    assert windows.var() / windows.mean() > 2.0
    c = counts - counts.mean()
    assert (c[1:] * c[:-1]).mean() / (c * c).mean() > 0.03


def test_liquidations_and_large_moves_excite_trading():
    cfg = hawkes(steps=400, move_weight=20.0, liquidation_weight=1.0)
    cfg = resolve(
        {
            **_as_dict(cfg),
            "shocks": [{"market": "BTC", "tick": 200, "log_return": -0.08, "over_ticks": 4}],
        }
    )
    sim = Simulation(cfg)
    sim.run()
    counts = order_counts(sim)
    assert counts[200:230].mean() > 2 * counts[100:195].mean()


def _as_dict(cfg):
    import dataclasses

    d = dataclasses.asdict(cfg)
    d["markets"] = [{k: v for k, v in mk.items() if k not in ("venue",)} for mk in d["markets"]]
    return d


def test_kinds_choose_leverage_and_side():
    sim = Simulation(hawkes(steps=10))
    types = sim.trader_type[1:]
    assert {0, 1, 2} == set(np.unique(types))
    assert abs((types == TraderType.MOMENTUM).mean() - 0.25) < 0.03
    snapshot = sim.labelled_accounts()
    lev = snapshot.groupby("trader_type")["leverage"].median()
    assert lev[TraderType.MOMENTUM] > lev[TraderType.NOISE] > lev[TraderType.HEDGER]
    # Against a falling trend, momentum traders mostly sell and hedgers mostly buy.
    tr = sim.traders
    tr.trend[:] = -0.01
    tr.excitation = 5000.0
    idx, _, side, frac = tr.orders(sim.draws, 11, sim.trader_type, sim.ledger.size, 1)
    kind = sim.trader_type[idx]
    opening = frac == 0
    assert (side[(kind == TraderType.MOMENTUM) & opening] < 0).mean() > 0.7
    assert (side[(kind == TraderType.HEDGER) & opening] > 0).mean() > 0.5


def test_breached_accounts_top_up_after_the_delay():
    cfg = resolve(
        {
            "seed": 2,
            "steps": 60,
            "tick_ms": 15_000,
            "markets": [
                {
                    "name": "BTC",
                    "initial_price": 100.0,
                    "sigma_annual": 0.5,
                    "position_sigma_base": 50.0,
                }
            ],
            "accounts": {
                "count": 1000,
                "leverage_min": 5.0,
                "leverage_max": 30.0,
                "cross_fraction": 0.5,
            },
            "keepers": {"latency_ticks": 10, "capacity_per_block": 5},
            "traders": {
                "topup_probability": 1.0,
                "topup_delay_ticks": 3,
                "topup_target_ratio": 2.0,
            },
            "shocks": [{"market": "BTC", "tick": 20, "log_return": -0.05, "over_ticks": 2}],
        }
    )
    sim = Simulation(cfg)
    sim.run()
    onset_tick, onset_account = sim.onsets()
    deposits = sim.events.to_frame()
    deposits = deposits[deposits["kind"] == int(EventKind.DEPOSIT)]
    assert len(deposits) > 20
    first_onset = {}
    for t, a in zip(onset_tick, onset_account, strict=True):
        first_onset.setdefault(int(a), int(t))
    for _, row in deposits.iterrows():
        assert int(row["tick"]) - 3 in {
            t for t, a in zip(onset_tick, onset_account, strict=True) if a == row["account"]
        }
    assert sim.ledger.conservation_error() == 0
    frame = sim.labelled_accounts()
    assert (frame["ticks_since_topup"] >= 0).any()
