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


def test_the_run_summary_says_when_per_block_pacing_may_leave_accounts_in_breach():
    # The $10M long above loses at most $100,000 a block: after five 60 s blocks it is still in
    # breach, and the summary says the per-block pacing, not dYdX, may have left it there
    # (dYdX's blocks are about a second). With 1 s blocks, or whole-position rules, it does not.
    from pipelines.simulate import format_summary

    def summary(tick_ms, liquidation=None):
        mk = {"venue": "dydx_v4", "margin": DYDX_MARGIN}
        top = {}
        if liquidation is not None:
            # Whole positions, and keepers too late to act: still in breach at the end.
            mk["liquidation"] = liquidation
            top["keepers"] = {"count": 1, "latency_ticks": 100, "capacity_per_block": 100}
        cfg = venue(steps=5, venue="dydx_v4", market=mk, tick_ms=tick_ms, **top)
        led = hand_ledger(1, [(300_000.0, [100_000.0])])
        sim = Simulation(cfg, index_path=path(5, 99.0), ledger=led)
        sim.run()
        assert sim.summary()["below_maintenance_at_end"] == 1
        return format_summary(sim)

    paced = summary(60_000)
    assert (
        "This venue liquidates a position in parts (every market: at most 10% of a position over "
        "1,000 and 100,000 of an account's notional per block) and a block here is 60 s" in paced
    )
    assert "in parts" not in summary(1_000)
    whole = {"max_portion": 1.0, "max_notional_per_block_usd": 0.0}
    assert "in parts" not in summary(60_000, whole)


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


def _hyperliquid(steps=5, liquidation=None, market=None, **top):
    mk = {"venue": "hyperliquid", "margin": HL_MARGIN, **(market or {})}
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


# ---- deleveraging order ------------------------------------------------------------------------


def _open(led, row: int, size: float, price: float) -> None:
    """Open ``size`` base units for ``row`` at ``price`` against the maker (exponent -6)."""
    q = int(round(size * 10**6))
    cost = int(np.floor(q * price * USD * 1e-6))
    led.trade_one(row, 0, q, -cost)
    led.trade_one(0, 0, -q, cost)


def _adl_takers(sim) -> list[int]:
    adl = events(sim, EventKind.ADL)
    return adl.loc[adl["counterparty"] >= 0, "account"].tolist()


def test_dydx_deleverages_a_walk_from_a_pseudo_random_offset_not_the_ranking():
    # A $100k long with $5k at $90 is $5k under water and the fund is empty: it is deleveraged.
    # Ten shorts of 200 units each: the best-ranked ones take it when ranked; a walk takes five
    # accounts in a row (in account order, wrapping) from a pseudo-random start, which moves
    # with the run's seed.
    shorts = [(collateral, [-200.0]) for collateral in (90_000.0, 3_000.0) * 5]
    whole = {"max_portion": 1.0, "max_notional_per_block_usd": 0.0}
    walks = {}
    for seed in range(6):
        mk = {"venue": "dydx_v4", "margin": DYDX_MARGIN, "liquidation": whole}
        cfg = venue(steps=1, venue="dydx_v4", market=mk, seed=seed)
        led = hand_ledger(1, [(5_000.0, [1_000.0]), *shorts])
        sim = Simulation(cfg, index_path=path(1, 90.0), ledger=led)
        sim.step()
        takers = _adl_takers(sim)
        assert len(takers) == 5 and sim.ledger.size[1, 0] == 0
        assert sim.ledger.conservation_error() == 0
        first = takers[0]
        assert takers == [2 + (first - 2 + j) % 10 for j in range(5)]  # consecutive, wrapping
        walks[seed] = first
    assert len(set(walks.values())) > 1  # the offset is drawn, not fixed
    # Ranked (the other presets): the five most leveraged winners, the $3k shorts (rows 3, 5 ..).
    cfg = _dydx(whole, steps=1, adl_order="ranked")
    led = hand_ledger(1, [(5_000.0, [1_000.0]), *shorts])
    sim = Simulation(cfg, index_path=path(1, 90.0), ledger=led)
    sim.step()
    assert sorted(_adl_takers(sim)) == [3, 5, 7, 9, 11]


def test_dydx_walk_visits_at_most_the_candidate_limit_and_the_maker_takes_the_rest():
    shorts = [(90_000.0, [-200.0])] * 10
    whole = {"max_portion": 1.0, "max_notional_per_block_usd": 0.0}
    cfg = _dydx(whole, steps=1, adl_max_candidates=3)
    led = hand_ledger(1, [(5_000.0, [1_000.0]), *shorts])
    maker_before = int(led.size[0, 0])
    sim = Simulation(cfg, index_path=path(1, 90.0), ledger=led)
    sim.step()
    adl = events(sim, EventKind.ADL)
    takes = adl[adl["counterparty"] >= 0].groupby("account")["size"].sum() // USD
    assert (takes.drop(0) == 200).all() and len(takes.drop(0)) == 3  # 3 accounts x 200 units
    assert takes[0] == 400  # the maker takes the 400 units left
    assert int(sim.ledger.size[0, 0]) - maker_before == 400 * 10**6
    assert sim.ledger.conservation_error() == 0


def test_dydx_walks_of_a_block_traded_at_once_equal_trading_them_one_by_one(monkeypatch):
    # Three bankrupt $90k longs in one block, 30 shorts of 200 units: each long walks five
    # shorts from its own offset and leaves the fifth half taken. Where the walks reach
    # different shorts they are traded in one batch; where two reach the same short, one by one
    # (its entry then rounds per trade). Both must leave the ledger and the event log exactly
    # as trading one by one does.
    from engine.adl import Deleveraging

    shorts = [(90_000.0, [-200.0])] * 30
    whole = {"max_portion": 1.0, "max_notional_per_block_usd": 0.0}
    batched = {True: 0, False: 0}
    original = Deleveraging._walk_all

    def spy(self, *args):
        out = original(self, *args)
        batched[out is not None] += 1
        return out

    for seed in range(8):
        runs = []
        for walk_all in (spy, lambda self, *args: None):
            monkeypatch.setattr(Deleveraging, "_walk_all", walk_all)
            mk = {"venue": "dydx_v4", "margin": DYDX_MARGIN, "liquidation": whole}
            cfg = venue(steps=1, venue="dydx_v4", market=mk, seed=seed)
            led = hand_ledger(1, [(5_000.0, [900.0])] * 3 + shorts)
            sim = Simulation(cfg, index_path=path(1, 90.0), ledger=led)
            sim.step()
            assert sim.ledger.conservation_error() == 0
            assert (sim.ledger.size[1:4, 0] == 0).all()
            runs.append(sim)
        one, other = runs
        for name in ("size", "quote", "iso_quote", "entry"):
            assert np.array_equal(getattr(one.ledger, name), getattr(other.ledger, name)), name
        pd.testing.assert_frame_equal(one.events.to_frame(), other.events.to_frame())
    assert batched[True] and batched[False]  # both paths ran


def test_hyperliquid_ranks_deleveraging_at_the_previous_oracle_price():
    # A $100k long with $5k bankrupt at $90. Short A opened at $95 with $5k: a 9x winner at the
    # mark ($90) but a loser at the previous oracle ($100). Short B opened at $105 with $200k:
    # a small-leverage winner at both. Ranked at the mark A goes first; at the previous oracle B.
    takers = {}
    for price in ("mark", "previous_oracle"):
        cfg = _hyperliquid(
            steps=1, liquidation={"backstop_ratio": 0.0}, market={"adl_rank_price": price}
        )
        led = hand_ledger(1, [(5_000.0, [1_000.0]), (5_000.0, [0.0]), (200_000.0, [0.0])])
        _open(led, 2, -1_000.0, 95.0)
        _open(led, 3, -1_000.0, 105.0)
        sim = Simulation(cfg, index_path=path(1, 90.0), ledger=led)
        sim.step()
        assert sim.ledger.conservation_error() == 0
        takers[price] = _adl_takers(sim)
    assert takers == {"mark": [2], "previous_oracle": [3]}


# ---- mark price ------------------------------------------------------------------------------


def _mark_price(model: str):
    from engine.draws import Draws
    from engine.mark import MarkPrice

    cfg = venue(steps=8, market={"mark": {"model": model}})
    draws = Draws(np.random.SeedSequence(1), 1)
    return MarkPrice(cfg.markets, cfg.tick_ms, np.array([100.0]), draws)


def _marks(model: str, mids: list[float]) -> list[float]:
    mp = _mark_price(model)
    one = np.ones(1)
    return [
        float(mp.mark(t, np.array([mid]), 100.0 * one, 100.0 * one, 0.001 * one)[0])
        for t, mid in enumerate(mids, start=1)
    ]


def test_hyperliquid_mark_is_the_median_of_three_so_own_book_impact_moves_it_less():
    # Liquidations knock the venue's mid 10% below the oracle and the external index for a block.
    # The book mark follows the mid to $90. Hyperliquid's median: oracle + EMA(mid - oracle)
    # = 100 - 10 x (1 - e^(-60/150)) = $96.70, the book's median (last trade $100 clipped to
    # the ask) = $90.09, the external perp ~ $100: the mark is $96.70.
    assert _marks("book", [90.0, 100.0]) == [90.0, 100.0]
    hl = _marks("median_of_three", [90.0, 100.0, 100.0])
    assert hl[0] == pytest.approx(100.0 - 10.0 * (1.0 - np.exp(-0.4)), abs=1e-9)
    # Back at the index, the EMA still remembers the gap and the median holds near $100.
    assert 99.0 < hl[1] <= 100.1 and 99.0 < hl[2] <= 100.1


def test_binance_mark_is_the_index_plus_a_5_minute_average_of_the_basis():
    # 60 s blocks: the average spans 5 blocks. A one-block 10% gap moves the mark by 2% for
    # five blocks, then it is back at the index.
    marks = _marks("index_basis_ma", [90.0] + [100.0] * 5)
    assert marks == pytest.approx([98.0] * 5 + [100.0])


# ---- Binance USD-M -----------------------------------------------------------------------------


def _binance(steps=1, margin=None):
    return venue(steps=steps, venue="binance_um", market={"venue": "binance_um", "margin": margin})


def test_binance_brackets_take_the_published_maintenance_amounts():
    from engine.config import ConfigError
    from engine.margin import MarginContext, make_requirements
    from engine.venues import preset_defaults

    cfg = _binance()
    brackets = cfg.markets[0].margin.brackets
    assert [b.maintenance_amount_usd for b in brackets[:5]] == [0, 50, 1_300, 16_300, 266_300]
    # MM of a $2M position = 2M x 2.5% - 16,300 = $33,700.
    req = make_requirements(cfg.markets[0].margin, cfg.markets[0].base_quantum_exponent)
    notional = np.array([2_000_000 * USD])
    mm = req.maintenance(notional, np.array([20_000 * 10**6]), MarginContext(0, 0))
    assert mm[0] == 33_700 * USD
    # A table with a wrong maintenance amount is refused, naming the bracket.
    margin = preset_defaults("binance_um")["market"]["margin"]
    margin["brackets"][3]["maintenance_amount_usd"] = 16_000.0
    with pytest.raises(ConfigError, match=r"brackets\.3\.maintenance_amount_usd.*16,300\.00"):
        _binance(margin=margin)


def test_binance_clearance_fee_goes_to_the_insurance_fund():
    # At $99.5: a $99.5k long with $1k left (MM = 0.5% - $50 = $447.5) is not in breach; a $1.99M
    # long with $30k left (MM = 2.5% - $16,300 = $33,450) is. It is liquidated until MM holds
    # again and pays 0.5% of what is liquidated to the insurance fund, nothing to keepers.
    # At $98.9 the small one is in breach too (equity $400 < MM $444.5): closing it frees
    # 0.5% of requirement and costs 0.5% of fee, so it goes whole, and the fee takes the $400
    # left (a fee never pushes an account past bankruptcy).
    fees = {}
    for price in (99.5, 98.9):
        led = hand_ledger(1, [(40_000.0, [20_000.0]), (1_500.0, [1_000.0])])
        sim = Simulation(_binance(), index_path=path(1, price), ledger=led)
        sim.step()
        liq = events(sim, EventKind.LIQUIDATION).set_index("account")
        fee = -events(sim, EventKind.INSURANCE_FEE).set_index("account")["amount"]
        assert events(sim, EventKind.KEEPER_FEE).empty
        assert fee[1] == pytest.approx(0.005 * abs(liq.loc[1, "amount"]), abs=1)
        assert 0 < -liq.loc[1, "size"] < 20_000 * 10**6  # partial: back above MM
        assert sim.ledger.insurance[0] == fee.sum()
        assert sim.ledger.conservation_error() == 0
        fees[price] = fee
    assert 2 not in fees[99.5]
    assert fees[98.9][2] == pytest.approx(400 * USD, rel=1e-5)  # fills round to the tick
    assert sim.ledger.quote[2] == 0 and sim.ledger.size[2, 0] == 0


# ---- the full-step benchmark measures each preset's own rules --------------------------------


@pytest.mark.parametrize("name", ["generic", "dydx_v4", "drift_v2", "hyperliquid", "binance_um"])
def test_the_full_step_benchmark_keeps_each_presets_loss_rule(name):
    """``tests/perf/bench_full_step.py --venue V`` once forced every market to deleverage, so
    its drift_v2 figure was not Drift's rules; each market now resolves losses as its preset
    says (Drift socializes them)."""
    import sys
    from pathlib import Path

    from engine.venues import PRESETS

    sys.path.insert(0, str(Path(__file__).parents[1] / "perf"))
    try:
        from bench_full_step import full_config
    finally:
        sys.path.pop(0)
    cfg = full_config(accounts=10, steps=2, seed=1, venue=name)
    want = PRESETS[name]["market"]["loss_resolution"]
    assert {mk.loss_resolution for mk in cfg.markets} == {want}
    assert {mk.venue for mk in cfg.markets} == {name}
