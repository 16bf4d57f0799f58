"""The deterministic step loop: prices, oracle, funding, order flow, margin, keepers, liquidations.

One tick is one block. Per tick, in order:

1. the external index moves (a path drawn up front, see :mod:`engine.prices`); the book's
   makers react to its volatility and congestion follows it;
2. the oracle reports the index ``delay_ticks`` late (later under congestion), or misses the
   update (stale);
3. the venue's mark = index x (1 + impact left on the venue's book, see :mod:`engine.book`);
4. the circuit breaker pauses liquidations in markets whose oracle is stale or far from the mark;
5. funding settles every ``funding_interval_ticks``; due collateral top-ups are deposited;
6. new orders arrive (:mod:`engine.traders`); initial margin and open-interest caps gate new
   exposure;
7. maintenance margin is evaluated (vectorized) for every account that could be in breach (see
   ``Simulation._screen``); keepers see breaches and act ``latency_ticks`` later, at most
   ``capacity_per_block`` liquidations per block;
8. the market state of the tick is recorded, and every ``history.sample_every_ticks`` blocks
   the accounts are sampled for labelled histories.

Randomness: one ``SeedSequence(seed)`` spawns a generator per component, so the same seed and
config give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.book import Book
from engine.config import SimConfig, VolScaledMargin
from engine.draws import Draws, Purpose
from engine.events import FEE_POOL, NOBODY, EventKind, EventLog
from engine.labels import breach_labels, episode_sums, next_onset
from engine.liquidation import STAT_FIELDS, BlockStats, Liquidator, make_rules
from engine.margin import MarginContext, make_requirements, vol_scaled_mmf_ppm
from engine.policy import POLICY_COLUMNS, Forecaster, Policy
from engine.prices import IndexPath, simulate_index
from engine.state import Ledger, exact_sum
from engine.traders import Traders
from engine.units import (
    QUOTE_QUANTUMS_PER_UNIT,
    LedgerOverflowError,
    as_int64,
    base_to_quantums,
    quote_per_base_quantum,
    usd_to_quote_quantums,
)

MS_PER_YEAR = 365.0 * 24 * 3600 * 1000
DEFAULT_VOL_HALF_LIFE_TICKS = 60.0

STATE_COLUMNS = (
    "index_price",
    "oracle_price",
    "oracle_age",
    "mark_price",
    "sigma_annual",
    "vol_mmf",
    "open_interest",
    "oi_notional",
    "insurance_fund",
    "fee_pool",
    "breached",
    "paused",
    "funding_rate",
    "orders_accepted",
    "orders_rejected",
    "regime",
    "taker_flow",
    "congestion",
    "keeper_capacity",
    "keeper_latency",
    "half_spread",
    "bid_depth",
    "ask_depth",
    "taker_buy_usd",
    "taker_sell_usd",
)
LIQUIDATION_MAP_DISTANCES = (0.01, 0.025, 0.05, 0.10)
"""Rungs of the liquidation map: uniform adverse moves of the marks (relative)."""
LIQUIDATION_MAP_EVERY_TICKS = 4
"""Blocks between measurements of the liquidation map (a pass over every account), carried
between measurements."""
MAP_COLUMNS = tuple(
    f"crowded_{side}_{d * 100:g}pct"
    for side in ("long", "short")
    for d in LIQUIDATION_MAP_DISTANCES
)
"""Notional (quote units) of each market's long / short positions held by accounts that a
uniform adverse move of at most d would bring to maintenance margin (those already in breach
included): the forced flow waiting at each distance, as a venue's liquidation heat map shows."""
MARKET_COLUMNS = STATE_COLUMNS + MAP_COLUMNS + STAT_FIELDS
"""Columns of the per-tick market table (amounts in quote units, sizes in base units)."""
INT_COLUMNS = (
    "regime",
    "keeper_capacity",
    "keeper_latency",
    "oracle_age",
    "breached",
    "liquidations",
    "unfilled",
    "orders_accepted",
    "orders_rejected",
)
_FIRST_MAP = len(STATE_COLUMNS)
_FIRST_STAT = _FIRST_MAP + len(MAP_COLUMNS)
_STAT_SCALE = np.array(
    [
        1.0 if f in ("liquidations", "unfilled") else 1.0 / QUOTE_QUANTUMS_PER_UNIT
        for f in STAT_FIELDS
    ]
)[:, None]


@dataclass(slots=True)
class MarginSnapshot:
    """Margin state of every pool at one tick (quote quantums)."""

    cross_equity: np.ndarray  # float64 (n,)
    cross_mm: np.ndarray  # int64 (n,)
    iso_equity: np.ndarray | None  # float64 (n, m), None when no account is isolated
    iso_mm: np.ndarray | None  # int64 (n, m)
    value: np.ndarray  # float64 (n, m): signed position values at the mark
    sizes: np.ndarray  # int64 (n, m): the positions evaluated


def round_to_tick(price: np.ndarray, tick: float, up: np.ndarray) -> np.ndarray:
    """Round prices to the tick grid, up where ``up`` else down; a price already on the grid
    stays put (96.0 / 0.001 is 95999.99999999999 in floating point, which must not floor to
    95999)."""
    steps = np.asarray(price, np.float64) / tick
    nearest = np.rint(steps)
    on_grid = np.abs(steps - nearest) < 1e-9 * np.maximum(1.0, np.abs(steps))
    return np.where(on_grid, nearest, np.where(up, np.ceil(steps), np.floor(steps))) * tick


def apply_shocks(paths: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Return paths with each configured shock's log return spread evenly over its ticks."""
    if not cfg.shocks:
        return paths
    names = [mk.name for mk in cfg.markets]
    log_paths = np.log(paths)
    for shock in cfg.shocks:
        k = names.index(shock.market)
        ramp = np.zeros(paths.shape[0])
        start = min(shock.tick, paths.shape[0] - 1)
        end = min(shock.tick + shock.over_ticks, paths.shape[0])
        ramp[start:end] = shock.log_return / shock.over_ticks
        log_paths[:, k] += np.cumsum(ramp)
    return np.exp(log_paths)


ALL = slice(None)
"""Row selector for every account (a view, no copy)."""


def _safe_move(equity: np.ndarray, mm: np.ndarray, weight: np.ndarray, slack: float) -> np.ndarray:
    """Return (equity - MM - slack) / weight: the relative move a pool can take, +inf for a
    pool without positions (its MM stays 0, so it can never be liquidated)."""
    head = equity - mm - slack - 1e-9 * weight
    out = np.full(head.shape, np.inf)
    np.divide(head, weight, out=out, where=weight > 0)
    return out


def _float32_down(x: np.ndarray) -> np.ndarray:
    """Return float32 values no greater than ``x`` (rounded toward -inf)."""
    y = x.astype(np.float32)
    return np.where(y > x, np.nextafter(y, np.float32(-np.inf)), y)


def _float32_up(x: float) -> np.float32:
    """Return the smallest float32 no less than ``x``."""
    y = np.float32(x)
    return np.nextafter(y, np.float32(np.inf)) if float(y) < x else y


def _vol_half_life(mk) -> float:
    """Return the EWMA half-life (ticks) of a market's volatility estimate."""
    if isinstance(mk.margin, VolScaledMargin):
        return mk.margin.ewma_half_life_ticks
    return DEFAULT_VOL_HALF_LIFE_TICKS


def _shortfall(equity: np.ndarray, mm: np.ndarray) -> np.ndarray:
    return (mm - equity) / np.maximum(mm, 1)


class Simulation:
    """A venue with accounts, markets, keepers and insurance funds, stepped block by block."""

    def __init__(
        self,
        cfg: SimConfig,
        index_path: np.ndarray | None = None,
        ledger: Ledger | None = None,
        forecaster: Forecaster | None = None,
    ) -> None:
        """Set up a run.

        ``index_path`` (shape (steps + 1, m)) replaces the random index; ``ledger`` replaces the
        generated starting snapshot (row 0 must be the market maker holding the other side of
        every position); ``forecaster`` serves the predictive policy (``cfg.policy``).
        """
        self.cfg = cfg
        markets = cfg.markets
        m = len(markets)
        self.m = m
        # Children are numbered: adding one later leaves the earlier streams as they were. The
        # index and the population come from sequential streams (drawn before the run, so
        # every policy gets the same); every draw during the run is keyed by its purpose and
        # block or account (engine.draws), so that a policy's changes do not shift it.
        streams = np.random.SeedSequence(cfg.seed).spawn(6)
        rng_index = np.random.default_rng(streams[0])
        rng_accounts = np.random.default_rng(streams[2])
        self.draws = Draws(streams[3], cfg.accounts.count + 1)
        self.dt_years = cfg.tick_ms / MS_PER_YEAR
        if index_path is None:
            drawn = simulate_index(cfg, rng_index)
            index_path = apply_shocks(drawn.prices, cfg)
        else:
            if index_path.shape != (cfg.steps + 1, m):
                raise ValueError(
                    f"index_path must have shape {(cfg.steps + 1, m)}, was {index_path.shape}"
                )
            n_ticks = index_path.shape[0]
            drawn = IndexPath(index_path, np.zeros(n_ticks, np.int8), np.zeros((n_ticks, m)))
        self.index = drawn
        self.index_path = index_path
        self.steps = index_path.shape[0] - 1
        """Blocks in the run (the config's steps, or a whole replay when that is 0)."""
        # Quote quantums per base quantum for a price of 1: value_q = size_q * price * scale.
        self.price_scale = np.array(
            [quote_per_base_quantum(1.0, mk.base_quantum_exponent) for mk in markets]
        )
        self.requirements = [
            make_requirements(mk.margin, mk.base_quantum_exponent) for mk in markets
        ]
        self.rules = [make_rules(mk, cfg.tick_ms) for mk in markets]
        self.tick_size = np.array([mk.tick_size for mk in markets])
        self.book = Book(markets, cfg.tick_ms)
        self.if_cap = usd_to_quote_quantums(
            np.array([mk.insurance_cap_per_block_usd for mk in markets]), "down"
        )

        # Market state.
        self.t = 0
        self.oracle = index_path[0].copy()
        self.oracle_updated = np.zeros(m, np.int64)
        self.oracle_seen = 0
        """Tick of the index the oracle last reported."""
        self.congestion = 0.0
        self.keeper_latency = cfg.keepers.latency_ticks
        self.keeper_capacity = cfg.keepers.capacity_per_block
        self.mark = index_path[0].copy()
        self.mark_q = self.mark * self.price_scale
        self.ewma_decay = np.array([0.5 ** (1.0 / _vol_half_life(mk)) for mk in markets])
        self.vol_markets = [
            k for k, mk in enumerate(markets) if isinstance(mk.margin, VolScaledMargin)
        ]
        self.base_unit = np.array([10.0**mk.base_quantum_exponent for mk in markets])
        var0 = np.array([mk.sigma_annual**2 * self.dt_years for mk in markets])
        self.ewma_var = var0
        self.vol_mmf_ppm = np.zeros(m, np.int64)
        self.oi_notional = np.zeros(m, np.int64)
        self._contexts: list[MarginContext] | None = None
        self._update_vol_margin()
        self.paused = np.zeros(m, bool)
        self.insurance_paid_block = np.zeros(m, np.int64)
        self.funding_rate = np.zeros(m)

        self.events = EventLog()
        self.liquidator = Liquidator(self)
        self.traders = Traders(cfg, cfg.accounts.count, self.book.sigma_ref)
        self.trader_type = np.zeros(cfg.accounts.count + 1, np.int8)
        self.maker = 0
        if ledger is None:
            ledger = self._populate(rng_accounts)
        elif ledger.size.shape[1] != m or not ledger.is_maker[self.maker]:
            raise ValueError("ledger must have one column per market and the maker in row 0")
        self.ledger = ledger
        n = self.ledger.size.shape[0]
        self.cross_since = np.full(n, -1, np.int64)
        self.iso_since = np.full((n, m), -1, np.int64)
        self.any_isolated = bool((~self.ledger.cross).any())
        # The safe-move screen (see _screen): each account's allowed relative move of any mark
        # from the reference marks before it could breach.
        self.reference_mark = self.mark.copy()
        # float32 halves the memory the per-block scan reads; values are rounded toward -inf
        # and the threshold toward +inf, so the screen stays conservative.
        self.safe_move = np.full(n, -np.inf, np.float32)
        self.always_evaluate = any(r.moves_without_price for r in self.requirements)
        rates = [r.max_mm_rate(np.ones(1, np.int64)) for r in self.requirements]
        self.constant_mm_rates = (
            np.array(rates, np.float64) if all(isinstance(x, float) for x in rates) else None
        )
        """Each market's MM rate bound when none depends on size (else None)."""
        self.evaluated_rows = 0
        self._since_rebase_blocks = 0
        self._since_rebase_rows = 0
        self.evaluated_rows_total = 0
        self.liquidation_impact = True
        """Liquidation orders move the book (off: they fill at book prices but leave the book as
        it was, the counterfactual that measures how much liquidations amplify a crash)."""
        self.screen = True
        """Skip accounts that provably cannot be in breach (off: evaluate everyone, every block)."""
        self._refresh_open_interest()
        # One array (tick, column, market); ``records[column]`` is a (tick, market) view of it.
        self.history = np.zeros((self.steps + 1, len(MARKET_COLUMNS), m))
        self.records = {c: self.history[:, i, :] for i, c in enumerate(MARKET_COLUMNS)}
        self._quiet_block = BlockStats.zeros(m)
        """Tallies of a block without liquidations (all zero, never written to)."""
        self._record(self._quiet_block, np.zeros((2, m), np.int64))
        self._force_full = False
        """Evaluate every account this block (a policy raised MM without a price move)."""
        # Labelled-history state: breach onsets (block, accounts) and sampled account rows.
        self.in_breach = np.zeros(n, bool)
        self._onsets: list[tuple[int, np.ndarray]] = []
        self._samples: list[dict[str, np.ndarray]] = []
        self.last_order_tick = np.zeros(n, np.int64)
        self.last_topup_tick = np.full(n, -1, np.int64)
        self._topups: list[tuple[int, np.ndarray]] = []
        self.topup_pending = np.zeros(n, bool)
        """Accounts with a top-up scheduled and not yet made: nobody rolls a second one."""
        self.topup_called = np.zeros(n, bool)
        """Accounts whose pending top-up answers a margin call (its deposit is the policy's)."""
        if cfg.history.sample_every_ticks:
            self._sample()
        self.policy = Policy(cfg.policy, self, forecaster)
        self.policy.end_block(self)  # a forecast of the opening state

    # ---- set-up --------------------------------------------------------------------------------

    def _populate(self, rng: np.random.Generator) -> Ledger:
        """Create the starting snapshot: traders already holding positions against the maker.

        Sizes ~ N(0, position_sigma_base) per market at the initial price; collateral so that
        leverage ~ U(leverage_min, leverage_max). A snapshot is not gated by initial margin (it
        is the venue's state when the simulation starts); new orders are.
        """
        cfg = self.cfg
        acc = cfg.accounts
        n_traders = acc.count
        n = n_traders + 1
        m = self.m
        led = Ledger.empty(n, m, cfg.keepers.count)
        led.is_maker[self.maker] = True
        traders = np.arange(1, n)
        led.cross[traders] = rng.random(n_traders) < acc.cross_fraction
        types, leverage = self.traders.assign(rng)
        self.trader_type[1:] = types
        sizes = np.empty((n_traders, m), np.int64)
        scale = np.ones(n_traders)
        scale[: acc.whales] = acc.whale_size_multiple
        for k, mk in enumerate(cfg.markets):
            base = rng.normal(0.0, mk.position_sigma_base, n_traders) * scale
            sizes[:, k] = base_to_quantums(base, mk.base_quantum_exponent)
        cost = as_int64(np.floor(sizes * self.mark_q))  # quote paid to open, per market
        notional = np.abs(sizes * self.mark_q)
        collateral = usd_to_quote_quantums(
            notional / leverage[:, None] / QUOTE_QUANTUMS_PER_UNIT, "up"
        )
        # Collateral: cross accounts post one deposit, isolated ones one per position.
        cross = led.cross[traders]
        for k in range(m):
            led.deposit(traders[~cross], k, collateral[~cross, k])
        led.deposit(traders[cross], 0, collateral[cross].sum(axis=1))
        led.deposit(
            np.array([self.maker]), 0, usd_to_quote_quantums(acc.maker_collateral_usd, "down")
        )
        for k, mk in enumerate(cfg.markets):
            if_seed = usd_to_quote_quantums(mk.insurance_fund_usd, "down")
            led.add_insurance(k, int(if_seed))
            led.net_deposits += int(if_seed)
            led.trade(traders, k, sizes[:, k], -cost[:, k])
            led.trade(np.array([self.maker]), k, -exact_sum(sizes[:, k]), exact_sum(cost[:, k]))
        return led

    # ---- prices ----------------------------------------------------------------------------------

    def margin_context(self, k: int) -> MarginContext:
        """Return the per-market inputs of margin requirements at this tick."""
        if self._contexts is None:
            self._contexts = [
                MarginContext(oi_notional=int(oi), vol_mmf_ppm=int(v))
                for oi, v in zip(self.oi_notional, self.vol_mmf_ppm, strict=True)
            ]
        return self._contexts[k]

    def _refresh_contexts(self) -> None:
        """Forget the margin contexts after open interest or volatility margin changed (they are
        rebuilt when next asked for: a quiet block never needs them)."""
        self._contexts = None

    def _update_vol_margin(self) -> None:
        if not self.vol_markets:
            return
        for k in self.vol_markets:
            margin = self.cfg.markets[k].margin
            assert isinstance(margin, VolScaledMargin)
            self.vol_mmf_ppm[k] = vol_scaled_mmf_ppm(
                math.sqrt(self.ewma_var[k]), int(self.vol_mmf_ppm[k]), margin
            )
        self._refresh_contexts()

    def _refresh_open_interest(self) -> None:
        self.open_interest = self.ledger.open_interest
        self.oi_notional = np.rint(self.open_interest * self.oracle * self.price_scale).astype(
            np.int64
        )
        self._refresh_contexts()

    def _move_prices(self) -> None:
        t = self.t
        cfg = self.cfg
        index = self.index_path[t]
        self.book.begin_block(np.log(index / self.index_path[t - 1]))
        self._update_congestion()
        # The oracle never goes back in time, even when congestion lengthens its delay.
        delay = cfg.oracle.delay_ticks + round(
            self.congestion * cfg.congestion.extra_oracle_delay_ticks
        )
        self.oracle_seen = max(self.oracle_seen, t - delay, 0)
        observed = self.index_path[self.oracle_seen]
        previous_oracle = self.oracle
        if cfg.oracle.stale_probability > 0:
            u = self.draws.block(Purpose.ORACLE_UPDATE, t).random(self.m)
            updates = u >= cfg.oracle.stale_probability
            self.oracle = np.where(updates, observed, self.oracle)
            self.oracle_updated = np.where(updates, t, self.oracle_updated)
        else:
            self.oracle = observed.copy()
            self.oracle_updated[:] = t
        ret = np.log(self.oracle / previous_oracle)
        lam = self.ewma_decay
        self.ewma_var = lam * self.ewma_var + (1.0 - lam) * ret**2
        self._update_vol_margin()
        self.mark = index * (1.0 + self.book.deviation())
        self.mark_q = self.mark * self.price_scale
        cb = cfg.circuit_breaker
        if cb.enabled:
            age = t - self.oracle_updated
            deviation = np.abs(self.mark / self.oracle - 1.0)
            self.paused = (age > cfg.oracle.max_age_ticks) | (deviation > cb.max_deviation)
        self.insurance_paid_block = np.zeros(self.m, np.int64)

    def _update_congestion(self) -> None:
        cg = self.cfg.congestion
        keepers = self.cfg.keepers
        if not cg.enabled:
            return
        stress = float(np.max(np.sqrt(self.book.fast_var) / self.book.sigma_ref))
        self.congestion = min(max((stress - cg.vol_threshold) / cg.vol_span, 0.0), 1.0)
        self.keeper_latency = keepers.latency_ticks + round(
            self.congestion * cg.extra_latency_ticks
        )
        self.keeper_capacity = max(
            1, int(keepers.capacity_per_block * (1.0 - cg.capacity_loss * self.congestion))
        )

    def book_fills(
        self, k: int, dsize: np.ndarray, sent: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (average fills in quote quantums per base quantum, signed taker notional in
        quote units) of market orders of ``dsize`` base quantums sent in order into market k.

        Fills walk the book (:class:`engine.book.Book`) and are rounded to the tick against the
        taker. ``sent`` marks the orders that will reach the book (see ``Book.fills``). Nothing
        is committed: pass the notional of the orders that do trade to ``self.book.consume``.
        """
        taker_usd = dsize * (self.mark_q[k] / QUOTE_QUANTUMS_PER_UNIT)
        fill, _ = self.book.fills(k, taker_usd, float(self.index_path[self.t, k]), sent)
        tick = self.tick_size[k]
        fill = np.maximum(round_to_tick(fill, tick, up=dsize > 0), tick)
        return fill * self.price_scale[k], taker_usd

    def insurance_available(self, k: int) -> int:
        """Return what market k's insurance fund may still pay out in this block."""
        bal = int(self.ledger.insurance[k])
        cap = int(self.if_cap[k])
        if cap > 0:
            bal = min(bal, cap - int(self.insurance_paid_block[k]))
        return max(bal, 0)

    # ---- funding -------------------------------------------------------------------------------

    def _settle_funding(self) -> None:
        """Settle funding from the mark-oracle premium; payers round up, receivers down."""
        led = self.ledger
        self.funding_rate = np.zeros(self.m)
        for k, mk in enumerate(self.cfg.markets):
            if mk.funding_interval_ticks == 0 or self.t % mk.funding_interval_ticks:
                continue
            premium = self.mark[k] / self.oracle[k] - 1.0
            rate = float(np.clip(premium, -mk.funding_clamp, mk.funding_clamp))
            self.funding_rate[k] = rate
            if rate == 0.0:
                continue
            holders = np.nonzero(led.size[:, k])[0]
            owed = led.size[holders, k] * (self.oracle[k] * self.price_scale[k] * rate)
            amount = as_int64(np.floor(-owed))  # = -ceil(owed): payers pay at least owed
            led.credit(holders, k, amount)
            dust = -exact_sum(amount)
            led.add_fee_pool(k, dust)
            paid = int(-amount[amount < 0].sum())
            self.events.add(self.t, EventKind.FUNDING, NOBODY, k, NOBODY, 0, paid, rate)
            if dust:
                self.events.add(self.t, EventKind.FEE, FEE_POOL, k, NOBODY, 0, dust)

    # ---- order flow (initial margin gates new exposure) ----------------------------------------

    def _order_flow(self) -> np.ndarray:
        """Orders from the trader population; risk-increasing ones must pass IM and the OI cap.

        Returns int64 (2, m): accepted and rejected counts per market.
        """
        counts = np.zeros((2, self.m), np.int64)
        acc = self.cfg.accounts
        led = self.ledger
        active, market_of, units, close_fraction = self.traders.orders(
            self.draws, self.t, self.trader_type, led.size, self.m
        )
        if active.size == 0:
            return counts
        for k, mk in enumerate(self.cfg.markets):
            sel = market_of == k
            idx = active[sel]
            if idx.size == 0:
                continue
            base = units[sel] * acc.order_size_fraction * mk.position_sigma_base
            dsize = base_to_quantums(base, mk.base_quantum_exponent)
            fraction = close_fraction[sel]
            position = led.size[idx, k]
            closing = as_int64(np.rint(-position * fraction))
            dsize = np.where(fraction > 0, closing, dsize)
            keep = dsize != 0
            idx, dsize = idx[keep], dsize[keep]
            ok = self._passes_initial_margin(idx, k, dsize)
            counts[0, k] = int(ok.sum())
            counts[1, k] = int((~ok).sum())
            if (~ok).any():
                self.events.add(self.t, EventKind.ORDER_REJECTED, idx[~ok], k, NOBODY, dsize[~ok])
            idx, dsize = idx[ok], dsize[ok]
            self.last_order_tick[idx] = self.t
            if idx.size:
                self._market_orders(idx, k, dsize, EventKind.TRADE)
        return counts

    def _market_orders(
        self, idx: np.ndarray, k: int, dsize: np.ndarray, kind: EventKind
    ) -> tuple[float, float]:
        """Fill market orders ``dsize`` of accounts ``idx`` in market k against the maker, in
        order, on the book (taker fee to the fee pool); return (the quote notional traded, what
        the takers paid to the book: impact and spread plus fees, quote units)."""
        led = self.ledger
        price_q, taker_usd = self.book_fills(k, dsize)
        quote = as_int64(np.floor(-dsize * price_q))
        fee = as_int64(np.ceil(np.abs(quote) * self.cfg.markets[k].taker_fee))
        # The book's impact and spread: the distance of each fill from the price the book
        # quotes around (the index), always against the taker.
        reference_q = float(self.index_path[self.t, k]) * self.price_scale[k]
        impact = float((np.abs(dsize) * np.abs(price_q - reference_q)).sum())
        led.trade(idx, k, dsize, quote)
        led.trade(np.array([self.maker]), k, -exact_sum(dsize), -exact_sum(quote))
        self.events.add(self.t, kind, idx, k, self.maker, dsize, quote, price_q)
        if fee.any():
            led.credit(idx, k, -fee)
            led.add_fee_pool(k, exact_sum(fee))
            self.events.add(self.t, EventKind.FEE, idx, k, FEE_POOL, 0, -fee)
        self.book.consume(k, taker_usd)
        return float(np.abs(taker_usd).sum()), (impact + float(fee.sum())) / 1e6

    def _apply_topups(self) -> None:
        """Deposit collateral for the accounts whose top-up is due, back to the target margin
        ratio (per pool: the cross pool, or each isolated position)."""
        due = [acc for tick, acc in self._topups if tick <= self.t]
        if not due:
            return
        self._topups = [(tick, acc) for tick, acc in self._topups if tick > self.t]
        accounts = np.unique(np.concatenate(due))
        called = self.topup_called[accounts]
        self.topup_pending[accounts] = False
        self.topup_called[accounts] = False
        led = self.ledger
        value, _, mm = self.margin_of(led.size[accounts], initial=False, rows=accounts)
        target = self.cfg.traders.topup_target_ratio
        cross = led.cross[accounts]
        equity = led.quote[accounts] + value.sum(axis=1)
        need = np.ceil(target * mm.sum(axis=1) - equity)
        amount = as_int64(np.where(cross & (mm.sum(axis=1) > 0), np.maximum(need, 0), 0))
        paid = amount > 0
        forced = np.where(called, amount, 0).sum(axis=0)
        if paid.any():
            led.deposit(accounts[paid], 0, amount[paid])
            self.events.add(self.t, EventKind.DEPOSIT, accounts[paid], 0, NOBODY, 0, amount[paid])
        for k in range(self.m):
            pool = led.iso_quote[accounts, k] + value[:, k]
            need_k = np.ceil(target * mm[:, k] - pool)
            amount_k = as_int64(np.where(~cross & (mm[:, k] > 0), np.maximum(need_k, 0), 0))
            iso_paid = amount_k > 0
            if iso_paid.any():
                led.deposit(accounts[iso_paid], k, amount_k[iso_paid])
                self.policy.add_call_deposit(self.t, k, float(amount_k[iso_paid & called].sum()))
                self.events.add(
                    self.t, EventKind.DEPOSIT, accounts[iso_paid], k, NOBODY, 0, amount_k[iso_paid]
                )
                paid |= iso_paid
        self.last_topup_tick[accounts[paid]] = self.t
        if forced:  # cross deposits sit in the quote pool; the policy books them to market 0
            self.policy.add_call_deposit(self.t, 0, float(forced))

    def _passes_initial_margin(self, idx: np.ndarray, k: int, dsize: np.ndarray) -> np.ndarray:
        """Return bool (len(idx),): reducing orders pass; risk-increasing ones need equity >= IM
        after the trade (taker fee and half spread included) and room under the OI cap."""
        led = self.ledger
        mk = self.cfg.markets[k]
        old = led.size[idx, k]
        new = old + dsize
        increases = np.abs(new) > np.abs(old)
        sizes = led.size[idx].copy()
        sizes[:, k] = new
        _, _, im = self.margin_of(sizes, initial=True, rows=idx)
        cross = led.cross[idx]
        # Equity after the trade: today's equity less what crossing the spread and the fee cost
        # (the trade itself swaps quote for position value at the mark).
        value_now = led.size[idx] * self.mark_q
        trade_cost = np.abs(dsize * self.mark_q[k]) * (self.book.half_spread[k] + mk.taker_fee)
        equity = (
            np.where(
                cross,
                led.quote[idx] + value_now.sum(axis=1),
                led.iso_quote[idx, k] + value_now[:, k],
            )
            - trade_cost
        )
        required = np.where(cross, im.sum(axis=1), im[:, k])
        ok = ~increases | (equity >= required)
        if self.policy.gated[k]:  # the predictive policy holds new leverage back
            refused = increases & ok
            if refused.any():
                notional = float(np.abs(dsize[refused] * self.mark_q[k]).sum()) / 1e6
                self.policy.add_refused(self.t, k, notional)
            ok &= ~increases
        if mk.oi_cap_base > 0:
            cap = base_to_quantums(mk.oi_cap_base, mk.base_quantum_exponent)
            added = np.where(increases & ok, np.abs(new) - np.abs(old), 0)
            room = cap - int(self.open_interest[k])
            ok &= ~increases | (np.cumsum(added) <= room)
        return ok

    # ---- margin, keepers, liquidation ----------------------------------------------------------

    def margin_rows(self, rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (value float64, notional int64, MM int64), each (len(rows), m), at the mark.

        ``rows`` is an array of account ids or ``slice(None)`` for every account (no copy).
        """
        return self.margin_of(self.ledger.size[rows], initial=False, rows=rows)

    def margin_of(
        self, sizes: np.ndarray, initial: bool, rows: np.ndarray | slice
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (value, notional, IM or MM) of positions ``sizes`` (r, m) of accounts ``rows``
        at the mark, under the margin policy's multipliers."""
        value = sizes * self.mark_q
        notional = as_int64(np.rint(np.abs(value)))
        req = np.empty(sizes.shape, np.int64)
        for k, r in enumerate(self.requirements):
            ctx = self.margin_context(k)
            if initial:
                req[:, k] = r.requirements(notional[:, k], sizes[:, k], ctx)[0]
            else:
                req[:, k] = r.maintenance(notional[:, k], sizes[:, k], ctx)
        return value, notional, self.policy.scale(req, rows, initial)

    def evaluate(self, rows: np.ndarray | slice = ALL) -> MarginSnapshot:
        """Compute equity and maintenance margin of the pools of ``rows`` (default: all)."""
        led = self.ledger
        sizes = led.size[rows]
        value, _, mm = self.margin_of(sizes, initial=False, rows=rows)
        quote = led.quote[rows]
        total_value, total_mm = value.sum(axis=1), mm.sum(axis=1)
        if not self.any_isolated:
            return MarginSnapshot(quote + total_value, total_mm, None, None, value, sizes)
        cross = led.cross[rows]
        # Row sums masked after summing: the same numbers as summing masked rows, fewer copies.
        return MarginSnapshot(
            quote + np.where(cross, total_value, 0.0),
            np.where(cross, total_mm, 0),
            led.iso_quote[rows] + np.where(cross[:, None], 0.0, value),
            np.where(cross[:, None], 0, mm),
            value,
            sizes,
        )

    def pool_equity(self, rows: np.ndarray, k: int) -> np.ndarray:
        """Return the current equity of the pools that margin accounts ``rows`` in market ``k``."""
        led = self.ledger
        sizes = led.size[rows]
        own = sizes[:, k] * self.mark_q[k]
        # Column by column: the same sum as (sizes * mark).sum(axis=1), without the (r, m) copy.
        total = sizes[:, 0] * self.mark_q[0]
        for j in range(1, self.m):
            total += sizes[:, j] * self.mark_q[j]
        return np.where(led.cross[rows], led.quote[rows] + total, led.iso_quote[rows, k] + own)

    def _screen(self) -> np.ndarray | slice:
        """Return the accounts whose margin must be evaluated exactly this block.

        An account evaluated at marks p with headroom H = equity - MM cannot breach at marks p'
        while sum_k |size_k| (1 + rho_k) |p'_k - p_k| < H, where rho_k bounds how fast MM grows
        with notional. Expressed against reference marks r, that holds while the largest relative
        move max_k |p'_k / r_k - 1| stays below ``safe_move`` (computed in _update_safe_moves).
        So a block evaluates only the accounts whose safe move the market has used up, plus those
        whose balances or positions changed; the reference is reset with a full evaluation when
        that set grows large. Exactness is kept: the screen only skips accounts that provably
        cannot be in breach.
        """
        led = self.ledger
        n = led.size.shape[0]
        if self.screen and not self.always_evaluate and not self._force_full:
            moved = self._drift_from_reference()
            self.safe_move[led.take_touched()] = -np.inf
            rows = np.flatnonzero(self.safe_move <= _float32_up(moved))
            # As the marks drift from the reference, more accounts fall through. Re-basing costs
            # one full evaluation; do it when this block's work exceeds the average work per
            # block since the last re-base, full evaluation included (rebuild when the marginal
            # cost passes the average cost).
            self._since_rebase_blocks += 1
            self._since_rebase_rows += rows.size
            if rows.size * self._since_rebase_blocks <= self._since_rebase_rows:
                return rows
        led.touched = []
        self._force_full = False
        self.reference_mark = self.mark.copy()
        self._since_rebase_blocks = 0
        self._since_rebase_rows = n
        return ALL

    def current_drift(self) -> float:
        """Return how far the marks moved from the breach screen's reference (relative)."""
        return self._drift_from_reference()

    def requirements_changed(self, accounts: np.ndarray) -> None:
        """Re-evaluate ``accounts`` next block: a policy changed their requirements."""
        self.safe_move[accounts] = -np.inf

    def _drift_from_reference(self) -> float:
        """Return the largest relative move of any mark from the reference marks."""
        if self.m == 1:
            return abs(float(self.mark[0]) / float(self.reference_mark[0]) - 1.0)
        return float(np.max(np.abs(self.mark / self.reference_mark - 1.0)))

    def _update_safe_moves(self, rows: np.ndarray | slice, snap: MarginSnapshot) -> None:
        led = self.ledger
        if self.always_evaluate:
            return
        drift = self._drift_from_reference()
        # Quote quantums lost per unit of relative move from the reference marks, per market:
        # |size| x reference price x (1 + MM rate bound) = |value| x reference / mark x (...).
        scale = self.reference_mark / self.mark
        abs_value = np.abs(snap.value)
        # Slack for rounding: one quantum per position's MM and per equity term, plus float error.
        slack = self.m + 2.0
        iso_equity, iso_mm = snap.iso_equity, snap.iso_mm
        growth = self.policy.mm_growth_bound()  # policy multipliers scale MM's growth too
        if self.constant_mm_rates is not None and (iso_equity is None or iso_mm is None):
            weight_total = abs_value @ (scale * (1.0 + self.constant_mm_rates * growth))
            safe = _safe_move(snap.cross_equity, snap.cross_mm, weight_total, slack)
            self.safe_move[rows] = _float32_down(safe - drift)
            return
        sizes = np.abs(snap.sizes)
        weight = abs_value * scale
        for k, req in enumerate(self.requirements):
            weight[:, k] *= 1.0 + req.max_mm_rate(sizes[:, k]) * growth[k]
        safe = _safe_move(snap.cross_equity, snap.cross_mm, weight.sum(axis=1), slack)
        if iso_equity is not None and iso_mm is not None:
            # A cross account's pool is its cross pool, an isolated account's its market pools
            # (the other kind of pool has no positions, hence an infinite safe move).
            safe_iso = _safe_move(iso_equity, iso_mm, weight, slack).min(axis=1)
            safe = np.where(led.cross[rows], safe, safe_iso)
        self.safe_move[rows] = _float32_down(safe - drift)

    def _liquidate_breaches(self) -> tuple[BlockStats, np.ndarray]:
        """Find breaches, let keepers act on those old enough, within capacity and breakers."""
        t = self.t
        led = self.ledger
        stats = self._quiet_block  # replaced by fresh tallies once a liquidation can happen
        rows = self._screen()
        n_rows = led.size.shape[0] if isinstance(rows, slice) else rows.size
        self.evaluated_rows = n_rows
        self.evaluated_rows_total += n_rows
        if n_rows == 0:  # nobody can be in breach: the common quiet block
            return stats, np.zeros(self.m, np.int64)
        snap = self.evaluate(rows)
        self._update_safe_moves(rows, snap)
        maker = led.is_maker[rows]
        # Accounts outside ``rows`` cannot be in breach, and their breach clocks are already -1.
        breach_c = (snap.cross_mm > 0) & (snap.cross_equity < snap.cross_mm) & ~maker
        if snap.iso_equity is None and not breach_c.any():
            self.cross_since[rows] = -1
            self._track_onsets(rows, breach_c)
            return stats, np.zeros(self.m, np.int64)
        since = self.cross_since[rows]
        since = np.where(breach_c, np.where(since < 0, t, since), -1)
        self.cross_since[rows] = since
        breached = np.zeros(self.m, np.int64)
        ready = breach_c & (t - since >= self.keeper_latency)
        stats = BlockStats.zeros(self.m)
        row_ids = np.arange(led.size.shape[0]) if isinstance(rows, slice) else rows
        unit_row = [row_ids[ready]]
        unit_market = [self._cross_targets(unit_row[0])]
        unit_since = [since[ready]]
        unit_ratio = [_shortfall(snap.cross_equity[ready], snap.cross_mm[ready])]
        if breach_c.any():
            breached += (led.size[row_ids[breach_c]] != 0).sum(axis=0)
        iso_equity, iso_mm = snap.iso_equity, snap.iso_mm
        if iso_equity is None or iso_mm is None:
            self._track_onsets(rows, breach_c)
        else:
            breach_i = (iso_mm > 0) & (iso_equity < iso_mm) & ~maker[:, None]
            self._track_onsets(rows, breach_c | breach_i.any(axis=1))
            since_i = self.iso_since[rows]
            since_i = np.where(breach_i, np.where(since_i < 0, t, since_i), -1)
            self.iso_since[rows] = since_i
            breached += breach_i.sum(axis=0)
            ri, rk = np.nonzero(breach_i & (t - since_i >= self.keeper_latency))
            ri, rk = ri[~self.paused[rk]], rk[~self.paused[rk]]
            unit_row.append(row_ids[ri])
            unit_market.append(rk)
            unit_since.append(since_i[ri, rk])
            unit_ratio.append(_shortfall(iso_equity[ri, rk], iso_mm[ri, rk]))
        acct = np.concatenate(unit_row)
        mkt = np.concatenate(unit_market)
        keep = mkt >= 0  # cross pools whose every position sits in a paused market wait
        acct, mkt = acct[keep], mkt[keep]
        since = np.concatenate(unit_since)[keep]
        ratio = np.concatenate(unit_ratio)[keep]
        if acct.size == 0:
            return stats, breached
        # Most under-margined first (ties by account, then market), up to the block's capacity.
        order = np.lexsort((mkt, acct, -ratio))[: self.keeper_capacity]
        self.liquidator.begin_block()
        for k in range(self.m):
            sel = order[mkt[order] == k]
            if sel.size:
                self.liquidator.liquidate_market(acct[sel], k, t - since[sel], stats)
        self.liquidator.end_block()
        return stats, breached

    def _track_onsets(self, rows: np.ndarray | slice, in_breach: np.ndarray) -> None:
        """Record the accounts of ``rows`` that entered breach at this block (for labels)."""
        if not in_breach.any():  # the usual block: nobody in breach among the evaluated
            self.in_breach[rows] = False
            return
        onset = in_breach & ~self.in_breach[rows]
        if onset.any():
            ids = np.flatnonzero(onset) if isinstance(rows, slice) else rows[onset]
            self._onsets.append((self.t, ids))
            self.policy.observe_onsets(self.t, ids)
            self._schedule_topups(ids, Purpose.BREACH_TOPUP)
        self.in_breach[rows] = in_breach

    def _cross_targets(self, rows: np.ndarray) -> np.ndarray:
        """Return the market of each account's largest position not paused by the breaker (-1
        when every position is paused)."""
        if rows.size == 0:
            return np.empty(0, np.int64)
        value = np.abs(self.ledger.size[rows] * self.mark_q)
        value[:, self.paused] = -1.0
        value[self.ledger.size[rows] == 0] = -1.0
        k = np.argmax(value, axis=1)
        return np.where(value[np.arange(rows.size), k] >= 0, k, -1)

    # ---- the loop ------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance one block."""
        if self.t >= self.steps:
            raise RuntimeError(f"the run has {self.steps} steps; step {self.t + 1} does not exist")
        self.t += 1
        previous_mark = self.mark
        self._move_prices()
        if self.policy.begin_block(self):
            self._force_full = True
        self._settle_funding()
        self._apply_topups()
        orders = self._order_flow()
        self._derisk()
        self._refresh_open_interest()
        stats, breached = self._liquidate_breaches()
        if self.traders.excitable:
            self.traders.observe(
                np.log(self.mark / previous_mark),
                int(stats.liquidations.sum()),
                int(orders.sum()),  # every arriving order, accepted or not
            )
        self._record(stats, orders, breached)
        self.book.end_block()
        every = self.cfg.history.sample_every_ticks
        if every and self.t % every == 0:
            self._sample()
        self.policy.end_block(self)

    def run(self, progress=None) -> None:
        """Run every remaining step; ``progress(t)`` is called after each one if given."""
        while self.t < self.steps:
            try:
                self.step()
            except LedgerOverflowError as e:
                raise LedgerOverflowError(
                    f"{self.cfg.name} seed {self.cfg.seed}, block {self.t}: {e}; the config's "
                    "amounts, sizes or price path go beyond what the ledger can hold"
                ) from None
            if progress is not None:
                progress(self.t)

    def _record(
        self, stats: BlockStats, orders: np.ndarray, breached: np.ndarray | None = None
    ) -> None:
        t = self.t
        row = self.history[t]
        usd = 1.0 / QUOTE_QUANTUMS_PER_UNIT
        book = self.book
        # Positions in STATE_COLUMNS order (integer indices: this runs every block).
        row[0] = self.index_path[t]
        row[1] = self.oracle
        row[2] = t - self.oracle_updated
        row[3] = self.mark
        row[4] = np.sqrt(self.ewma_var / self.dt_years)
        row[5] = self.vol_mmf_ppm * 1e-6
        row[6] = self.open_interest * self.base_unit
        row[7] = self.oi_notional * usd
        row[8] = self.ledger.insurance * usd
        row[9] = self.ledger.fee_pool * usd
        row[10] = 0 if breached is None else breached
        row[11] = self.paused
        row[12] = self.funding_rate
        row[13:15] = orders
        row[15] = self.index.regime[t]
        row[16] = self.index.taker_flow[t]
        row[17] = self.congestion
        row[18] = self.keeper_capacity
        row[19] = self.keeper_latency
        row[20] = book.half_spread
        row[21:23] = book.depth
        row[23] = book.bought
        row[24] = book.sold
        if t % LIQUIDATION_MAP_EVERY_TICKS == 0:
            self.liquidation_map = self._liquidation_map()
        row[_FIRST_MAP:_FIRST_STAT] = self.liquidation_map
        row[_FIRST_STAT:] = stats.data * _STAT_SCALE

    # ---- results ---------------------------------------------------------------------------------

    def market_frame(self) -> pd.DataFrame:
        """Return the per-tick market state recorded so far, one row per (tick, market)."""
        t_end = self.t + 1
        m = self.m
        ticks = np.repeat(np.arange(t_end), m)
        time_ms = ticks * self.cfg.tick_ms
        if self.index.time_ms is not None:  # a replay keeps the bars' wall-clock time
            time_ms = np.repeat(self.index.time_ms[:t_end], m)
        data = {
            "tick": ticks,
            "time_ms": time_ms,
            "market": np.tile(np.array([mk.name for mk in self.cfg.markets]), t_end),
        }
        for c in MARKET_COLUMNS:
            data[c] = self.records[c][:t_end].ravel()
        df = pd.DataFrame(data)
        for c in INT_COLUMNS:
            df[c] = df[c].astype(np.int64)
        df["paused"] = df["paused"].astype(bool)
        return df

    def _sample(self) -> None:
        """Record one row per trader with its margin state at the end of this block."""
        self._samples.append(self.account_rows(np.arange(1, self.ledger.size.shape[0])))

    def account_rows(self, accounts: np.ndarray) -> dict[str, np.ndarray]:
        """Return the sampled-account columns of ``accounts`` (trader ids) at this block.

        Requirements are the margin models' base requirements, without the policy's
        multipliers: the state a reactive venue would report, which forecasts are trained on.
        """
        led = self.ledger
        sizes = led.size[accounts]
        value = sizes * self.mark_q
        notional = as_int64(np.rint(np.abs(value)))
        im = np.empty(sizes.shape, np.int64)
        mm = np.empty(sizes.shape, np.int64)
        for k, req in enumerate(self.requirements):
            im[:, k], mm[:, k] = req.requirements(
                notional[:, k], sizes[:, k], self.margin_context(k)
            )
        usd = 1.0 / QUOTE_QUANTUMS_PER_UNIT
        equity = self._equity(accounts, value) * usd
        mm_acct = mm.sum(axis=1) * usd
        gross = notional.sum(axis=1) * usd
        exposure = self._exposure(sizes, notional) * usd
        topup = self.last_topup_tick[accounts]
        with np.errstate(divide="ignore", invalid="ignore"):
            row = {
                "tick": np.full(sizes.shape[0], self.t, np.int64),
                "account": accounts.astype(np.int64),
                "equity": equity,
                "maintenance_margin": mm_acct,
                "initial_margin": im.sum(axis=1) * usd,
                "margin_ratio": np.where(mm_acct > 0, equity / mm_acct, np.nan),
                "leverage": np.where(equity > 0, gross / equity, np.nan),
                "notional": gross,
                "unrealized_pnl": (value - led.entry[accounts]).sum(axis=1) * usd,
                "cross": led.cross[accounts],
                "breached_now": self.in_breach[accounts],
                # The uniform adverse move of every mark that would bring equity to MM.
                "distance_to_liquidation": np.where(
                    exposure > 0, (equity - mm_acct) / exposure, np.nan
                ),
                "ticks_since_order": self.t - self.last_order_tick[accounts],
                "ticks_since_topup": np.where(topup >= 0, self.t - topup, -1),
                "trader_type": self.trader_type[accounts],
            }
        for k, mk in enumerate(self.cfg.markets):
            row[f"notional_{mk.name}"] = value[:, k] * usd
        return row

    def _equity(self, accounts: np.ndarray | slice, value: np.ndarray) -> np.ndarray:
        """Return accounts' equity in quote quantums (all pools), float64."""
        led = self.ledger
        return led.quote[accounts] + led.iso_quote[accounts].sum(axis=1) + value.sum(axis=1)

    def _exposure(self, sizes: np.ndarray, notional: np.ndarray) -> np.ndarray:
        """Return the quote quantums of headroom a uniform adverse relative move of 1 uses up:
        the loss on the positions plus the growth of MM (bounded by its largest rate)."""
        rates = np.empty(sizes.shape)
        for k, req in enumerate(self.requirements):
            rates[:, k] = 1.0 + np.minimum(req.max_mm_rate(np.abs(sizes[:, k])), 1.0)
        return (notional * rates).sum(axis=1)

    def _liquidation_map(self) -> np.ndarray:
        """Return MAP_COLUMNS per market, (len(MAP_COLUMNS), m): the notional of long and short
        positions whose account a uniform adverse move of at most each rung would bring to
        maintenance margin (distance as in ``account_rows``; base requirements)."""
        led = self.ledger
        sizes = led.size  # every row (no copy); the makers' rows get no weight below
        value = sizes * self.mark_q
        notional = as_int64(np.rint(np.abs(value)))
        mm = np.zeros(sizes.shape[0])
        for k, req in enumerate(self.requirements):
            mm += req.maintenance(notional[:, k], sizes[:, k], self.margin_context(k))
        exposure = self._exposure(sizes, notional)
        head = self._equity(ALL, value) - mm
        distance = np.full(head.shape, np.inf)
        np.divide(head, exposure, out=distance, where=exposure > 0)
        rungs = np.asarray(LIQUIDATION_MAP_DISTANCES)
        r = rungs.size + 1
        # Bin j holds the accounts with distance in (rung j-1, rung j] (j = r - 1: beyond the
        # last rung); longs in bins 0..r-1, shorts in r..2r-1: one bincount per market.
        rung = np.searchsorted(rungs, distance, side="left")
        weight = np.where(led.is_maker[:, None], 0.0, notional / QUOTE_QUANTUMS_PER_UNIT)
        out = np.zeros((2, rungs.size, self.m))
        for k in range(self.m):
            short = sizes[:, k] < 0
            sums = np.bincount(rung + r * short, weight[:, k], minlength=2 * r).reshape(2, r)
            out[:, :, k] = np.cumsum(sums[:, : rungs.size], axis=1)
        return out.reshape(2 * rungs.size, self.m)

    def market_history(self) -> dict[str, np.ndarray]:
        """Return the market table so far as (tick + 1, m) read-only views, one per column."""
        out = {}
        for c, arr in self.records.items():
            view = arr[: self.t + 1]
            view.flags.writeable = False
            out[c] = view
        return out

    # ---- the predictive policy's actions ---------------------------------------------------

    def margin_call(self, accounts: np.ndarray) -> int:
        """Warn ``accounts`` of a forecast breach; each tops up like after a breach (same
        probability and delay, from its own keyed draws); return how many answer.

        An account with a top-up already pending rolls no second one.
        """
        return int(self._schedule_topups(accounts, Purpose.CALL_TOPUP).size)

    def _schedule_topups(self, accounts: np.ndarray, purpose: Purpose) -> np.ndarray:
        """Roll, for each of ``accounts`` (unique ids) without a pending top-up, whether it
        tops up after the traders' delay; schedule and return those that will."""
        p = self.cfg.traders.topup_probability
        accounts = accounts[~self.topup_pending[accounts]]
        if accounts.size == 0 or p <= 0:
            return accounts[:0]
        answer = accounts[self.draws.account_uniforms(purpose, accounts) < p]
        if answer.size:
            self._topups.append((self.t + self.cfg.traders.topup_delay_ticks, answer))
            self.topup_pending[answer] = True
            self.topup_called[answer] = purpose == Purpose.CALL_TOPUP
        return answer

    def _derisk(self) -> None:
        """Reduce the positions the predictive policy flagged, as market orders on the book
        (taker fee, no liquidation penalty)."""
        if self.policy.derisk_rows.size == 0:
            return
        for k in range(self.m):
            idx, dsize = self.policy.derisk_plan(self, k)
            if idx.size:
                traded, paid = self._market_orders(idx, k, dsize, EventKind.DERISK)
                self.policy.add_derisked(self.t, k, traded, paid)
        if self.policy.budget:  # a budget's de-risk is one action: it runs once, not each block
            self.policy.derisk_rows = np.empty(0, np.int64)

    def onsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (ticks, accounts) of every breach onset so far, int64 arrays."""
        if not self._onsets:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        ticks = np.concatenate([np.full(a.size, t, np.int64) for t, a in self._onsets])
        accounts = np.concatenate([a for _, a in self._onsets]).astype(np.int64)
        return ticks, accounts

    def labelled_accounts(self, events: pd.DataFrame | None = None) -> pd.DataFrame:
        """Return the sampled account rows with their breach and loss labels per horizon.

        ``label_<H>m`` is 1 when the account enters breach within (t, t + H minutes], 0 when it
        does not, -1 when the run ends before t + H (unknown); ``ticks_to_breach`` counts blocks
        to the next onset (-1: none in the run). ``loss_<H>m`` is the bad debt (quote units)
        and ``impact_<H>m`` the liquidation impact cost (each liquidation fill's distance from
        the index the book quotes around, times its size) of the breach episodes that begin
        within (t, t + H] — from their onset until the account's next onset after t + H, so a
        liquidation that takes longer than H still counts; 0 when no breach begins within H,
        NaN when the label is unknown. ``events`` is :meth:`EventLog.to_frame` of this run
        (computed when not given).
        """
        if not self._samples:
            raise ValueError("history.sample_every_ticks is 0: this run sampled no accounts")
        frame = pd.DataFrame(
            {k: np.concatenate([s[k] for s in self._samples]) for k in self._samples[0]}
        )
        onset_tick, onset_account = self.onsets()
        row_tick = frame["tick"].to_numpy()
        row_account = frame["account"].to_numpy()
        span = self.steps + 2
        nxt = next_onset(row_tick, row_account, onset_tick, onset_account, span)
        horizons = self.cfg.history.horizons_minutes
        ticks = [max(1, round(h * 60_000 / self.cfg.tick_ms)) for h in horizons]
        labels = breach_labels(row_tick, nxt, ticks, self.t)
        frame.insert(1, "time_ms", self._time_ms(row_tick))
        losses = self._loss_events(self.events.to_frame() if events is None else events)
        start = np.where(nxt >= 0, nxt, span - 1)
        for j, h in enumerate(horizons):
            frame[f"label_{h:g}m"] = labels[:, j]
            after = next_onset(row_tick + ticks[j], row_account, onset_tick, onset_account, span)
            stop = np.where(after >= 0, after, span - 1)
            known = labels[:, j] >= 0
            for name, (ev_tick, ev_account, amount) in losses.items():
                total = episode_sums(
                    row_tick, row_account, start, stop, ev_tick, ev_account, amount, span
                )
                frame[f"{name}_{h:g}m"] = np.where(known, total, np.nan)
        frame["ticks_to_breach"] = np.where(nxt >= 0, nxt - row_tick, -1)
        return frame

    def _loss_events(self, events: pd.DataFrame) -> dict[str, tuple[np.ndarray, ...]]:
        """Return (tick, account, quote units) of the traders' bad debt and liquidation impact
        events, for the loss labels."""
        kind = events["kind"].to_numpy()
        account = events["account"].to_numpy()
        traders = account > 0
        out: dict[str, tuple[np.ndarray, ...]] = {}
        bad = traders & (kind == int(EventKind.BAD_DEBT))
        out["loss"] = (
            events["tick"].to_numpy()[bad],
            account[bad],
            -events["amount"].to_numpy()[bad] / QUOTE_QUANTUMS_PER_UNIT,
        )
        liq = traders & (kind == int(EventKind.LIQUIDATION))
        tick = events["tick"].to_numpy()[liq]
        market = events["market"].to_numpy()[liq].astype(np.int64)
        reference_q = self.index_path[tick, market] * self.price_scale[market]
        fill_q = events["price"].to_numpy()[liq]
        size = np.abs(events["size"].to_numpy()[liq]).astype(np.float64)
        impact = size * np.abs(fill_q - reference_q) / QUOTE_QUANTUMS_PER_UNIT
        out["impact"] = (tick, account[liq], impact)
        return out

    def policy_frame(self) -> pd.DataFrame:
        """Return the policy's state per (tick, market): accounts scored, fallback reason
        (:class:`engine.policy.Fallback`), margin calls, notional de-risked, gating, accounts
        with an add-on, and the market multipliers of MM and IM."""
        t_end = self.t + 1
        m = self.m
        data: dict[str, np.ndarray] = {
            "tick": np.repeat(np.arange(t_end), m),
            "market": np.tile(np.array([mk.name for mk in self.cfg.markets]), t_end),
        }
        table = self.policy.table
        for i, c in enumerate(POLICY_COLUMNS):
            data[c] = table[:t_end, i, :].ravel()
        df = pd.DataFrame(data)
        for c in ("scored", "fallback", "warned", "addon_accounts"):
            df[c] = df[c].astype(np.int64)
        df["gated"] = df["gated"].astype(bool)
        return df

    def _time_ms(self, ticks: np.ndarray) -> np.ndarray:
        if self.index.time_ms is not None:
            return self.index.time_ms[ticks]
        return ticks * self.cfg.tick_ms

    def account_frame(self) -> pd.DataFrame:
        """Return every account's final balances and positions (quote/base quantums)."""
        led = self.ledger
        data = {
            "account": np.arange(led.size.shape[0]),
            "is_maker": led.is_maker,
            "cross": led.cross,
            "quote": led.quote,
        }
        for k, mk in enumerate(self.cfg.markets):
            data[f"size_{mk.name}"] = led.size[:, k]
            data[f"iso_quote_{mk.name}"] = led.iso_quote[:, k]
        return pd.DataFrame(data)

    def summary(self) -> dict[str, float | int]:
        """Return headline totals of the run, in quote units."""
        r = self.records
        t_end = self.t + 1
        usd = QUOTE_QUANTUMS_PER_UNIT
        if_start = sum(mk.insurance_fund_usd for mk in self.cfg.markets)
        index = self.index_path[:t_end]
        mark = r["mark_price"][:t_end]
        return {
            "steps": int(self.t),
            "accounts": int(self.ledger.size.shape[0] - 1),
            "liquidations": int(r["liquidations"][1:t_end].sum()),
            "liquidated_notional": float(r["liquidated_notional"][1:t_end].sum()),
            "bad_debt": float(r["bad_debt"][1:t_end].sum()),
            "insurance_fund_start": float(if_start),
            "insurance_fund_end": float(self.ledger.insurance.sum() / usd),
            "insurance_paid": float(r["insurance_paid"][1:t_end].sum()),
            "adl_notional": float(r["adl_notional"][1:t_end].sum()),
            "socialized_loss": float(r["socialized"][1:t_end].sum()),
            "keeper_rewards": float(self.ledger.keepers.sum() / usd),
            "unfilled_liquidations": int(r["unfilled"][1:t_end].sum()),
            "orders_rejected": int(r["orders_rejected"][1:t_end].sum()),
            "index_drawdown": float((index.min(axis=0) / index[0] - 1.0).min()),
            "mark_drawdown": float((mark[1:].min(axis=0) / index[0] - 1.0).min())
            if t_end > 1
            else 0.0,
            "conservation_error": int(self.ledger.conservation_error()),
            **self.policy.summary(),
        }
