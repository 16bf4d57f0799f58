"""The market state of a run and the price step that moves it, block by block.

:class:`MarketState` is owned by the step loop. Only :class:`PriceStep` (once per block, before
anything trades) and :func:`refresh_open_interest` (after trades) write it; liquidation writes
only the insurance tallies. Every other part reads it.

Per block, the price step:

1. moves the book with the external index (a path drawn up front, see :mod:`engine.prices`);
   congestion follows the book's volatility;
2. lets the oracle report the index ``delay_ticks`` late (later under congestion), or miss the
   update (stale);
3. sets the venue's mark from its mid = index x (1 + impact left on the venue's book, see
   :mod:`engine.book`), as the market's mark model says (:mod:`engine.mark`);
4. pauses liquidations in markets whose oracle is stale or far from the mark (circuit breaker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.book import Book
from engine.config import SimConfig, VolScaledMargin
from engine.draws import Draws, Purpose
from engine.margin import MarginContext, vol_scaled_mmf_ppm
from engine.mark import MarkPrice
from engine.state import Ledger
from engine.venue import VenueModel


@dataclass(slots=True)
class MarketState:
    """Per-market state at the current block, arrays of shape (m,)."""

    t: int
    """The current block."""
    index_now: np.ndarray
    """The external index at this block (the price the book quotes around)."""
    oracle: np.ndarray
    oracle_previous: np.ndarray
    """The oracle of the block before (Hyperliquid ranks ADL at it)."""
    oracle_updated: np.ndarray
    """Block of each market's last oracle update (int64)."""
    mark: np.ndarray
    mark_q: np.ndarray
    """Mark in quote quantums per base quantum."""
    ewma_var: np.ndarray
    """EWMA variance of oracle log returns per block."""
    keeper_latency: int
    keeper_capacity: int
    oracle_seen: int = 0
    """Block of the index the oracle last reported."""
    congestion: float = 0.0
    vol_mmf_ppm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    open_interest: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    oi_notional: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Open interest x oracle, quote quantums (int64)."""
    paused: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    insurance_paid_block: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """What each insurance fund paid out in this block (the per-block cap counts it)."""
    insurance_paid_total: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """What each insurance fund paid out since the start (Drift's tier cap counts it)."""
    funding_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _contexts: list[MarginContext] | None = None

    @classmethod
    def opening(cls, cfg: SimConfig, venue: VenueModel, index_path: np.ndarray) -> MarketState:
        """Return the state at block 0: oracle and mark at the index, no pauses."""
        m = venue.m
        mark = index_path[0].copy()
        market = cls(
            t=0,
            index_now=index_path[0],
            oracle=index_path[0].copy(),
            oracle_previous=index_path[0].copy(),
            oracle_updated=np.zeros(m, np.int64),
            mark=mark,
            mark_q=mark * venue.price_scale,
            ewma_var=np.array([mk.sigma_annual**2 * venue.dt_years for mk in venue.markets]),
            keeper_latency=cfg.keepers.latency_ticks,
            keeper_capacity=cfg.keepers.capacity_per_block,
            vol_mmf_ppm=np.zeros(m, np.int64),
            open_interest=np.zeros(m, np.int64),
            oi_notional=np.zeros(m, np.int64),
            paused=np.zeros(m, bool),
            insurance_paid_block=np.zeros(m, np.int64),
            insurance_paid_total=np.zeros(m, np.int64),
            funding_rate=np.zeros(m),
        )
        update_vol_margin(market, venue)
        return market

    def margin_context(self, k: int) -> MarginContext:
        """Return the per-market inputs of margin requirements at this block."""
        if self._contexts is None:
            self._contexts = [
                MarginContext(oi_notional=int(oi), vol_mmf_ppm=int(v))
                for oi, v in zip(self.oi_notional, self.vol_mmf_ppm, strict=True)
            ]
        return self._contexts[k]

    def refresh_contexts(self) -> None:
        """Forget the margin contexts after open interest or volatility margin changed (they are
        rebuilt when next asked for: a quiet block never needs them)."""
        self._contexts = None


def update_vol_margin(market: MarketState, venue: VenueModel) -> None:
    """Set the volatility-scaled maintenance fractions from the EWMA variance."""
    if not venue.vol_markets:
        return
    for k in venue.vol_markets:
        margin = venue.markets[k].margin
        assert isinstance(margin, VolScaledMargin)
        market.vol_mmf_ppm[k] = vol_scaled_mmf_ppm(
            math.sqrt(market.ewma_var[k]), int(market.vol_mmf_ppm[k]), margin
        )
    market.refresh_contexts()


def refresh_open_interest(market: MarketState, ledger: Ledger, venue: VenueModel) -> None:
    """Read open interest from the ledger and value it at the oracle."""
    market.open_interest = ledger.open_interest
    market.oi_notional = np.rint(market.open_interest * market.oracle * venue.price_scale).astype(
        np.int64
    )
    market.refresh_contexts()


class PriceStep:
    """Moves a :class:`MarketState` to the next block along a fixed index path."""

    def __init__(
        self,
        cfg: SimConfig,
        venue: VenueModel,
        index_path: np.ndarray,
        book: Book,
        draws: Draws,
    ) -> None:
        self.oracle = cfg.oracle
        self.congestion = cfg.congestion
        self.keepers = cfg.keepers
        self.breaker = cfg.circuit_breaker
        self.venue = venue
        self.index_path = index_path
        self.book = book
        self.draws = draws
        self.mark_price = MarkPrice(cfg.markets, cfg.tick_ms, index_path[0], draws)

    def advance(self, market: MarketState) -> None:
        """Move ``market`` to block ``market.t + 1``."""
        market.t += 1
        t = market.t
        index = self.index_path[t]
        market.index_now = index
        self.book.begin_block(np.log(index / self.index_path[t - 1]))
        self._update_congestion(market)
        # The oracle never goes back in time, even when congestion lengthens its delay.
        delay = self.oracle.delay_ticks + round(
            market.congestion * self.congestion.extra_oracle_delay_ticks
        )
        market.oracle_seen = max(market.oracle_seen, t - delay, 0)
        observed = self.index_path[market.oracle_seen]
        previous_oracle = market.oracle
        market.oracle_previous = previous_oracle
        if self.oracle.stale_probability > 0:
            u = self.draws.block(Purpose.ORACLE_UPDATE, t).random(self.venue.m)
            updates = u >= self.oracle.stale_probability
            market.oracle = np.where(updates, observed, market.oracle)
            market.oracle_updated = np.where(updates, t, market.oracle_updated)
        else:
            market.oracle = observed.copy()
            market.oracle_updated[:] = t
        ret = np.log(market.oracle / previous_oracle)
        lam = self.venue.ewma_decay
        market.ewma_var = lam * market.ewma_var + (1.0 - lam) * ret**2
        update_vol_margin(market, self.venue)
        mid = index * (1.0 + self.book.deviation())
        market.mark = self.mark_price.mark(t, mid, market.oracle, index, self.book.half_spread)
        market.mark_q = market.mark * self.venue.price_scale
        cb = self.breaker
        if cb.enabled:
            age = t - market.oracle_updated
            deviation = np.abs(market.mark / market.oracle - 1.0)
            market.paused = (age > self.oracle.max_age_ticks) | (deviation > cb.max_deviation)
        market.insurance_paid_block = np.zeros(self.venue.m, np.int64)

    def _update_congestion(self, market: MarketState) -> None:
        cg = self.congestion
        keepers = self.keepers
        if not cg.enabled:
            return
        stress = float(np.max(np.sqrt(self.book.fast_var) / self.book.sigma_ref))
        market.congestion = min(max((stress - cg.vol_threshold) / cg.vol_span, 0.0), 1.0)
        market.keeper_latency = keepers.latency_ticks + round(
            market.congestion * cg.extra_latency_ticks
        )
        market.keeper_capacity = max(
            1, int(keepers.capacity_per_block * (1.0 - cg.capacity_loss * market.congestion))
        )
