"""The engine's laws, as hypothesis property tests over random venues, populations and paths.

After every step: the sum of all ledger balances equals net deposits exactly (integers); positions
net to zero per market; an account is liquidated only when equity < MM; a liquidation never
increases the liquidated position or flips it; the same seed gives identical outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import resolve
from engine.events import NOBODY, EventKind
from engine.liquidation import BlockStats, Liquidator
from engine.sim import Simulation
from engine.state import Ledger
from engine.units import as_int64
from engine.valuation import evaluate

PRESETS = ["generic", "dydx_v4", "drift_v2", "hyperliquid", "binance_um"]
MARGINS = [
    None,
    {
        "model": "tiered",
        "brackets": [
            {"floor_usd": 0, "initial_margin": 0.05, "maintenance_margin": 0.03},
            {"floor_usd": 20_000, "initial_margin": 0.1, "maintenance_margin": 0.06},
        ],
    },
    {
        "model": "oi_scaled",
        "initial_margin": 0.05,
        "maintenance_fraction": 0.6,
        "oi_lower_cap_usd": 100_000,
        "oi_upper_cap_usd": 1_000_000,
    },
    {
        "model": "size_premium",
        "initial_margin": 0.1,
        "maintenance_margin": 0.05,
        "imf_factor": 0.001,
    },
    {
        "model": "vol_scaled",
        "z": 3.0,
        "margin_period_ticks": 30,
        "floor_maintenance": 0.02,
        "max_rise_per_step": 0.1,
    },
]


@st.composite
def venues(draw):
    m = draw(st.integers(1, 3))
    markets = []
    for k in range(m):
        market = {
            "name": f"M{k}",
            "initial_price": draw(st.sampled_from([1.5, 100.0, 30_000.0])),
            "sigma_annual": draw(st.sampled_from([0.5, 2.0, 6.0])),
            "base_quantum_exponent": draw(st.sampled_from([-9, -6, -3])),
            "depth_usd": draw(st.sampled_from([5e4, 1e6])),
            "loss_resolution": draw(st.sampled_from(["adl", "socialized"])),
            "insurance_fund_usd": draw(st.sampled_from([0.0, 2_000.0, 1e6])),
            "insurance_cap_per_block_usd": draw(st.sampled_from([0.0, 500.0])),
            "funding_interval_ticks": draw(st.sampled_from([0, 1, 7])),
            "taker_fee": draw(st.sampled_from([0.0, 0.0005])),
            "venue": draw(st.sampled_from(PRESETS)),
            "tick_size": 0.001,
        }
        market["position_sigma_base"] = 5_000.0 / market["initial_price"]
        margin = draw(st.sampled_from(MARGINS))
        if margin is not None:
            market["margin"] = margin
        markets.append(market)
    shocks = []
    if draw(st.booleans()):
        shocks.append(
            {
                "market": "M0",
                "tick": draw(st.integers(1, 10)),
                "log_return": draw(st.sampled_from([-0.4, -0.15, 0.2])),
                "over_ticks": draw(st.integers(1, 4)),
            }
        )
    return resolve(
        {
            "seed": draw(st.integers(0, 2**32)),
            "steps": 30,
            "venue": draw(st.sampled_from(PRESETS)),
            "markets": markets,
            "shocks": shocks,
            "accounts": {
                "count": draw(st.integers(1, 60)),
                "cross_fraction": draw(st.sampled_from([0.0, 0.5, 1.0])),
                "leverage_min": 1.0,
                "leverage_max": draw(st.sampled_from([5.0, 30.0, 80.0])),
                "order_rate": draw(st.sampled_from([0.0, 0.3])),
            },
            "keepers": {
                "count": 2,
                "latency_ticks": draw(st.integers(0, 2)),
                "capacity_per_block": draw(st.sampled_from([1, 5, 1000])),
            },
            "congestion": {"enabled": draw(st.booleans()), "vol_threshold": 1.0},
            "traders": {
                "model": draw(st.sampled_from(["uniform", "hawkes"])),
                "base_rate_per_minute": 0.2,
                "topup_probability": draw(st.sampled_from([0.0, 0.5])),
                "topup_delay_ticks": draw(st.integers(0, 3)),
            },
            "index": {
                "model": draw(st.sampled_from(["gbm", "garch", "jump", "regime"])),
                "correlation": 0.3,
                "stress_correlation": 0.8,
                "regime_enter_per_day": 50.0,
            },
            "oracle": {
                "delay_ticks": draw(st.integers(0, 2)),
                "stale_probability": draw(st.sampled_from([0.0, 0.3])),
            },
        }
    )


class CheckedLiquidator(Liquidator):
    """A liquidator that asserts the liquidation laws around every call."""

    def liquidate_market(self, rows, k, ticks_in_breach, stats):
        led = self.ledger
        before = led.size[rows].copy()
        margins = [self.pool_margin(int(i), k) for i in rows]
        first_event = self.events.count
        # Drift keeps liquidating an account above MM until its buffer is covered.
        in_liquidation = set(self.episodes.in_liquidation()[0].tolist())
        super().liquidate_market(rows, k, ticks_in_breach, stats)
        after = led.size[rows]
        # Never grows, never flips, never touches the account's other markets.
        assert (np.abs(after[:, k]) <= np.abs(before[:, k])).all()
        assert ((after[:, k] == 0) | (np.sign(after[:, k]) == np.sign(before[:, k]))).all()
        other = np.arange(led.size.shape[1]) != k
        adl_hit = set()
        ev = self.events.to_frame().iloc[first_event:]
        adl = ev[ev["kind"] == int(EventKind.ADL)]
        adl_hit = set(adl.loc[adl["counterparty"] >= 0, "account"])
        # A cross account the liquidator vault takes over hands it every position (Hyperliquid).
        vaulted = set(ev.loc[ev["kind"] == int(EventKind.BACKSTOP), "account"])
        for j, i in enumerate(rows):
            if int(i) in vaulted and led.cross[i]:
                assert (after[j] == 0).all()
            elif int(i) not in adl_hit:
                assert (after[j, other] == before[j, other]).all()
        # Only accounts that were liquidatable were liquidated (an ADL counterparty in this call
        # may have become so during it).
        liquidated = set(ev.loc[ev["kind"] == int(EventKind.LIQUIDATION), "account"])
        liquidated |= set(adl.loc[adl["counterparty"] == NOBODY, "account"]) | vaulted
        assert liquidated <= set(int(i) for i in rows)
        for j, i in enumerate(rows):
            if int(i) in liquidated and int(i) not in adl_hit | in_liquidation:
                tnc, tmmr = margins[j]
                assert tmmr > 0 and tnc < tmmr, "liquidated an account that was not liquidatable"


def _laws_hold(sim: Simulation) -> None:
    assert sim.ledger.conservation_error() == 0
    assert (sim.ledger.size.sum(axis=0) == 0).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues())
def test_conservation_zero_sum_and_liquidation_laws(cfg):
    sim = Simulation(cfg)
    sim.liquidator = sim.make_liquidator(CheckedLiquidator)
    _laws_hold(sim)
    for _ in range(cfg.steps):
        sim.step()
        _laws_hold(sim)
    # The events agree with the ledger: every account's balance is deposits plus its events.
    ev = sim.events.to_frame()
    assert set(ev["kind"].unique()) <= {int(kind) for kind in EventKind}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues())
def test_liquidatable_iff_equity_below_maintenance(cfg):
    sim = Simulation(cfg)
    for _ in range(6):
        sim.step()
    snap = sim.evaluate()
    led = sim.ledger
    for i in range(1, led.size.shape[0]):
        for k in np.nonzero(led.size[i])[0]:
            tnc, tmmr = sim.liquidator.pool_margin(i, int(k))
            if led.cross[i]:
                breached = snap.cross_mm[i] > 0 and snap.cross_equity[i] < snap.cross_mm[i]
            elif snap.iso_at is not None and snap.iso_equity is not None:
                j = int(np.flatnonzero(snap.iso_at == i)[0])
                breached = snap.iso_mm[j, k] > 0 and snap.iso_equity[j, k] < snap.iso_mm[j, k]
            else:
                continue
            # The vectorized check and the exact per-account one agree (to the quantum of
            # flooring equity).
            if abs(tnc - tmmr) > 1:
                assert breached == (tmmr > 0 and tnc < tmmr)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues())
def test_same_seed_same_outputs(cfg):
    a, b = Simulation(cfg), Simulation(cfg)
    a.run()
    b.run()
    _assert_same_run(a, b)


def _assert_same_run(a: Simulation, b: Simulation) -> None:
    assert a.market_frame().equals(b.market_frame())
    assert a.events.to_frame().equals(b.events.to_frame())
    assert a.account_frame().equals(b.account_frame())
    assert a.labelled_accounts().equals(b.labelled_accounts())


def _screened_and_full(cfg) -> tuple[Simulation, Simulation]:
    """Run a config with the breach screen and with every account evaluated every block."""
    screened, full = Simulation(cfg), Simulation(cfg)
    full.breach_screen.enabled = False
    screened.run()
    full.run()
    _assert_same_run(screened, full)
    return screened, full


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues())
def test_breach_screen_changes_nothing(cfg):
    """Evaluating only the accounts the screen lets through gives exactly the same run as
    evaluating every account every block."""
    _screened_and_full(cfg)


def test_non_liquidatable_account_is_left_alone():
    cfg = resolve(
        {
            "markets": [{"name": "BTC", "initial_price": 100.0, "sigma_annual": 0.1}],
            "accounts": {"count": 20, "leverage_min": 2.0, "leverage_max": 3.0},
        }
    )
    sim = Simulation(cfg)
    before = sim.ledger.size.copy(), sim.ledger.quote.copy()
    rows = np.arange(1, 21)
    sim.liquidator.liquidate_market(rows, 0, np.zeros(20, np.int64), BlockStats.zeros(1))
    assert (sim.ledger.size == before[0]).all() and (sim.ledger.quote == before[1]).all()
    assert sim.events.count == 0


def test_a_dust_position_leaves_breach_when_its_requirement_rounds_to_zero():
    """An account with a dust position and negative equity is in breach only while its MM is
    at least one quantum; when the price falls far enough for the notional to round to 0 it
    leaves breach without any trade, however deep its deficit. The screen must not hold it past
    that point: a screen that bounds how long an account stays in breach by its deficit alone
    would (a correlated crash under Drift's rules showed it)."""
    cfg = resolve(
        {
            "seed": 3,
            "steps": 12,
            "markets": [
                {
                    "name": "A",
                    "initial_price": 100.0,
                    "sigma_annual": 0.01,
                    "base_quantum_exponent": -9,
                    "position_sigma_base": 0.0,
                }
            ],
            "shocks": [{"market": "A", "tick": 4, "log_return": -1.0, "over_ticks": 4}],
            "accounts": {"count": 1, "order_rate": 0.0},
            "keepers": {"latency_ticks": 100},
            "circuit_breaker": {"enabled": False},  # (the 63% fall would pause the market)
        }
    )

    def dust_book() -> Ledger:
        ledger = Ledger.empty(2, 1, cfg.keepers.count)
        ledger.is_maker[0] = True
        ledger.deposit(np.array([0]), 0, np.array([10**12]))
        # 10 base quantums at $100 are worth 1 quote quantum; 9 paid leaves equity -8.
        ledger.trade(np.array([1]), 0, np.array([10]), np.array([-9]))
        ledger.trade(np.array([0]), 0, np.array([-10]), np.array([9]))
        return ledger

    screened = Simulation(cfg, ledger=dust_book())
    full = Simulation(cfg, ledger=dust_book())
    full.breach_screen.enabled = False
    in_breach = []
    for _ in range(cfg.steps):
        screened.step()
        full.step()
        in_breach.append(int(full.breaches.cross_since[1]) >= 0)
        assert screened.breaches.cross_since[1] == full.breaches.cross_since[1]
    assert in_breach[0] and not in_breach[-1]


def _cascade(venue: str):
    """A crash through a book of 3,000 accounts on an ADL market and a socializing one."""
    return resolve(
        {
            "seed": 5,
            "steps": 80,
            "venue": venue,
            "markets": [
                {
                    "name": "A",
                    "initial_price": 100.0,
                    "sigma_annual": 1.5,
                    "depth_usd": 2e5,
                    "loss_resolution": "adl",
                    "position_sigma_base": 30.0,
                    "funding_interval_ticks": 30,
                },
                {
                    "name": "B",
                    "initial_price": 10.0,
                    "sigma_annual": 2.0,
                    "depth_usd": 1e5,
                    "position_sigma_base": 200.0,
                    "loss_resolution": "socialized",
                },
            ],
            "shocks": [{"market": "A", "tick": 40, "log_return": -0.25, "over_ticks": 5}],
            "accounts": {
                "count": 3000,
                "cross_fraction": 0.6,
                "leverage_max": 30.0,
                "order_rate": 0.01,
            },
            "keepers": {"count": 2, "latency_ticks": 1, "capacity_per_block": 40},
        }
    )


@pytest.mark.parametrize("venue", PRESETS)
def test_breach_screen_is_exact_on_a_cascade_and_skips_most_work(venue):
    screened, full = _screened_and_full(_cascade(venue))
    assert screened.records["liquidations"].sum() > 50
    assert screened.evaluated_rows_total < 0.75 * full.evaluated_rows_total


def test_a_charge_lowers_safe_moves_by_what_was_paid_instead_of_evaluating_the_payers():
    """A socialized loss charges every open position of its market. The screen lowers each
    payer's safe move by what it paid over the weight of the pool it paid from, instead of
    evaluating every payer again: at unchanged marks the lowered safe move is at most, and
    within float32 rounding of, the one a fresh evaluation finds."""
    sim = Simulation(_cascade("drift_v2"))
    for _ in range(3):
        sim.step()
    led, screen, market = sim.ledger, sim.breach_screen, sim.market

    def evaluate_everyone() -> np.ndarray:
        screen.force_full = True
        rows = screen.select(led, market)  # every account, references at the current marks
        snap = evaluate(led, rows, market, sim.venue, sim.requirement_scale, True)
        screen.update(rows, snap, market, sim.requirement_scale.mm_growth_bound())
        return screen.safe_move.copy()

    evaluate_everyone()
    payers = np.flatnonzero((led.size[:, 1] != 0) & ~led.is_maker)
    # Each pays 1% of its position's value in market B (socialized there), some into breach.
    amounts = as_int64(np.ceil(np.abs(led.size[payers, 1] * market.mark_q[1]) * 0.01))
    led.charge(payers, 1, amounts)
    screen.select(led, market)  # takes the charges (the marks have not moved)
    charged = screen.safe_move[payers]
    fresh = evaluate_everyone()[payers]
    known = np.isfinite(fresh)
    assert (charged[known] <= fresh[known]).all()
    assert (charged[~known] < 0).all()  # in breach or near it: evaluated next block either way
    kept = np.isfinite(charged)
    assert kept.mean() > 0.5  # most payers keep a safe move: they are not evaluated again
    # A cross pool pays from all its weight: the bound is tight. (An isolated account's safe
    # move is its least pool's; lowering it by the charged pool's share is looser.)
    tight = kept & known & led.cross[payers]
    assert tight.sum() > 100
    assert np.allclose(charged[tight], fresh[tight], rtol=1e-6, atol=1e-6)


class OneAtATime(Liquidator):
    """Liquidates the units of a block one by one: the semantics batches must reproduce."""

    def liquidate_market(self, rows, k, ticks_in_breach, stats):
        for i in range(rows.size):
            super().liquidate_market(rows[i : i + 1], k, ticks_in_breach[i : i + 1], stats)


def _sorted_events(sim: Simulation):
    ev = sim.events.to_frame()
    return ev.sort_values(list(ev.columns), kind="stable").reset_index(drop=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues())
def test_batched_liquidation_equals_one_at_a_time(cfg):
    batched, single = Simulation(cfg), Simulation(cfg)
    single.liquidator = single.make_liquidator(OneAtATime)
    batched.run()
    single.run()
    assert batched.market_frame().equals(single.market_frame())
    assert batched.account_frame().equals(single.account_frame())
    assert _sorted_events(batched).equals(_sorted_events(single))


def test_recorded_columns_are_where_their_names_say():
    cfg = resolve(
        {
            "steps": 3,
            "markets": [{"name": "A", "initial_price": 100.0, "sigma_annual": 1.0}],
            "accounts": {"count": 50},
        }
    )
    sim = Simulation(cfg)
    sim.run()
    frame = sim.market_frame()
    last = frame.iloc[-1]
    assert last["index_price"] == sim.index_path[3, 0]
    assert last["mark_price"] == sim.market.mark[0] and last["oracle_price"] == sim.market.oracle[0]
    assert last["bid_depth"] == sim.book.bid_depth[0] and last["ask_depth"] == sim.book.ask_depth[0]
    assert last["half_spread"] == sim.book.half_spread[0]
    assert last["keeper_capacity"] == sim.market.keeper_capacity
    assert last["insurance_fund"] == sim.ledger.insurance[0] / 1e6


_SIZES = st.integers(-(2**62), 2**62)


@settings(max_examples=300, deadline=None)
@given(_SIZES, _SIZES, st.floats(-1e18, 1e18, allow_nan=False), _SIZES, st.booleans())
def test_a_one_account_trade_changes_the_ledger_as_the_batch_path_does(
    old, dsize, entry, dquote, cross
):
    # A single account takes a scalar path; it must match, number for number, the same trade
    # made in a batch (with a second account trading nothing).
    from engine.state import Ledger
    from engine.units import LedgerOverflowError

    ledgers = []
    for accounts in ([1], [1, 2]):
        led = Ledger.empty(3, 1, 1)
        led.cross[1] = cross
        led.size[1, 0], led.entry[1, 0] = old, entry
        led.size[2, 0], led.entry[2, 0] = 7, 3.5
        led.open_interest[0] = 2**61
        n = len(accounts)
        try:
            led.trade(np.array(accounts), 0, np.array([dsize, 0][:n]), np.array([dquote, 0][:n]))
        except LedgerOverflowError:
            ledgers.append(None)
            continue
        ledgers.append(led)
    one, batch = ledgers
    assert (one is None) == (batch is None)
    if one is not None and batch is not None:
        for name in ("size", "entry", "quote", "iso_quote", "open_interest"):
            assert np.array_equal(getattr(one, name), getattr(batch, name)), name
