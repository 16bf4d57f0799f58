"""What the ledger is worth at the current marks: position values, requirements, pool equity,
and what market orders would fill at.

Functions of ``(ledger, market, venue)`` and the policy's :class:`RequirementScale`; none
changes state. A *pool* is what margins a position: an account's cross pool (its quote balance
plus every position's value) or one isolated position (its own quote balance plus its value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.book import Book
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.rows import row_sum
from engine.state import Ledger
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64
from engine.venue import VenueModel

ALL = slice(None)
"""Row selector for every account (a view, no copy)."""


@dataclass(slots=True)
class MarginSnapshot:
    """Margin state of every pool at one tick (quote quantums)."""

    cross_equity: np.ndarray  # float64 (n,)
    cross_mm: np.ndarray  # int64 (n,)
    iso_at: np.ndarray | None  # int64 (i,): the positions of the isolated accounts among rows
    iso_equity: np.ndarray | None  # float64 (i, m) of those accounts, None when none is isolated
    iso_mm: np.ndarray | None  # int64 (i, m)
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


def margin_of(
    sizes: np.ndarray,
    rows: np.ndarray | slice,
    initial: bool,
    market: MarketState,
    venue: VenueModel,
    scale: RequirementScale,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (value float64, notional int64, IM or MM int64), each (r, m), of positions
    ``sizes`` (r, m) of accounts ``rows`` at the mark, under the policy's multipliers."""
    value = sizes * market.mark_q
    notional = as_int64(np.rint(np.abs(value)))
    req = np.empty(sizes.shape, np.int64)
    for k, r in enumerate(venue.requirements):
        ctx = market.margin_context(k)
        if initial:
            req[:, k] = r.requirements(notional[:, k], sizes[:, k], ctx)[0]
        else:
            req[:, k] = r.maintenance(notional[:, k], sizes[:, k], ctx)
    return value, notional, scale.scale(req, rows, initial)


def margin_rows(
    ledger: Ledger,
    rows: np.ndarray | slice,
    market: MarketState,
    venue: VenueModel,
    scale: RequirementScale,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (value, notional, MM), each (len(rows), m), of the accounts ``rows`` (an array of
    ids or ``ALL``, no copy) at the mark."""
    return margin_of(ledger.size[rows], rows, False, market, venue, scale)


def evaluate(
    ledger: Ledger,
    rows: np.ndarray | slice,
    market: MarketState,
    venue: VenueModel,
    scale: RequirementScale,
    any_isolated: bool,
) -> MarginSnapshot:
    """Compute equity and maintenance margin of the pools of ``rows``."""
    sizes = ledger.size[rows]
    value, _, mm = margin_of(sizes, rows, False, market, venue, scale)
    quote = ledger.quote[rows]
    total_value, total_mm = row_sum(value), row_sum(mm)
    if not any_isolated:
        return MarginSnapshot(quote + total_value, total_mm, None, None, None, value, sizes)
    cross = ledger.cross[rows]
    # Isolated pools are kept for the isolated accounts only (a cross account's have no
    # positions, so no requirement).
    iso = np.flatnonzero(~cross)
    iso_ids = iso if isinstance(rows, slice) else rows[iso]
    # Row sums masked after summing: the same numbers as summing masked rows, fewer copies.
    return MarginSnapshot(
        quote + np.where(cross, total_value, 0.0),
        np.where(cross, total_mm, 0),
        iso,
        ledger.iso_quote[iso_ids].astype(np.float64) + value[iso],
        mm[iso],
        value,
        sizes,
    )


def pool_equity(ledger: Ledger, rows: np.ndarray, k: int, market: MarketState) -> np.ndarray:
    """Return the current equity of the pools that margin accounts ``rows`` in market ``k``."""
    sizes = ledger.size[rows]
    mark_q = market.mark_q
    own = sizes[:, k] * mark_q[k]
    # Column by column: the same sum as (sizes * mark).sum(axis=1), without the (r, m) copy.
    total = sizes[:, 0] * mark_q[0]
    for j in range(1, mark_q.size):
        total += sizes[:, j] * mark_q[j]
    return np.where(ledger.cross[rows], ledger.quote[rows] + total, ledger.iso_quote[rows, k] + own)


def equity(ledger: Ledger, accounts: np.ndarray | slice, value: np.ndarray) -> np.ndarray:
    """Return accounts' equity in quote quantums (all pools), float64."""
    return ledger.quote[accounts] + row_sum(ledger.iso_quote[accounts]) + row_sum(value)


def exposure(sizes: np.ndarray, notional: np.ndarray, venue: VenueModel) -> np.ndarray:
    """Return the quote quantums of headroom a uniform adverse relative move of 1 uses up:
    the loss on the positions plus the growth of MM (bounded by its largest rate)."""
    # Column by column: the same sums as (notional * rates).sum(axis=1), without (r, m) copies.
    out = np.zeros(sizes.shape[0])
    for k, req in enumerate(venue.requirements):
        out += notional[:, k] * (1.0 + np.minimum(req.max_mm_rate(np.abs(sizes[:, k])), 1.0))
    return out


def book_fills(
    book: Book,
    k: int,
    dsize: np.ndarray,
    market: MarketState,
    venue: VenueModel,
    sent: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (average fills in quote quantums per base quantum, signed taker notional in
    quote units) of market orders of ``dsize`` base quantums sent in order into market k.

    Fills walk the book (:class:`engine.book.Book`) and are rounded to the tick against the
    taker. ``sent`` marks the orders that will reach the book (see ``Book.fills``). Nothing
    is committed: pass the notional of the orders that do trade to ``book.consume``.
    """
    taker_usd = dsize * (market.mark_q[k] / QUOTE_QUANTUMS_PER_UNIT)
    fill, _ = book.fills(k, taker_usd, float(market.index_now[k]), sent)
    tick = venue.tick_size[k]
    fill = np.maximum(round_to_tick(fill, tick, up=dsize > 0), tick)
    return fill * venue.price_scale[k], taker_usd


def insurance_available(ledger: Ledger, k: int, market: MarketState, venue: VenueModel) -> int:
    """Return what market k's insurance fund may still pay out in this block: its balance less
    its floor, within the per-block cap and the cap over the run."""
    limit = fund_limit(
        venue,
        k,
        int(ledger.insurance[k]),
        int(market.insurance_paid_block[k]),
        int(market.insurance_paid_total[k]),
    )
    return max(limit, 0)


def fund_limit(venue: VenueModel, k: int, balance: int, paid_block: int, paid_run: int) -> int:
    """Return what market k's insurance fund holding ``balance`` may pay, having paid
    ``paid_block`` this block and ``paid_run`` over the run: the balance less its floor,
    within the per-block cap and the cap over the run (negative when a cap is passed)."""
    limit = balance - int(venue.insurance_floor[k])
    cap = int(venue.insurance_cap[k])
    if cap > 0:
        limit = min(limit, cap - paid_block)
    total = int(venue.insurance_total_cap[k])
    if total >= 0:
        limit = min(limit, total - paid_run)
    return limit
