"""The loss waterfall on a hand-made ledger, without a simulation: book, insurance fund, then
ADL or socialization.

One trader is long 100 units bought at $100 with $600 of collateral (maintenance margin 2.5%,
penalty 1%, half of it to the keeper, whole positions closed). At $96 it is in breach but
solvent; at $93 it is $100 short of bankruptcy, which the insurance fund, deleveraging or
socialization must cover.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import Book
from engine.config import resolve
from engine.events import EventKind, EventLog
from engine.liquidation import BlockStats, Liquidator
from engine.margin import RequirementScale
from engine.market import MarketState, refresh_open_interest
from engine.state import Ledger
from engine.venue import VenueModel
from tests.conftest import USD, hand_ledger

# The book is deep enough that a fill is at the index to within a few quote quantums.
NEAR = 10


def _config(loss_resolution: str):
    return resolve(
        {
            "steps": 1,
            "markets": [
                {
                    "name": "M0",
                    "initial_price": 100.0,
                    "sigma_annual": 0.0,
                    "base_quantum_exponent": -6,
                    "tick_size": 1e-9,
                    "depth_usd": 1e20,
                    "half_spread": 0.0,
                    "loss_resolution": loss_resolution,
                    "liquidation": {"penalty": 0.01, "keeper_share": 0.5, "partial": False},
                    "margin": {
                        "model": "tiered",
                        "brackets": [
                            {"floor_usd": 0, "initial_margin": 0.05, "maintenance_margin": 0.025}
                        ],
                    },
                }
            ],
        }
    )


def _liquidator(led: Ledger, price: float, loss_resolution: str = "adl"):
    """Return (liquidator, events) on ``led`` at block 1 with the index (and mark) at ``price``."""
    cfg = _config(loss_resolution)
    venue = VenueModel.from_config(cfg)
    path = np.array([[100.0], [price]])
    market = MarketState.opening(cfg, venue, path)
    market.t = 1
    market.index_now = path[1]
    market.oracle = path[1].copy()
    market.mark = path[1].copy()
    market.mark_q = market.mark * venue.price_scale
    refresh_open_interest(market, led, venue)
    events = EventLog()
    book = Book(cfg.markets, cfg.tick_ms)
    return Liquidator(led, book, events, venue, market, RequirementScale(venue.m)), events


def _liquidate(liq: Liquidator, rows: list[int]) -> BlockStats:
    stats = BlockStats.zeros(1)
    liq.begin_block()
    ids = np.array(rows, np.int64)
    liq.liquidate_market(ids, 0, np.zeros(ids.size, np.int64), stats)
    liq.end_block()
    return stats


def _laws_hold(led: Ledger) -> None:
    assert led.conservation_error() == 0
    assert (led.size.sum(axis=0) == 0).all()


def _kinds(events: EventLog) -> set[int]:
    return set(events.to_frame()["kind"].unique()) if events.count else set()


def test_a_solvent_breach_closes_on_the_book_and_pays_the_penalty():
    led = hand_ledger(1, [(600.0, [100.0])])
    liq, events = _liquidator(led, 96.0)
    stats = _liquidate(liq, [1])
    assert led.size[1, 0] == 0
    assert stats.liquidations[0] == 1 and stats.bad_debt[0] == 0
    # 1% of the $9,600 closed, split evenly between the keeper and the insurance fund.
    assert abs(int(stats.keeper_fees[0]) - 48 * USD) <= NEAR
    assert stats.insurance_fees[0] == led.insurance[0] > 0
    assert led.keepers.sum() == stats.keeper_fees[0]
    # What is left of $200 equity after the $96 penalty stays the trader's.
    assert abs(int(led.quote[1]) - 104 * USD) <= NEAR
    assert int(EventKind.ADL) not in _kinds(events)
    _laws_hold(led)


def test_a_bankruptcy_within_the_insurance_fund_is_paid_by_the_fund():
    led = hand_ledger(1, [(600.0, [100.0])], insurance_usd=10_000.0)
    liq, events = _liquidator(led, 93.0)
    stats = _liquidate(liq, [1])
    assert led.size[1, 0] == 0
    assert abs(int(stats.bad_debt[0]) - 100 * USD) <= NEAR
    assert stats.insurance_paid[0] == stats.bad_debt[0]
    assert int(led.insurance[0]) == 10_000 * USD - int(stats.insurance_paid[0])
    assert stats.keeper_fees[0] == stats.insurance_fees[0] == 0  # nothing left to take
    assert led.quote[1] == 0  # closed at exactly its bankruptcy price
    assert stats.adl_notional[0] == stats.socialized[0] == 0
    assert int(EventKind.INSURANCE_PAYOUT) in _kinds(events)
    _laws_hold(led)


def test_beyond_the_fund_an_adl_market_deleverages_the_best_ranked_opposite_trader():
    # Trader 2 is short 50 in profit: first in the ADL queue; the maker takes the other 50.
    led = hand_ledger(1, [(600.0, [100.0]), (5_000.0, [-50.0])])
    liq, events = _liquidator(led, 93.0, "adl")
    quote_before = int(led.quote[2])
    stats = _liquidate(liq, [1])
    assert led.size[1, 0] == 0 and led.size[2, 0] == 0
    assert led.insurance[0] == 0 and stats.insurance_paid[0] == 0
    assert abs(int(stats.bad_debt[0]) - 100 * USD) <= NEAR
    bankruptcy = 9_300 * USD + int(stats.bad_debt[0])  # the quote that leaves the trader at 0
    assert abs(int(stats.adl_notional[0]) - bankruptcy) <= NEAR
    assert led.quote[1] == 0
    # The counterparty bought back its short at the bankruptcy price ($94 a unit), not $93.
    assert abs((quote_before - int(led.quote[2])) - bankruptcy // 2) <= NEAR
    ev = events.to_frame()
    adl = ev[ev["kind"] == int(EventKind.ADL)]
    assert set(adl["account"]) == {0, 1, 2}
    _laws_hold(led)


def test_beyond_the_fund_a_socializing_market_charges_the_open_positions():
    led = hand_ledger(1, [(600.0, [100.0]), (5_000.0, [-50.0])], insurance_usd=30.0)
    liq, events = _liquidator(led, 93.0, "socialized")
    quote_before = int(led.quote[2])
    stats = _liquidate(liq, [1])
    assert led.size[1, 0] == 0 and led.size[2, 0] == -50_000_000  # no one is deleveraged
    assert led.insurance[0] == 0 and stats.insurance_paid[0] == 30 * USD  # the fund pays all
    assert abs(int(stats.socialized[0]) - 70 * USD) <= NEAR
    assert stats.adl_notional[0] == 0
    assert led.quote[1] == 0
    # The rest is charged to every open position pro rata at block end; the fee pool, which
    # advanced it, is repaid to the quantum or better.
    charged = quote_before - int(led.quote[2])
    assert charged > 0
    assert led.fee_pool[0] >= 0
    assert int(EventKind.SOCIALIZED_LOSS) in _kinds(events)
    _laws_hold(led)


def test_units_after_a_socialized_loss_are_planned_with_what_the_fund_paid_it():
    # Three traders each $100 short of bankruptcy at $93, a solvent one in breach between them
    # ($900: equity $200 < MM $232.50), and a $150 fund: the fund pays all of the first one's
    # $100 and $50 of the second's (which socializes the rest). The solvent trader pays its
    # penalty, half to the fund, before the last one, which gets that half. All four are
    # planned once, in one batch, and the ledger is the one liquidating them one at a time
    # leaves.
    def book():
        return hand_ledger(
            1,
            [(600.0, [100.0]), (600.0, [100.0]), (900.0, [100.0]), (600.0, [100.0])]
            + [(50_000.0, [-300.0])],
            insurance_usd=150.0,
        )

    batched, one_by_one = book(), book()
    liq, _ = _liquidator(batched, 93.0, "socialized")
    planned = []
    plan = liq.plan
    liq.plan = lambda b, k, off=None: planned.append(len(b)) or plan(b, k, off)  # type: ignore
    stats = _liquidate(liq, [1, 2, 3, 4])
    single, _ = _liquidator(one_by_one, 93.0, "socialized")
    for row in (1, 2, 3, 4):
        _liquidate_without_block_end(single, row)
    single.end_block()
    assert planned == [4]  # one plan of the whole batch: no re-plan after a socialized loss
    assert stats.liquidations[0] == 4
    assert (batched.quote == one_by_one.quote).all() and (batched.size == one_by_one.size).all()
    assert batched.insurance[0] == one_by_one.insurance[0]
    assert batched.fee_pool[0] == one_by_one.fee_pool[0]
    assert abs(int(stats.insurance_paid[0]) - (150 * USD + int(stats.insurance_fees[0]))) <= 1
    assert abs(int(stats.socialized[0]) - (300 * USD - int(stats.insurance_paid[0]))) <= 3 * NEAR
    _laws_hold(batched)


def _liquidate_without_block_end(liq: Liquidator, row: int) -> None:
    """Liquidate one unit as its own batch, within the block (socialization charged later)."""
    stats = BlockStats.zeros(1)
    liq.liquidate_market(np.array([row], np.int64), 0, np.zeros(1, np.int64), stats)


@pytest.mark.parametrize("price", [99.0, 97.5])
def test_an_account_above_maintenance_is_left_alone(price):
    led = hand_ledger(1, [(600.0, [100.0])])
    before = led.quote.copy(), led.size.copy()
    liq, events = _liquidator(led, price)
    stats = _liquidate(liq, [1])
    assert stats.liquidations[0] == 0 and events.count == 0
    assert (led.quote == before[0]).all() and (led.size == before[1]).all()
