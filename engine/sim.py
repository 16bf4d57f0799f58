"""The step loop: it wires the engine's parts together and runs them block by block.

One tick is one block. Per tick, in order:

1. the price step moves the market (:class:`engine.market.PriceStep`): book, congestion,
   oracle (late or stale), mark, circuit breaker;
2. the policy updates its market multipliers (:class:`engine.policy.Policy`);
3. funding settles every ``funding_interval_ticks`` (:mod:`engine.funding`); due collateral
   top-ups are deposited (:class:`engine.deposits.TopUps`);
4. new orders arrive (:class:`engine.orders.OrderFlow`); initial margin, open-interest caps and
   the policy's gate decide which trade; the policy's de-risking orders follow;
5. the breach screen picks the accounts that could be in breach (:mod:`engine.screen`), their
   maintenance margin is evaluated, and keepers act on breaches ``latency_ticks`` old, at most
   ``capacity_per_block`` per block, most under-margined first (:mod:`engine.liquidation`);
6. the recorder writes the block's market row, and every ``history.sample_every_ticks`` blocks
   samples the accounts for labelled histories (:mod:`engine.recorder`); the policy scores
   accounts on its cadence and sets the next block's early actions.

Who owns what: the ledger (balances, positions, insurance funds, fee pool) is changed only by
funding, top-ups, orders and the liquidator; the market state only by the price step (and the
liquidator's per-block insurance tally); the requirement multipliers only by the policy; the
records only by the recorder. The venue's rules (:class:`engine.venue.VenueModel`) never change.

Randomness: one ``SeedSequence(seed)`` spawns a generator per component, so the same seed and
config give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from engine.book import Book
from engine.config import SimConfig
from engine.deposits import TopUps
from engine.draws import Draws, Purpose
from engine.events import EventKind, EventLog
from engine.forecast import Forecaster
from engine.funding import settle_funding
from engine.keepers import among_units, keeper_order
from engine.liquidation import BlockStats, Liquidator
from engine.margin import RequirementScale
from engine.market import MarketState, PriceStep, refresh_open_interest
from engine.orders import OrderFlow
from engine.policy import POLICY_COLUMNS, Policy
from engine.population import populate
from engine.prices import IndexPath, apply_shocks, simulate_index
from engine.recorder import LIQUIDATION_MAP_DISTANCES, MARKET_COLUMNS, Recorder
from engine.rows import row_any, row_argmax
from engine.screen import BreachScreen
from engine.state import Ledger
from engine.traders import Traders
from engine.units import LedgerOverflowError
from engine.valuation import ALL, MarginSnapshot, evaluate
from engine.vault import Vault
from engine.venue import MAKER, VenueModel

__all__ = ["LIQUIDATION_MAP_DISTANCES", "MARKET_COLUMNS", "Simulation"]


_Units = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Units for keepers: (accounts, markets, breach onset blocks, shortfall ratios)."""
_NO_UNITS: _Units = (
    np.empty(0, np.int64),
    np.empty(0, np.int64),
    np.empty(0, np.int64),
    np.empty(0),
)


_CROSS_POOL = -2
"""A unit's market while not yet needed: a cross pool in breach is liquidated in the market of
its largest position, which is looked up only for the pools keepers reach this block (the
keepers' order never depends on it: an account has one cross pool)."""


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
        m = len(cfg.markets)
        self.m = m
        # Children are numbered: adding one later leaves the earlier streams as they were. The
        # index and the population come from sequential streams (drawn before the run, so
        # every policy gets the same); every draw during the run is keyed by its purpose and
        # block or account (engine.draws), so that a policy's changes do not shift it.
        streams = np.random.SeedSequence(cfg.seed).spawn(6)
        rng_index = np.random.default_rng(streams[0])
        rng_accounts = np.random.default_rng(streams[2])
        self.draws = Draws(streams[3], cfg.accounts.count + 1)
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

        self.venue = VenueModel.from_config(cfg)
        self.book = Book(cfg.markets, cfg.tick_ms)
        self.market = MarketState.opening(cfg, self.venue, index_path)
        self.events = EventLog()
        self.traders = Traders(cfg, cfg.accounts.count, self.book.sigma_ref)
        self.maker = MAKER
        if ledger is None:
            ledger, self.trader_type = populate(cfg, self.market, self.traders, rng_accounts)
        elif ledger.size.shape[1] != m or not ledger.is_maker[MAKER]:
            raise ValueError("ledger must have one column per market and the maker in row 0")
        else:
            self.trader_type = np.zeros(cfg.accounts.count + 1, np.int8)
        self.vault: Vault | None = None
        """The liquidator vault, when a market's rules backstop accounts (the last row)."""
        if any(rules.has_backstop for rules in self.venue.rules):
            row = ledger.size.shape[0]
            ledger = ledger.with_extra_account()
            self.trader_type = np.append(self.trader_type, np.int8(0))
            self.vault = Vault(row, cfg.vault, ledger, self.events, self.market, self.venue)
        self.ledger = ledger
        n = ledger.size.shape[0]
        self.cross_since = np.full(n, -1, np.int64)
        self.iso_since = np.full((n, m), -1, np.int64)
        """Block each cross pool / isolated position entered breach (-1: not in breach)."""
        self.iso_clock_on = np.zeros(n, bool)
        """Accounts with an isolated position's breach clock running (some iso_since >= 0)."""
        self.any_isolated = bool((~ledger.cross).any())
        refresh_open_interest(self.market, ledger, self.venue)

        self.requirement_scale = RequirementScale(m)
        self.breach_screen = BreachScreen(n, self.venue, self.market.mark)
        self.topups = TopUps(cfg.traders, self.draws, n)
        last_order_tick = np.zeros(n, np.int64)
        self.recorder = Recorder(
            cfg,
            self.venue,
            self.market,
            ledger,
            self.book,
            drawn,
            index_path,
            self.trader_type,
            last_order_tick,
            self.topups.last_tick,
            self.steps,
        )
        self.records = self.recorder.records
        self._quiet_block = BlockStats.zeros(m)
        """Tallies of a block without liquidations (all zero, never written to)."""
        self.recorder.record(self._quiet_block, np.zeros((2, m), np.int64))
        if cfg.history.sample_every_ticks:
            self.recorder.sample()
        self.price_step = PriceStep(cfg, self.venue, index_path, self.book, self.draws)
        self.policy = Policy(
            cfg.policy,
            forecaster,
            self.venue,
            self.market,
            ledger,
            self.book,
            self.requirement_scale,
            self.breach_screen,
            self.recorder,
            self.topups,
            cfg.traders,
            self.steps,
        )
        self.orders = OrderFlow(
            cfg,
            self.traders,
            self.trader_type,
            self.draws,
            ledger,
            self.book,
            self.events,
            self.venue,
            self.market,
            self.requirement_scale,
            self.policy,
            last_order_tick,
        )
        self.liquidator = self.make_liquidator()
        self.policy.end_block()  # a forecast of the opening state

    def make_liquidator(self, cls: type[Liquidator] = Liquidator) -> Liquidator:
        """Return a liquidator (of class ``cls``) on this run's ledger, book and market."""
        return cls(
            self.ledger,
            self.book,
            self.events,
            self.venue,
            self.market,
            self.requirement_scale,
            self.vault,
            self.draws,
        )

    # ---- the run's clock and switches ------------------------------------------------------------

    @property
    def t(self) -> int:
        """The current block."""
        return self.market.t

    @property
    def evaluated_rows_total(self) -> int:
        """Account rows whose margin was evaluated exactly, over the run."""
        return self.breach_screen.evaluated_rows_total

    def evaluate(self, rows: np.ndarray | slice = ALL) -> MarginSnapshot:
        """Compute equity and maintenance margin of the pools of ``rows`` (default: all)."""
        return evaluate(
            self.ledger, rows, self.market, self.venue, self.requirement_scale, self.any_isolated
        )

    # ---- margin, keepers, liquidation ----------------------------------------------------------

    def _liquidate_breaches(self) -> tuple[BlockStats, np.ndarray]:
        """Find breaches, let keepers act on those old enough and on the units still in
        liquidation (Drift), within capacity and breakers."""
        stats, breached, units = self._find_breaches()
        units = self._with_units_in_liquidation(units)
        if units[0].size == 0:
            return stats, breached
        if stats is self._quiet_block:
            stats = BlockStats.zeros(self.m)
        acct, mkt, since, ratio = units
        t = self.market.t
        order = keeper_order(acct, mkt, ratio, self.market.keeper_capacity)
        # A cross pool's market is found only for the pools keepers reach (see _CROSS_POOL).
        pools = order[mkt[order] == _CROSS_POOL]
        if pools.size:
            mkt[pools] = self._cross_targets(acct[pools])
        self.liquidator.begin_block()
        for k in range(self.m):
            sel = order[mkt[order] == k]
            if sel.size:
                self.liquidator.liquidate_market(acct[sel], k, t - since[sel], stats)
        self.liquidator.end_block()
        return stats, breached

    def _with_units_in_liquidation(self, units: _Units) -> _Units:
        """Add the units that stay in liquidation after leaving breach (Drift's buffer) and are
        not among ``units`` already; they wait behind every unit in breach."""
        acct, mkt, pooled, since = self.liquidator.episodes.in_liquidation()
        if acct.size == 0:
            return units
        mkt = mkt.copy()
        paused = self.market.paused
        iso = ~pooled & (mkt >= 0)
        mkt[iso] = np.where(paused[mkt[iso]], -1, mkt[iso])
        unit_pools = units[1] == _CROSS_POOL
        if paused.any():
            mkt[pooled] = self._cross_targets(acct[pooled])
            # (no unit is a _CROSS_POOL then: every cross unit's market is found)
            among = among_units(acct, mkt, units[0], units[1], self.ledger.size.shape)
        else:
            # A pool's market is its largest position's: a pool is among the units when its
            # account is (the same sizes give the same market).
            mkt[pooled] = _CROSS_POOL
            is_pool_unit = np.zeros(self.ledger.size.shape[0], bool)
            is_pool_unit[units[0][unit_pools]] = True
            iso_units = ~unit_pools
            shape = self.ledger.size.shape
            among = among_units(acct, mkt, units[0][iso_units], units[1][iso_units], shape)
            among |= pooled & is_pool_unit[acct]
        # Not in breach, not new: skip those that are units already, and paused ones.
        keep = (mkt != -1) & ~among
        acct, mkt, since = acct[keep], mkt[keep], since[keep]
        return (
            np.concatenate([units[0], acct]),
            np.concatenate([units[1], mkt]),
            np.concatenate([units[2], since]),
            np.concatenate([units[3], np.zeros(acct.size)]),
        )

    def _find_breaches(self) -> tuple[BlockStats, np.ndarray, _Units]:
        """Find the breached units keepers reach this block; return (the block's tallies, units
        in breach per market, (accounts, markets, breach onsets, shortfall ratios))."""
        market = self.market
        t = market.t
        led = self.ledger
        stats = self._quiet_block  # replaced by fresh tallies once a liquidation can happen
        rows = self.breach_screen.select(led, market)
        if self.breach_screen.count(rows, led.size.shape[0]) == 0:
            # Nobody can be in breach: a quiet block.
            return stats, np.zeros(self.m, np.int64), _NO_UNITS
        snap = self.evaluate(rows)
        self.breach_screen.update(rows, snap, market, self.requirement_scale.mm_growth_bound())
        maker = led.is_maker[rows]
        # Accounts outside ``rows`` cannot be in breach, and their breach clocks are already -1.
        breach_c = (snap.cross_mm > 0) & (snap.cross_equity < snap.cross_mm) & ~maker
        if snap.iso_equity is None and not breach_c.any():
            self.cross_since[rows] = -1
            self._track_onsets(rows, breach_c)
            return stats, np.zeros(self.m, np.int64), _NO_UNITS
        since = self.cross_since[rows]
        since = np.where(breach_c, np.where(since < 0, t, since), -1)
        self.cross_since[rows] = since
        breached = np.zeros(self.m, np.int64)
        ready = breach_c & (t - since >= market.keeper_latency)
        stats = BlockStats.zeros(self.m)
        row_ids = np.arange(led.size.shape[0]) if isinstance(rows, slice) else rows
        unit_row = [row_ids[ready]]
        if market.paused.any():
            unit_market = [self._largest_unpaused(snap.sizes[ready], np.abs(snap.value[ready]))]
        else:  # every cross pool in breach has a position in a market keepers can act on
            unit_market = [np.full(unit_row[0].size, _CROSS_POOL, np.int64)]
        unit_since = [since[ready]]
        unit_ratio = [_shortfall(snap.cross_equity[ready], snap.cross_mm[ready])]
        if breach_c.any():
            breached += (snap.sizes[breach_c] != 0).sum(axis=0)
        iso, iso_equity, iso_mm = snap.iso_at, snap.iso_equity, snap.iso_mm
        if iso is None or iso_equity is None or iso_mm is None:
            self._track_onsets(rows, breach_c)
        else:
            # The isolated pools of the isolated accounts among rows (a cross account's have no
            # positions); only isolated accounts ever run an isolated clock.
            breach_i = (iso_mm > 0) & (iso_equity < iso_mm) & ~maker[iso, None]
            any_i = row_any(breach_i)
            in_breach = breach_c.copy()
            in_breach[iso] |= any_i
            self._track_onsets(rows, in_breach)
            # Only accounts in breach now or with a clock running change clocks (the others'
            # stay -1): the isolated bookkeeping runs on those few rows.
            iso_ids = row_ids[iso]
            at = np.flatnonzero(any_i | self.iso_clock_on[iso_ids])
            ids, breach_i = iso_ids[at], breach_i[at]
            since_i = self.iso_since[ids]
            since_i = np.where(breach_i, np.where(since_i < 0, t, since_i), -1)
            self.iso_since[ids] = since_i
            self.iso_clock_on[ids] = row_any(since_i >= 0)
            breached += breach_i.sum(axis=0)
            ri, rk = np.nonzero(breach_i & (t - since_i >= market.keeper_latency))
            ri, rk = ri[~market.paused[rk]], rk[~market.paused[rk]]
            unit_row.append(ids[ri])
            unit_market.append(rk)
            unit_since.append(since_i[ri, rk])
            unit_ratio.append(_shortfall(iso_equity[at[ri], rk], iso_mm[at[ri], rk]))
        acct = np.concatenate(unit_row)
        mkt = np.concatenate(unit_market)
        keep = mkt != -1  # cross pools whose every position sits in a paused market wait
        acct, mkt = acct[keep], mkt[keep]
        since = np.concatenate(unit_since)[keep]
        ratio = np.concatenate(unit_ratio)[keep]
        return stats, breached, (acct, mkt, since, ratio)

    def _track_onsets(self, rows: np.ndarray | slice, in_breach: np.ndarray) -> None:
        """Record the accounts of ``rows`` that entered breach at this block (for labels); the
        policy counts them and each rolls whether it tops up."""
        ids = self.recorder.track_onsets(rows, in_breach)
        if ids is not None:
            self.policy.observe_onsets(self.t, ids)
            self.topups.schedule(self.t, ids, Purpose.BREACH_TOPUP)

    def _cross_targets(self, rows: np.ndarray) -> np.ndarray:
        """Return the market of each account's largest position not paused by the breaker (-1
        when every position is paused)."""
        if rows.size == 0:
            return np.empty(0, np.int64)
        sizes = self.ledger.size[rows]
        return self._largest_unpaused(sizes, np.abs(sizes * self.market.mark_q))

    def _largest_unpaused(self, sizes: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Return the market of each row's largest position by |value| (r, m; overwritten)
        not paused by the breaker (-1 when every position is paused)."""
        if self.market.paused.any():
            value[:, self.market.paused] = -1.0
        value[sizes == 0] = -1.0
        k = row_argmax(value)
        return np.where(value[np.arange(k.size), k] >= 0, k, -1)

    # ---- the predictive policy's actions ---------------------------------------------------

    def margin_call(self, accounts: np.ndarray) -> int:
        """Warn ``accounts`` of a forecast breach; each tops up like after a breach (same
        probability and delay, from its own keyed draws); return how many answer.

        An account with a top-up already pending rolls no second one.
        """
        return int(self.topups.schedule(self.t, accounts, Purpose.CALL_TOPUP).size)

    def _apply_topups(self) -> None:
        calls = self.topups.apply(
            self.ledger, self.events, self.market, self.venue, self.requirement_scale
        )
        for k, amount_q in calls:
            self.policy.add_call_deposit(self.t, k, amount_q)

    def _derisk(self) -> None:
        """Reduce the positions the predictive policy flagged, as market orders on the book
        (taker fee, no liquidation penalty)."""
        if self.policy.derisk_rows.size == 0:
            return
        for k in range(self.m):
            idx, dsize = self.policy.derisk_plan(k)
            if idx.size:
                traded, paid = self.orders.market_orders(idx, k, dsize, EventKind.DERISK)
                self.policy.add_derisked(self.t, k, traded, paid)
        if self.policy.budget:  # a budget's de-risk is one action: it runs once, not each block
            self.policy.derisk_rows = np.empty(0, np.int64)

    # ---- the loop ------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance one block."""
        if self.t >= self.steps:
            raise RuntimeError(f"the run has {self.steps} steps; step {self.t + 1} does not exist")
        previous_mark = self.market.mark
        self.price_step.advance(self.market)
        if self.policy.begin_block():
            self.breach_screen.force_full = True
        settle_funding(self.ledger, self.events, self.market, self.venue)
        self._apply_topups()
        orders = self.orders.order_flow()
        self._derisk()
        if self.vault is not None:
            self.vault.unwind(self.orders)
        refresh_open_interest(self.market, self.ledger, self.venue)
        stats, breached = self._liquidate_breaches()
        if self.traders.excitable:
            self.traders.observe(
                np.log(self.market.mark / previous_mark),
                int(stats.liquidations.sum()),
                int(orders.sum()),  # every arriving order, accepted or not
            )
        self.recorder.record(stats, orders, breached)
        self.book.end_block()
        every = self.cfg.history.sample_every_ticks
        if every and self.t % every == 0:
            self.recorder.sample()
        self.policy.end_block()

    def run(self, progress: Callable[[int], object] | None = None) -> None:
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

    # ---- results ---------------------------------------------------------------------------------

    def market_frame(self) -> pd.DataFrame:
        """Return the per-tick market state recorded so far, one row per (tick, market)."""
        return self.recorder.market_frame()

    def market_history(self) -> dict[str, np.ndarray]:
        """Return the market table so far as (tick + 1, m) read-only views, one per column."""
        return self.recorder.market_history()

    def account_rows(self, accounts: np.ndarray) -> dict[str, np.ndarray]:
        """Return the sampled-account columns of ``accounts`` at this block (see
        :meth:`engine.recorder.Recorder.account_rows`)."""
        return self.recorder.account_rows(accounts)

    def onsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (ticks, accounts) of every breach onset so far, int64 arrays."""
        return self.recorder.onsets()

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
        frame = self.events.to_frame() if events is None else events
        return self.recorder.labelled_accounts(frame, self.steps)

    def policy_frame(self) -> pd.DataFrame:
        """Return the policy's state per (tick, market): accounts scored, fallback reason
        (:class:`engine.forecast.Fallback`), margin calls, notional de-risked, gating, accounts
        with an add-on, and the market multipliers of MM and IM."""
        return self.recorder.policy_frame(self.policy.table, POLICY_COLUMNS)

    def account_frame(self) -> pd.DataFrame:
        """Return every account's final balances and positions (quote/base quantums)."""
        return self.recorder.account_frame()

    def summary(self) -> dict[str, float | int]:
        """Return headline totals of the run, in quote units."""
        extra: dict[str, float | int] = {}
        if self.vault is not None:
            extra.update(self.vault.summary())
        if any(mk.fee_pool_absorbs for mk in self.venue.markets):
            extra["fee_pool_paid"] = float(self.liquidator.social.fee_pool_paid.sum() / 1e6)
        return {**self.recorder.summary(self.policy.summary()), **extra}
