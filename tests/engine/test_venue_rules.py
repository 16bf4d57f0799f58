"""Each venue rule of docs/venues.md shown by a small hand-built run whose outcome depends on it.

Every test runs the rule on and off (or at two settings) on the same ledger and path, so it fails
if the rule stops acting. Figures are quoted in docs/venues.md beside the rule and its source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.events import EventKind
from engine.sim import Simulation
from tests.conftest import USD, hand_ledger
from tests.engine.test_liquidation import events, path, venue

DYDX_MARGIN = {"model": "oi_scaled", "initial_margin": 0.05, "maintenance_fraction": 0.6}


def _dydx(liquidation=None, steps=5, **market):
    mk = {"venue": "dydx_v4", "margin": DYDX_MARGIN, **market}
    if liquidation is not None:
        mk["liquidation"] = liquidation
    return venue(steps=steps, venue="dydx_v4", market=mk)


def _notional_per_block(sim) -> pd.Series:
    liq = events(sim, EventKind.LIQUIDATION)
    return liq.groupby("tick")["amount"].apply(lambda a: a.abs().sum()) / USD


# ---- dYdX v4 --------------------------------------------------------------------------------


def test_dydx_liquidates_at_most_100k_of_a_subaccount_per_block():
    # $10M long with $300k: at $99 equity $200k < MM 3% x $9.9M = $297k, in breach every block.
    led = hand_ledger(1, [(300_000.0, [100_000.0])])
    sim = Simulation(_dydx(), index_path=path(5, 99.0), ledger=led)
    sim.run()
    per_block = _notional_per_block(sim)
    assert len(per_block) == 5
    assert per_block.max() <= 100_000.0
    assert per_block.min() > 99_000.0  # the limit, less one base quantum's rounding
    # Without the subaccount limit, 10% of the position goes in the first block.
    led = hand_ledger(1, [(300_000.0, [100_000.0])])
    unlimited = {"max_notional_per_block_usd": 0.0}
    sim = Simulation(_dydx(unlimited), index_path=path(5, 99.0), ledger=led)
    sim.step()
    assert _notional_per_block(sim).iloc[0] == pytest.approx(990_000.0, abs=1.0)


def test_dydx_fill_losing_more_than_the_insurance_limit_is_deleveraged_instead():
    # $10M long with $300k at $79: equity -$1.8M; liquidating it whole costs the fund $1.8M.
    whole = {"max_portion": 1.0, "max_notional_per_block_usd": 0.0}
    outcomes = {}
    for limit in (0.0, 1_000_000.0):
        led = hand_ledger(1, [(300_000.0, [100_000.0])], insurance_usd=5_000_000.0)
        cfg = _dydx(
            {**whole, "max_insurance_lost_per_block_usd": limit},
            steps=1,
            insurance_fund_usd=5_000_000.0,
        )
        sim = Simulation(cfg, index_path=path(1, 79.0), ledger=led)
        sim.step()
        outcomes[limit] = (
            events(sim, EventKind.INSURANCE_PAYOUT)["amount"].sum() / USD,
            len(events(sim, EventKind.ADL)),
        )
        assert sim.ledger.conservation_error() == 0
        assert sim.ledger.size[1, 0] == 0
    paid, adl = outcomes[0.0]
    assert paid == pytest.approx(1_800_000.0, rel=1e-6) and adl == 0
    paid, adl = outcomes[1_000_000.0]
    assert paid == 0 and adl > 0


def test_dydx_clamps_the_8_hour_funding_rate_and_pays_an_eighth_each_hour():
    # Hourly blocks, the oracle an hour late: the index jumps 30% and the premium is 30%.
    # dYdX clamps the 8-hour rate at 600% x (5% - 3%) = 12% and pays 12% / 8 = 1.5% an hour.
    paid = {}
    for hours in (8.0, 0.0):
        market = {"funding_interval_ticks": 1, "funding_rate_hours": hours}
        cfg = venue(
            steps=1,
            venue="dydx_v4",
            tick_ms=3_600_000,
            oracle={"delay_ticks": 1},
            market={"venue": "dydx_v4", "margin": DYDX_MARGIN, **market},
        )
        assert cfg.markets[0].funding_clamp == pytest.approx(0.12)
        led = hand_ledger(1, [(50_000.0, [10.0]), (50_000.0, [-10.0])])
        sim = Simulation(cfg, index_path=np.array([[100.0], [130.0]]), ledger=led)
        sim.step()
        paid[hours] = sim.market.funding_rate[0]
        assert sim.ledger.conservation_error() == 0
    assert paid[8.0] == pytest.approx(0.12 / 8)
    assert paid[0.0] == pytest.approx(0.12)


# ---- Hyperliquid -----------------------------------------------------------------------------

HL_MARGIN = {
    "model": "tiered",
    "brackets": [{"floor_usd": 0, "initial_margin": 0.1, "maintenance_margin": 0.05}],
}


def _hyperliquid(steps=5, liquidation=None, **top):
    mk = {"venue": "hyperliquid", "margin": HL_MARGIN}
    if liquidation is not None:
        mk["liquidation"] = liquidation
    return venue(steps=steps, venue="hyperliquid", market=mk, **top)


def test_hyperliquid_sends_20_percent_at_a_time_above_100k_with_a_30_second_cooldown():
    # $1M long with $40k at $99.5: equity $35k < MM $49.75k but above 2/3 of it (the book, not
    # the vault). A 20% chunk leaves MM $39.8k, still above equity; the second ends the breach.
    seen = {}
    for cooldown_ms in (30_000, 0):
        cfg = _hyperliquid(steps=8, tick_ms=10_000, liquidation={"cooldown_ms": cooldown_ms})
        led = hand_ledger(1, [(40_000.0, [10_000.0])])
        sim = Simulation(cfg, index_path=path(8, 99.5), ledger=led)
        sim.run()
        liq = events(sim, EventKind.LIQUIDATION)
        seen[cooldown_ms] = (liq["tick"].tolist(), (-liq["size"] // USD).tolist())
        assert events(sim, EventKind.BACKSTOP).empty
    assert seen[30_000] == ([1, 4], [2_000, 1_600])  # 10 s blocks: 3 blocks apart
    assert seen[0] == ([1, 2], [2_000, 1_600])


def test_hyperliquid_liquidates_a_position_up_to_100k_whole():
    cfg = _hyperliquid(steps=1)
    led = hand_ledger(1, [(4_000.0, [1_000.0])])  # $100k with $4k: equity $3.5k < MM $4.975k
    sim = Simulation(cfg, index_path=path(1, 99.5), ledger=led)
    sim.step()
    assert (-events(sim, EventKind.LIQUIDATION)["size"]).tolist() == [1_000 * USD]


def test_hyperliquid_account_below_two_thirds_of_mm_ends_in_the_vault_not_the_book():
    # $10,000 long with $700 at $96: equity $300 < 2/3 x MM $480 -> the vault takes the whole
    # position at the mark and the $300 left; nothing goes to the book in that block.
    cfg = _hyperliquid(steps=1)
    led = hand_ledger(1, [(700.0, [100.0])])
    sim = Simulation(cfg, index_path=path(1, 96.0), ledger=led)
    vault = sim.vault.row
    sim.step()
    assert events(sim, EventKind.LIQUIDATION).empty
    assert sim.ledger.size[1, 0] == 0 and sim.ledger.quote[1] == 0
    assert sim.ledger.size[vault, 0] == 100 * USD
    assert sim.vault.equity() - sim.vault.start_equity == pytest.approx(300 * USD, abs=1)
    assert sim.ledger.conservation_error() == 0 and sim.ledger.size.sum() == 0
    # Without the backstop the same account is closed on the book and there is no vault.
    cfg = _hyperliquid(steps=1, liquidation={"backstop_ratio": 0.0})
    sim = Simulation(cfg, index_path=path(1, 96.0), ledger=hand_ledger(1, [(700.0, [100.0])]))
    sim.step()
    assert sim.vault is None
    assert (-events(sim, EventKind.LIQUIDATION)["size"]).tolist() == [100 * USD]


def test_the_vault_trades_out_what_it_took_and_absorbs_deficits():
    # At $90 the account is $300 under water: the vault pays it (bad debt borne by the vault,
    # not the insurance fund), then sells 20% of the $900k position per block on the book.
    cfg = _hyperliquid(steps=4)
    led = hand_ledger(1, [(70_000.0, [10_000.0])])
    sim = Simulation(cfg, index_path=path(4, 90.0), ledger=led)
    sim.run()
    s = sim.summary()
    assert s["vault_takeovers"] == 1
    assert s["vault_deficits_absorbed"] == pytest.approx(30_000.0, abs=1e-3)
    assert s["bad_debt"] == pytest.approx(30_000.0, abs=1e-3)
    assert s["insurance_paid"] == 0
    unwinds = events(sim, EventKind.VAULT_UNWIND)
    assert unwinds["tick"].tolist() == [2, 3, 4]
    assert (unwinds["size"] // USD).tolist() == [-2_000, -1_600, -1_280]
    assert sim.ledger.size[sim.vault.row, 0] == 5_120 * USD
    assert s["vault_pnl"] == pytest.approx(-30_000.0, abs=1.0)
    assert s["conservation_error"] == 0


# ---- Drift v2 --------------------------------------------------------------------------------

DRIFT_MARGIN = {
    "model": "tiered",
    "brackets": [{"floor_usd": 0, "initial_margin": 0.1, "maintenance_margin": 0.05}],
}


def _drift(steps=1, liquidation=None, **market):
    mk = {
        "venue": "drift_v2",
        "margin": DRIFT_MARGIN,
        "insurance_fund_usd": 1_000_000.0,
        **market,
    }
    if liquidation is not None:
        mk["liquidation"] = liquidation
    return venue(steps=steps, venue="drift_v2", market=mk)


@pytest.mark.parametrize(
    ("tier", "absorbs", "fund_pays", "pool_pays"),
    [
        ("", True, 280_000.0, 0.0),  # no tier: the fund pays to its balance
        ("C", True, 100_000.0, 50_000.0),  # tier C: $100k over the run, then the fee pool
        ("C", False, 100_000.0, 0.0),  # a fee pool that only advances the socialized loss
        ("speculative", True, 0.0, 50_000.0),  # no insurance at all
    ],
)
def test_drift_insurance_is_capped_by_contract_tier_and_the_fee_pool_pays_before_socializing(
    tier, absorbs, fund_pays, pool_pays
):
    # $1M long with $50k at $67: $280k under water. The fund holds $1M, the fee pool $50k.
    cfg = _drift(contract_tier=tier, fee_pool_absorbs=absorbs)
    led = hand_ledger(1, [(50_000.0, [10_000.0]), (1_000_000.0, [-10_000.0])])
    led.insurance[0] = 1_000_000 * USD
    led.fee_pool[0] = 50_000 * USD
    led.net_deposits += 1_050_000 * USD
    sim = Simulation(cfg, index_path=path(1, 67.0), ledger=led)
    sim.step()
    paid = events(sim, EventKind.INSURANCE_PAYOUT)["amount"].sum() / USD
    pool = events(sim, EventKind.FEE_POOL_PAYOUT)["amount"].sum() / USD
    s = sim.summary()
    assert paid == pytest.approx(fund_pays, abs=0.01)
    assert pool == pytest.approx(pool_pays, abs=0.01)
    assert s["socialized_loss"] == pytest.approx(280_000.0 - fund_pays - pool_pays, abs=0.01)
    assert s["conservation_error"] == 0 and (sim.ledger.size.sum(axis=0) == 0).all()


def test_drift_account_stays_in_liquidation_until_the_buffer_is_covered():
    # $1M long with $59k at $99: equity $49k < MM $49.5k. The first block may free only 10% of
    # the shortage (Drift's time throttle), which lifts equity above MM but leaves it below MM
    # plus the 2% buffer: Drift keeps liquidating in the next block; without the rule, no.
    ticks = {}
    for sticky in (True, False):
        cfg = _drift(steps=4, liquidation={"stay_until_buffer": sticky})
        led = hand_ledger(1, [(59_000.0, [10_000.0])])
        sim = Simulation(cfg, index_path=path(4, 99.0), ledger=led)
        sim.step()
        snap = sim.evaluate()
        assert snap.cross_equity[1] > snap.cross_mm[1]  # out of breach after the first block
        b = sim.liquidator.batch(np.array([1]), 0, np.zeros(1, np.int64))
        assert b.shortage(0.02, buffer_on_losses=True)[0] > 0  # but short of the buffer
        sim.run()
        ticks[sticky] = events(sim, EventKind.LIQUIDATION)["tick"].tolist()
        b = sim.liquidator.batch(np.array([1]), 0, np.zeros(1, np.int64))
        assert (b.shortage(0.02, buffer_on_losses=True)[0] == 0) == sticky
        assert sim.ledger.conservation_error() == 0
    assert ticks == {True: [1, 2], False: [1]}


def test_drift_shortage_counts_the_buffer_on_negative_pnl():
    cfg = _drift()
    led = hand_ledger(1, [(59_000.0, [10_000.0])])
    sim = Simulation(cfg, index_path=path(1, 99.0, start=99.0), ledger=led)  # opened at $100
    b = sim.liquidator.batch(np.array([1]), 0, np.zeros(1, np.int64))
    # MM $49.5k + 2% x $990k - (equity $49k + 2% x the -$10k PnL) = $20,500.
    assert b.shortage(0.02, buffer_on_losses=True)[0] == pytest.approx(20_500 * USD, abs=2)
    assert b.shortage(0.02)[0] == pytest.approx(20_300 * USD, abs=2)
