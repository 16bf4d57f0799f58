"""Breaches: which pools are below maintenance margin, since when, and which of them keepers
can act on this block.

Each block the breach screen (:mod:`engine.screen`) picks the accounts that could be in breach;
their margin is evaluated exactly, breach clocks start and stop, and every cross pool or
isolated position in breach for the keepers' latency becomes a *unit* keepers may reach. Drift
keeps a unit in liquidation after it leaves breach until its buffer is covered
(:mod:`engine.episodes`); those units wait behind the units in breach.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.keepers import among_units
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.rows import row_any, row_argmax
from engine.screen import BreachScreen
from engine.state import Ledger
from engine.valuation import MarginSnapshot, evaluate
from engine.venue import VenueModel

Units = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Units for keepers: (accounts, markets, breach onset blocks, shortfall ratios)."""
NO_UNITS: Units = (
    np.empty(0, np.int64),
    np.empty(0, np.int64),
    np.empty(0, np.int64),
    np.empty(0),
)
CROSS_POOL = -2
"""A unit's market while not yet needed: a cross pool in breach is liquidated in the market of
its largest position, which is looked up only for the pools keepers reach this block (the
keepers' order never depends on it: an account has one cross pool)."""


def accounts_below_maintenance(snap: MarginSnapshot, is_maker: np.ndarray) -> int:
    """Return how many accounts of an evaluation of every account (``ALL``) have a pool below
    maintenance margin (makers aside)."""
    below = (snap.cross_mm > 0) & (snap.cross_equity < snap.cross_mm)
    if snap.iso_at is not None and snap.iso_equity is not None and snap.iso_mm is not None:
        below[snap.iso_at] |= row_any((snap.iso_mm > 0) & (snap.iso_equity < snap.iso_mm))
    return int((below & ~is_maker).sum())


def negative_equity(snap: MarginSnapshot, excluded: np.ndarray) -> float:
    """Return the negative equity of the pools of an evaluation of every account (``ALL``),
    summed, in quote quantums (a positive number): what closing those positions at the mark
    would leave as bad debt. ``excluded`` (bool, one per account) leaves accounts out."""
    total = float(np.minimum(snap.cross_equity, 0.0)[~excluded].sum())
    if snap.iso_at is not None and snap.iso_equity is not None:
        kept = ~excluded[snap.iso_at]
        total += float(np.minimum(snap.iso_equity[kept], 0.0).sum())
    return 0.0 - total  # (0.0 - 0.0 is 0.0, where -0.0 would print as "-0")


def shortfall(equity: np.ndarray, mm: np.ndarray) -> np.ndarray:
    """Return the shortfall ratios (MM - equity) / MM that keepers rank units by."""
    return (mm - equity) / np.maximum(mm, 1)


class BreachFinder:
    """Owns the breach clocks; lists the units keepers may reach."""

    def __init__(
        self,
        ledger: Ledger,
        market: MarketState,
        venue: VenueModel,
        scale: RequirementScale,
        screen: BreachScreen,
        any_isolated: bool,
    ) -> None:
        self.ledger = ledger
        self.market = market
        self.venue = venue
        self.scale = scale
        self.screen = screen
        self.any_isolated = any_isolated
        n, m = ledger.size.shape
        self.cross_since = np.full(n, -1, np.int64)
        self.iso_since = np.full((n, m), -1, np.int64)
        """Block each cross pool / isolated position entered breach (-1: not in breach)."""
        self.iso_clock_on = np.zeros(n, bool)
        """Accounts with an isolated position's breach clock running (some iso_since >= 0)."""

    # ---- one block -----------------------------------------------------------------------------

    def find(
        self, on_onsets: Callable[[np.ndarray | slice, np.ndarray], None]
    ) -> tuple[np.ndarray, Units]:
        """Evaluate the accounts that could be in breach; return (units in breach per market,
        the units keepers may reach: (accounts, markets, breach onsets, shortfall ratios)).
        ``on_onsets(rows, in_breach)`` is told the breach state of the evaluated accounts."""
        market, led, screen = self.market, self.ledger, self.screen
        t = market.t
        m = led.size.shape[1]
        n = led.size.shape[0]
        rows = screen.select(led, market)
        if screen.count(rows, n) == 0:
            return np.zeros(m, np.int64), NO_UNITS  # nobody can be in breach
        snap = evaluate(led, rows, market, self.venue, self.scale, self.any_isolated)
        screen.update(rows, snap, market, self.scale.mm_growth_bound())
        row_ids = np.arange(n) if isinstance(rows, slice) else rows
        maker = led.is_maker[rows]
        # Accounts outside ``rows`` cannot be in breach, and their breach clocks are already -1.
        breach_c = (snap.cross_mm > 0) & (snap.cross_equity < snap.cross_mm) & ~maker
        if snap.iso_equity is None and not breach_c.any():
            self.cross_since[rows] = -1
            on_onsets(rows, breach_c)
            return np.zeros(m, np.int64), NO_UNITS
        since = self.cross_since[rows]
        since = np.where(breach_c, np.where(since < 0, t, since), -1)
        self.cross_since[rows] = since
        ready = breach_c & (t - since >= market.keeper_latency)
        unit_row = [row_ids[ready]]
        if market.paused.any():
            unit_market = [self._largest_unpaused(snap.sizes[ready], np.abs(snap.value[ready]))]
        else:  # every cross pool in breach has a position in a market keepers can act on
            unit_market = [np.full(unit_row[0].size, CROSS_POOL, np.int64)]
        unit_since = [since[ready]]
        unit_ratio = [shortfall(snap.cross_equity[ready], snap.cross_mm[ready])]
        breached = np.zeros(m, np.int64)
        if breach_c.any():
            breached += (snap.sizes[breach_c] != 0).sum(axis=0)
        in_breach = breach_c
        iso, iso_equity, iso_mm = snap.iso_at, snap.iso_equity, snap.iso_mm
        if iso is not None and iso_equity is not None and iso_mm is not None:
            # The isolated pools of the isolated accounts among rows (a cross account's have no
            # positions); only isolated accounts ever run an isolated clock.
            breach_i = (iso_mm > 0) & (iso_equity < iso_mm) & ~maker[iso, None]
            breached += breach_i.sum(axis=0)
            any_i = row_any(breach_i)
            in_breach = breach_c.copy()
            in_breach[iso] |= any_i
            # Only accounts in breach now or with a clock running change clocks (the others'
            # stay -1): the isolated bookkeeping runs on those few rows.
            iso_ids = row_ids[iso]
            at = np.flatnonzero(any_i | self.iso_clock_on[iso_ids])
            ids, breach_at = iso_ids[at], breach_i[at]
            since_i = self.iso_since[ids]
            since_i = np.where(breach_at, np.where(since_i < 0, t, since_i), -1)
            self.iso_since[ids] = since_i
            self.iso_clock_on[ids] = row_any(since_i >= 0)
            ri, rk = np.nonzero(breach_at & (t - since_i >= market.keeper_latency))
            ri, rk = ri[~market.paused[rk]], rk[~market.paused[rk]]
            unit_row.append(ids[ri])
            unit_market.append(rk)
            unit_since.append(since_i[ri, rk])
            unit_ratio.append(shortfall(iso_equity[at[ri], rk], iso_mm[at[ri], rk]))
        on_onsets(rows, in_breach)
        acct = np.concatenate(unit_row)
        mkt = np.concatenate(unit_market)
        keep = mkt != -1  # cross pools whose every position sits in a paused market wait
        acct, mkt = acct[keep], mkt[keep]
        since = np.concatenate(unit_since)[keep]
        ratio = np.concatenate(unit_ratio)[keep]
        return breached, (acct, mkt, since, ratio)

    # ---- units ---------------------------------------------------------------------------------

    def with_units_in_liquidation(self, units: Units, episodes_units: Units) -> Units:
        """Add the units that stay in liquidation after leaving breach (Drift's buffer), given
        as (accounts, markets (-1 for a cross pool), whether pooled, entry blocks), and are not
        among ``units`` already; they wait behind every unit in breach."""
        acct, mkt, pooled, since = episodes_units
        if acct.size == 0:
            return units
        pooled = pooled.astype(bool)
        mkt = mkt.copy()
        paused = self.market.paused
        iso = ~pooled & (mkt >= 0)
        mkt[iso] = np.where(paused[mkt[iso]], -1, mkt[iso])
        shape = self.ledger.size.shape
        unit_pools = units[1] == CROSS_POOL
        if paused.any():
            mkt[pooled] = self.cross_targets(acct[pooled])
            # (no unit is a CROSS_POOL then: every cross unit's market is found)
            among = among_units(acct, mkt, units[0], units[1], shape)
        else:
            # A pool's market is its largest position's: a pool is among the units when its
            # account is (the same sizes give the same market).
            mkt[pooled] = CROSS_POOL
            is_pool_unit = np.zeros(shape[0], bool)
            is_pool_unit[units[0][unit_pools]] = True
            iso_units = ~unit_pools
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

    def cross_targets(self, rows: np.ndarray) -> np.ndarray:
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
