"""Network congestion: a volatility spike shrinks keeper capacity, delays keepers and the oracle."""

import numpy as np

from engine.config import resolve
from engine.sim import Simulation


def test_congestion_follows_volatility_and_slows_keepers_and_oracle():
    cfg = resolve(
        {
            "seed": 1,
            "steps": 80,
            "markets": [
                {
                    "name": "BTC",
                    "initial_price": 100.0,
                    "sigma_annual": 0.5,
                    "position_sigma_base": 100.0,
                }
            ],
            "accounts": {"count": 500},
            "keepers": {"count": 1, "latency_ticks": 1, "capacity_per_block": 40},
            "oracle": {"delay_ticks": 1},
            "congestion": {
                "enabled": True,
                "vol_threshold": 3.0,
                "vol_span": 5.0,
                "capacity_loss": 0.75,
                "extra_latency_ticks": 4,
                "extra_oracle_delay_ticks": 3,
            },
            "shocks": [{"market": "BTC", "tick": 40, "log_return": -0.1, "over_ticks": 3}],
        }
    )
    sim = Simulation(cfg)
    sim.run()
    r = sim.records
    calm, crash = slice(1, 40), slice(41, 50)
    assert (r["congestion"][calm] == 0).all()
    assert r["congestion"][crash].max() == 1.0
    assert r["keeper_capacity"][calm].min() == 40 and r["keeper_capacity"][crash].min() == 10
    assert r["keeper_latency"][crash].max() == 5
    assert r["oracle_age"][calm].max() == 0
    # The oracle reports ever later ticks, never an earlier one: its price path is a lagged,
    # monotone-in-time copy of the index.
    seen = [np.flatnonzero(sim.index_path[:, 0] == p)[0] for p in r["oracle_price"][1:, 0]]
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))
    assert max(t - s for t, s in zip(range(1, 81), seen, strict=True)) == 4
    liq = r["liquidations"][:, 0]
    assert (liq <= r["keeper_capacity"][:, 0]).all()


def test_congestion_off_changes_nothing():
    base = {
        "seed": 2,
        "steps": 30,
        "accounts": {"count": 100},
        "markets": [{"name": "BTC", "initial_price": 100.0, "sigma_annual": 2.0}],
    }
    a, b = (
        Simulation(resolve(base)),
        Simulation(resolve({**base, "congestion": {"enabled": False, "vol_span": 1.0}})),
    )
    a.run()
    b.run()
    assert a.market_frame().equals(b.market_frame())
