"""The order book: square-root impact, depletion and refill, withdrawal, transient/permanent."""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import Book
from engine.config import resolve
from engine.sim import Simulation


def book(**market) -> Book:
    mk = {
        "name": "M",
        "initial_price": 100.0,
        "sigma_annual": 0.8,
        "depth_usd": 1e6,
        "half_spread": 0.0005,
        **market,
    }
    cfg = resolve({"markets": [mk]})
    return Book(cfg.markets, cfg.tick_ms)


def test_impact_follows_the_square_root_law():
    b = book()
    impacts = []
    for q in (10_000.0, 40_000.0, 160_000.0):
        fill, move = b.fills(0, np.array([-q]), 100.0)
        impacts.append(1.0 - fill[0] / 100.0 - 0.0005)  # beyond the half spread
    assert impacts[1] / impacts[0] == pytest.approx(2.0, rel=1e-9)
    assert impacts[2] / impacts[1] == pytest.approx(2.0, rel=1e-9)
    # Walking the 1%-depth moves the mid by 1%; the average fill is 2/3 of the way.
    fill, move = b.fills(0, np.array([1e6]), 100.0)
    assert move[0] == pytest.approx(0.01)
    assert fill[0] == pytest.approx(100.0 * (1.0005 + 0.01 * 2 / 3))


def test_orders_in_a_block_walk_further_and_fills_are_pure_until_consumed():
    b = book()
    one, _ = b.fills(0, np.array([-50_000.0]), 100.0)
    two, moves = b.fills(0, np.array([-50_000.0, -50_000.0]), 100.0)
    assert two[0] == one[0] and two[1] < two[0]  # the second order meets a lower book
    again, _ = b.fills(0, np.array([-50_000.0]), 100.0)
    assert again[0] == one[0]  # pricing changed nothing
    b.consume(0, np.array([-50_000.0]))
    after, _ = b.fills(0, np.array([-50_000.0]), 100.0)
    assert after[0] == pytest.approx(two[1])
    assert b.deviation()[0] == pytest.approx(moves[0])


def test_depth_is_used_up_then_refills_with_its_half_life():
    b = book(depth_refill_half_life_ticks=4.0, permanent_impact_fraction=0.0)
    b.consume(0, np.array([-400_000.0]))
    b.end_block()
    assert b.bid_depth[0] == pytest.approx(600_000.0)
    assert b.ask_depth[0] == pytest.approx(1e6)
    calm = np.array([b.sigma_ref[0]])  # a return of one typical size keeps makers in place
    for _ in range(4):
        b.begin_block(calm)
    assert b.bid_depth[0] == pytest.approx(1e6 - 400_000.0 / 2, rel=0.02)


def test_makers_withdraw_depth_and_widen_the_spread_when_volatility_spikes():
    b = book(depth_vol_elasticity=1.0, min_depth_fraction=0.05)
    b.begin_block(np.array([30 * b.sigma_ref[0]]))  # a 30-sigma minute
    assert b.bid_depth[0] < 0.5e6 and b.ask_depth[0] < 0.5e6
    assert b.half_spread[0] > 2 * 0.0005
    for _ in range(300):
        b.begin_block(np.array([b.sigma_ref[0]]))
    assert b.bid_depth[0] == pytest.approx(1e6, rel=0.05)


def test_transient_impact_fades_fast_and_permanent_impact_slowly():
    b = book(impact_half_life_ticks=2.0, basis_half_life_ticks=100.0, permanent_impact_fraction=0.4)
    b.consume(0, np.array([-1e6]))
    b.end_block()
    assert b.deviation()[0] == pytest.approx(-0.01)
    calm = np.array([b.sigma_ref[0]])
    for _ in range(10):
        b.begin_block(calm)
    assert b.transient[0] == pytest.approx(-0.006 * 0.5**5)
    assert b.permanent[0] == pytest.approx(-0.004 * 0.5**0.1)


def stress_config(**market):
    mk = {
        "name": "BTC",
        "initial_price": 100.0,
        "sigma_annual": 0.5,
        "position_sigma_base": 300.0,
        "insurance_fund_usd": 1e6,
        **market,
    }
    return resolve(
        {
            "seed": 3,
            "steps": 120,
            "markets": [mk],
            "accounts": {"count": 3000, "leverage_min": 5.0, "leverage_max": 25.0},
            "keepers": {"count": 2, "latency_ticks": 1, "capacity_per_block": 200},
            "shocks": [{"market": "BTC", "tick": 30, "log_return": -0.08, "over_ticks": 10}],
        }
    )


def test_liquidation_impact_deepens_the_crash():
    """Same index path; a thin book lets liquidations push the venue below the index."""
    thin = Simulation(stress_config(depth_usd=3e5))
    deep = Simulation(stress_config(depth_usd=1e12, min_depth_fraction=1.0))
    assert (thin.index_path == deep.index_path).all()
    thin.run()
    deep.run()
    low = lambda s: s.records["mark_price"][1:, 0].min() / 100.0 - 1.0  # noqa: E731
    index_low = deep.index_path[:, 0].min() / 100.0 - 1.0
    assert low(deep) == pytest.approx(index_low, abs=0.002)
    assert low(thin) < low(deep) - 0.01
    # Fills below bankruptcy prices: the thin book turns liquidations into bad debt.
    assert thin.summary()["bad_debt"] > 10 * max(deep.summary()["bad_debt"], 1.0)
