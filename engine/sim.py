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
   maintenance margin is evaluated and breach clocks kept (:mod:`engine.breaches`), and keepers
   act on breaches ``latency_ticks`` old, at most ``capacity_per_block`` per block, most
   under-margined first (:mod:`engine.liquidation`);
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
from engine.breaches import (
    CROSS_POOL,
    BreachFinder,
    accounts_below_maintenance,
    negative_equity,
)
from engine.config import SimConfig
from engine.deposits import TopUps
from engine.draws import Draws, Purpose
from engine.events import EventKind, EventLog
from engine.forecast import Forecaster
from engine.funding import settle_funding
from engine.keepers import keeper_order
from engine.liquidation import BlockStats, Liquidator
from engine.margin import RequirementScale
from engine.market import MarketState, PriceStep, refresh_open_interest
from engine.orders import OrderFlow
from engine.policy import POLICY_COLUMNS, Policy
from engine.population import populate
from engine.prices import IndexPath, apply_shocks, simulate_index
from engine.recorder import LIQUIDATION_MAP_DISTANCES, MARKET_COLUMNS, Recorder
from engine.screen import BreachScreen
from engine.state import Ledger
from engine.traders import Traders
from engine.units import QUOTE_QUANTUMS_PER_UNIT, LedgerOverflowError
from engine.valuation import ALL, MarginSnapshot, evaluate
from engine.vault import Vault
from engine.venue import MAKER, VenueModel

__all__ = ["LIQUIDATION_MAP_DISTANCES", "MARKET_COLUMNS", "Simulation"]


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
            ledger, self.trader_type = populate(
                cfg, self.market, self.venue, self.traders, rng_accounts
            )
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
        self.any_isolated = bool((~ledger.cross).any())
        refresh_open_interest(self.market, ledger, self.venue)

        self.requirement_scale = RequirementScale(m)
        opening = evaluate(ledger, ALL, self.market, self.venue, RequirementScale(m), True)
        self.opening_below_maintenance = accounts_below_maintenance(opening, ledger.is_maker)
        """Accounts the starting snapshot puts below the venue's maintenance margin (a snapshot
        drawn for other rules: keepers liquidate them from the first blocks, crash or not)."""
        self.breach_screen = BreachScreen(n, self.venue, self.market.mark)
        self.breaches = BreachFinder(
            ledger,
            self.market,
            self.venue,
            self.requirement_scale,
            self.breach_screen,
            self.any_isolated,
        )
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
        finder = self.breaches
        breached, units = finder.find(self._track_onsets)
        units = finder.with_units_in_liquidation(units, self.liquidator.episodes.in_liquidation())
        if units[0].size == 0:
            return self._quiet_block, breached
        stats = BlockStats.zeros(self.m)
        acct, mkt, since, ratio = units
        t = self.market.t
        order = keeper_order(acct, mkt, ratio, self.market.keeper_capacity)
        # A cross pool's market is found only for the pools keepers reach (see CROSS_POOL).
        pools = order[mkt[order] == CROSS_POOL]
        if pools.size:
            mkt[pools] = finder.cross_targets(acct[pools])
        self.liquidator.begin_block()
        for k in range(self.m):
            sel = order[mkt[order] == k]
            if sel.size:
                self.liquidator.liquidate_market(acct[sel], k, t - since[sel], stats)
        self.liquidator.end_block()
        return stats, breached

    def _track_onsets(self, rows: np.ndarray | slice, in_breach: np.ndarray) -> None:
        """Record the accounts of ``rows`` that entered breach at this block (for labels); the
        policy counts them and each rolls whether it tops up."""
        ids = self.recorder.track_onsets(rows, in_breach)
        if ids is not None:
            self.policy.observe_onsets(self.t, ids)
            self.topups.schedule(self.t, ids, Purpose.BREACH_TOPUP)

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

    def left_at_end(self) -> dict[str, float | int]:
        """Return what the run leaves unresolved: traders still below maintenance margin (not
        yet liquidated) and the negative equity of traders' pools, in quote units — loss not
        yet realized as bad debt, which closing at the mark would realize at the least."""
        snap = evaluate(
            self.ledger, ALL, self.market, self.venue, self.requirement_scale, self.any_isolated
        )
        excluded = self.ledger.is_maker.copy()
        if self.vault is not None:  # the vault's own loss is its PnL
            excluded[self.vault.row] = True
        return {
            "below_maintenance_at_end": accounts_below_maintenance(snap, excluded),
            "deficit_at_end": negative_equity(snap, excluded) / QUOTE_QUANTUMS_PER_UNIT,
        }

    def summary(self) -> dict[str, float | int]:
        """Return headline totals of the run, in quote units."""
        extra: dict[str, float | int] = {
            "opening_below_maintenance": self.opening_below_maintenance,
            **self.left_at_end(),
        }
        if self.vault is not None:
            extra.update(self.vault.summary())
        if any(mk.fee_pool_absorbs for mk in self.venue.markets):
            extra["fee_pool_paid"] = float(self.liquidator.social.fee_pool_paid.sum() / 1e6)
        return {**self.recorder.summary(self.policy.summary()), **extra}
