"""Liquidation episodes of each unit: when it entered liquidation and when it was last liquidated.

Two venue rules need a unit's history, not only its margin now:

- **Drift** keeps an account "being liquidated" from the block it breaches maintenance margin
  until total collateral plus buffer covers the requirement plus buffer, even once it is back
  above maintenance (``liquidation.stay_until_buffer``); its time throttle counts from the
  episode's start.
- **Hyperliquid** waits 30 seconds between two 20% liquidation orders of one position
  (``liquidation.cooldown_ms``).

A unit is a cross pool (one per account) or an isolated position (one per account and market).
The arrays exist only when some market uses the rule.
"""

from __future__ import annotations

import numpy as np

from engine.market import MarketState
from engine.rows import row_any
from engine.rules import Batch
from engine.state import Ledger
from engine.venue import VenueModel

_NONE = np.empty(0, np.int64)


class Episodes:
    """Per-unit liquidation history for the rules that need it."""

    def __init__(self, ledger: Ledger, market: MarketState, venue: VenueModel) -> None:
        self.ledger = ledger
        self.market = market
        self.venue = venue
        n, m = ledger.size.shape
        self.cooldown_ticks = np.array(
            [-(-mk.liquidation.cooldown_ms // venue.tick_ms) for mk in venue.markets], np.int64
        )
        """Blocks between two liquidations of one unit, per market (at most 1: no wait)."""
        self._last: np.ndarray | None = None
        if (self.cooldown_ticks > 1).any():
            self._last = np.full((n, m), np.iinfo(np.int64).min // 2)
        self.sticky = np.array([mk.liquidation.stay_until_buffer for mk in venue.markets])
        """Markets whose units stay in liquidation until the buffer is covered."""
        self._start: tuple[np.ndarray, np.ndarray] | None = None
        """Block each cross pool / isolated position entered liquidation (-1: it is not in)."""
        if self.sticky.any():
            self._start = (np.full(n, -1, np.int64), np.full((n, m), -1, np.int64))
        self._members = _NONE
        """Sorted accounts that may have a unit in liquidation (a superset: pruned each block),
        so a block reads those rows, not the whole (n, m) table."""
        self._entered: list[np.ndarray] = []

    # ---- Hyperliquid's cooldown -------------------------------------------------------------

    def rested(self, rows: np.ndarray, k: int) -> np.ndarray | None:
        """Return which units of market k have waited out the cooldown (None: no cooldown), and
        count them as liquidated now — unless earlier liquidations of the block lift one out of
        breach, which then waits out the cooldown too (a block or two early at most)."""
        if self._last is None or self.cooldown_ticks[k] <= 1:
            return None
        t = self.market.t
        ok = t - self._last[rows, k] >= self.cooldown_ticks[k]
        self._last[rows[ok], k] = t
        return ok

    # ---- Drift's exit rule ------------------------------------------------------------------

    def in_liquidation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the units in liquidation: (accounts, markets (-1 for a cross pool), whether
        each is a cross pool, the block each entered). Units with no position are forgotten."""
        if self._start is None:
            return _NONE, _NONE, np.empty(0, bool), _NONE
        cross, iso = self._start
        if self._entered:
            self._members = np.unique(np.concatenate([self._members, *self._entered]))
            self._entered = []
        members = self._members
        sizes = self.ledger.size[members]
        c = cross[members]
        c[~row_any(sizes != 0)] = -1
        cross[members] = c
        sub = iso[members]
        sub[sizes == 0] = -1
        iso[members] = sub
        self._members = members = members[(c >= 0) | row_any(sub >= 0)]
        c = cross[members]
        sub = iso[members]
        rows = members[c >= 0]
        at, iso_mkt = np.nonzero(sub >= 0)
        return (
            np.concatenate([rows, members[at]]),
            np.concatenate([np.full(rows.size, -1, np.int64), iso_mkt]),
            np.r_[np.ones(rows.size, bool), np.zeros(at.size, bool)],
            np.concatenate([c[c >= 0], sub[at, iso_mkt]]),
        )

    def staying(self, b: Batch, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (which units of ``b`` stay in liquidation though above maintenance margin:
        they entered it before and equity plus buffer does not cover MM plus buffer yet, as
        Drift's margin shortage says; which have entered it and covered that). Changes nothing:
        the liquidator forgets the second kind with :meth:`forget` when their turn comes."""
        if self._start is None or not self.sticky[k]:
            none = np.zeros(len(b), bool)
            return none, none
        cross, iso = self._start
        pooled = self.ledger.cross[b.rows]
        marked = np.where(pooled, cross[b.rows], iso[b.rows, k]) >= 0
        buffer = self.venue.markets[k].liquidation.buffer_ratio
        short = b.shortage(buffer, buffer_on_losses=True) > 0
        still = marked & short & (b.size != 0) & (b.tmmr > 0)
        return still, marked & ~still

    def forget(self, rows: np.ndarray, k: int) -> None:
        """Take units of market k out of liquidation (they covered the buffer)."""
        if self._start is None or not self.sticky[k] or rows.size == 0:
            return
        cross, iso = self._start
        pooled = self.ledger.cross[rows]
        cross[rows[pooled]] = -1
        iso[rows[~pooled], k] = -1

    def enter(self, rows: np.ndarray, k: int) -> None:
        """Mark units of market k as in liquidation from this block (if not already)."""
        if self._start is None or not self.sticky[k]:
            return
        cross, iso = self._start
        t = self.market.t
        pooled = self.ledger.cross[rows]
        c, i = rows[pooled], rows[~pooled]
        cross[c] = np.where(cross[c] >= 0, cross[c], t)
        iso[i, k] = np.where(iso[i, k] >= 0, iso[i, k], t)
        self._entered.append(np.asarray(rows, np.int64))


class Turns:
    """Drift's "being liquidated" state changed at each unit's turn in a batched liquidation:
    units found to have covered their buffer are forgotten once their turn has passed (a unit
    an ADL reaches before its turn is read again instead), and units liquidated enter it."""

    def __init__(self, episodes: Episodes, k: int) -> None:
        self.episodes, self.k = episodes, k
        self.pos: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []

    def wait(self, pos: np.ndarray, rows: np.ndarray) -> None:
        """Hold units that covered their buffer until their turn (their places ``pos``)."""
        if rows.size:
            self.pos.append(pos)
            self.rows.append(rows)

    def drop_after(self, place: int) -> None:
        """Forget the waiting units after ``place``: they are read again."""
        if self.rows:
            pos, rows = np.concatenate(self.pos), np.concatenate(self.rows)
            self.pos, self.rows = [pos[pos <= place]], [rows[pos <= place]]

    def reach(self, place: int, done: np.ndarray, liquidated: np.ndarray) -> None:
        """Pass every turn up to ``place``: forget the waiting units there and ``done``, then
        let ``liquidated`` enter the state."""
        waiting = _NONE
        if self.rows:
            pos, rows = np.concatenate(self.pos), np.concatenate(self.rows)
            waiting = rows[pos <= place]
            self.pos, self.rows = [pos[pos > place]], [rows[pos > place]]
        self.episodes.forget(np.concatenate([waiting, done]), self.k)
        self.episodes.enter(liquidated, self.k)
