"""Auto-deleveraging: offsetting a bankrupt position against opposite-side traders.

Counterparties take the bankrupt position at its bankruptcy price, in one of two orders (the
market's ``adl_order``):

* ``ranked`` — by profit x leverage for winners and profit / leverage for losers (BitMEX,
  Binance, Hyperliquid), ties by account id; positions are valued at the mark, or at the
  previous oracle price (``adl_rank_price``, Hyperliquid). The ranking of each (market, side)
  is kept for ``ADL_REFRESH_TICKS`` blocks (venues publish the queue periodically);
  counterparties' live sizes are re-read at each use.
* ``walk`` — dYdX's: the accounts holding the opposite side, in account order, from a
  pseudo-random offset, each taking what it holds, at most ``adl_max_candidates`` of them per
  deleveraging. The offset is a draw keyed by (block, bankrupt account), so paired runs walk
  alike wherever they agree.

The market maker takes what the counterparties cannot (on dYdX the rest would stay with the
subaccount until a later block; the engine closes it at once, see docs/venues.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.draws import Draws, Purpose
from engine.events import NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger
from engine.units import as_int64
from engine.valuation import pool_equity
from engine.venue import MAKER, VenueModel

ADL_REFRESH_TICKS = 4


@dataclass(slots=True)
class _Ranking:
    """ADL candidates of one (market, side) in a block: their negated scores and the sorted
    head of the ranking computed so far."""

    accounts: np.ndarray
    neg_score: np.ndarray
    prefix: np.ndarray


class Deleveraging:
    """Owns the ADL rankings; trades bankrupt units against their counterparties."""

    def __init__(
        self,
        ledger: Ledger,
        events: EventLog,
        market: MarketState,
        venue: VenueModel,
        draws: Draws | None = None,
    ) -> None:
        self.ledger = ledger
        self.events = events
        self.market = market
        self.venue = venue
        self.draws = draws if draws is not None else Draws(np.random.SeedSequence(0), 1)
        """Source of the walk's offsets (a run passes its own; a bare liquidator gets a fixed
        stream)."""
        self._rank: dict[tuple[int, int], _Ranking] = {}

    def begin_block(self) -> None:
        """Forget the rankings every ``ADL_REFRESH_TICKS`` blocks (between refreshes the
        ranking's accounts are re-read live: a position closed or flipped since is skipped,
        and the maker backs up whatever the ranked accounts cannot take)."""
        if self.market.t % ADL_REFRESH_TICKS == 0:
            self._rank.clear()

    def ranking(self, k: int, side: int, count: int) -> np.ndarray:
        """Return at least the ``count`` best ADL candidates holding ``side`` in market k, best
        first (all of them when there are fewer).

        Scores are computed once per block and side; only the prefix that deleveraging reaches
        is sorted (a partition finds it), so a block's ADL costs O(accounts), not
        O(accounts log accounts), however deep the book of candidates.
        """
        key = (k, side)
        cached = self._rank.get(key)
        if cached is None:
            led = self.ledger
            col = led.size[:, k]
            cand = np.flatnonzero(col > 0 if side > 0 else col < 0)
            cand = cand[~led.is_maker[cand]]
            mark_value = col[cand] * self.market.mark_q[k]
            value = mark_value
            if self.venue.markets[k].adl_rank_price == "previous_oracle":
                price_q = self.market.oracle_previous[k] * self.venue.price_scale[k]
                value = col[cand] * price_q
            entry = led.entry[cand, k]
            pnl_ratio = (value - entry) / np.maximum(np.abs(entry), 1.0)
            equity = pool_equity(led, cand, k, self.market) + (value - mark_value)
            equity = np.maximum(equity, 1.0)
            leverage = np.maximum(np.abs(value) / equity, 1e-12)
            score = np.where(pnl_ratio > 0, pnl_ratio * leverage, pnl_ratio / leverage)
            cached = _Ranking(cand, -score, np.empty(0, np.int64))
            self._rank[key] = cached
        cand, neg_score, prefix = cached.accounts, cached.neg_score, cached.prefix
        if prefix.size >= min(count, cand.size):
            return prefix
        if count >= cand.size:
            sel = np.arange(cand.size)
        else:
            # Everything at least as good as the count-th best, ties included, so the sorted
            # prefix is exactly the head of the full ranking.
            kth = np.partition(neg_score, count - 1)[count - 1]
            sel = np.flatnonzero(neg_score <= kth)
        prefix = cand[sel][np.lexsort((cand[sel], neg_score[sel]))]
        cached.prefix = prefix
        return prefix

    def deleverage(
        self,
        rows: np.ndarray,
        k: int,
        dsizes: np.ndarray,
        bankruptcies: np.ndarray,
    ) -> tuple[np.ndarray, int]:
        """Offset each unit's ``dsize`` against opposite-side accounts at its bankruptcy price,
        in order, exactly as deleveraging them one after another would; return (the
        counterparties, the notional deleveraged in quote quantums).

        All units close the same side. Ranked: the best-ranked opposite positions are reduced
        first and unit u takes the part of the queue after what the units before it took;
        walked: each unit walks its own queue over the sizes the units before it left. The
        market maker takes what the queue cannot. Each counterparty pays its share of the
        unit's bankruptcy quote (float shares, since bankruptcy x takes overflows int64); the
        unit's last counterparty takes the remainder, so every bankrupt account receives exactly
        its bankruptcy quote.
        """
        side_closed = -1 if dsizes[0] > 0 else 1  # side of the bankrupt positions
        needs = np.abs(dsizes).astype(np.int64)
        if self.venue.markets[k].adl_order == "walk":
            walked = self._walk_all(rows, k, dsizes, bankruptcies)
            if walked is not None:
                return walked
            # Two units reached the same counterparty: one trade per unit, in order, so that
            # its entry is rounded as the venue would round it.
            chosen, notional = [], 0
            holders = self._holders(k, -side_closed, slice(None))
            for u in range(rows.size):
                queue = self._walked(int(rows[u]), k, int(needs[u]), np.flatnonzero(holders))
                c, n = self._offset(
                    rows[u : u + 1], k, dsizes[u : u + 1], bankruptcies[u : u + 1], queue
                )
                # Only this unit's counterparties changed: the next walk sees their sizes.
                holders[c] = self._holders(k, -side_closed, c)
                chosen.append(c)
                notional += n
            return np.unique(np.concatenate(chosen)), notional
        queue = self._ranked(k, -side_closed, int(needs.sum()))
        return self._offset(rows, k, dsizes, bankruptcies, queue)

    def _walk_all(
        self, rows: np.ndarray, k: int, dsizes: np.ndarray, bankruptcies: np.ndarray
    ) -> tuple[np.ndarray, int] | None:
        """Walk every unit over the sizes the ones before it left, then trade them all at once;
        return what :meth:`deleverage` returns, or None (nothing traded) when two units reach
        the same counterparty (the maker aside): its trades must then run one by one.

        The ledger, the events and their order are those of walking and trading unit by unit.
        """
        led = self.ledger
        side_closed = -1 if dsizes[0] > 0 else 1
        col = led.size[:, k]
        cand = np.flatnonzero(col < 0 if side_closed > 0 else col > 0)  # the walked side
        cand = cand[~led.is_maker[cand]]
        left = np.abs(col[cand])  # what each holds once the units before have taken theirs
        # Holders an earlier unit closed out leave the walk: a unit walks the compacted list,
        # whose entry q is cand[q + (closed positions p with p - rank(p) <= q)].
        closed: list[int] = []
        shift = np.empty(0, np.int64)
        most = self.venue.markets[k].adl_max_candidates
        prices = np.abs(bankruptcies) / np.abs(dsizes)
        parts: list[tuple[np.ndarray, ...]] = []
        for u in range(rows.size):
            need = int(abs(dsizes[u]))
            live = cand.size - len(closed)
            pos = covered = np.empty(0, np.int64)
            if live:
                start = int(self._offset_uniform(int(rows[u])) * live)
                visited = live if not most else min(most, live)
                q = (start + np.arange(visited)) % live  # the walk wraps around the list
                pos = q + np.searchsorted(shift, q, side="right") if closed else q
                covered = np.cumsum(left[pos])
                stop = int(np.searchsorted(covered, need, side="left")) + 1
                pos, covered = pos[:stop], covered[:stop]
            who, takes, shares = _pieces_one(need, int(bankruptcies[u]), cand[pos], covered)
            parts.append((who, takes, shares))
            if pos.size:
                left[pos] -= takes[: pos.size]
                out = pos[left[pos] == 0]
                if out.size:
                    closed = sorted([*closed, *out.tolist()])
                    shift = np.asarray(closed, np.int64) - np.arange(len(closed))
        who_all = np.concatenate([p[0] for p in parts])
        others = who_all[who_all != MAKER]
        if np.unique(others).size < others.size:
            return None
        takes_all = np.concatenate([p[1] for p in parts])
        shares_all = np.concatenate([p[2] for p in parts])
        taken = who_all != MAKER
        led.trade(who_all[taken], k, side_closed * takes_all[taken], -shares_all[taken])
        for who, takes, shares in parts:  # the maker's trades, in order
            mine = who == MAKER
            if mine.any():
                led.trade(np.array([MAKER]), k, side_closed * takes[mine], -shares[mine])
        led.trade(rows, k, dsizes, bankruptcies)
        # Events as unit by unit: the unit's row, then its counterparties'.
        count = np.array([1 + p[0].size for p in parts])
        head = np.cumsum(count) - count
        unit_of = np.repeat(np.arange(rows.size), count)
        is_head = np.zeros(unit_of.size, bool)
        is_head[head] = True
        account = np.empty(unit_of.size, np.int64)
        account[head] = rows
        account[~is_head] = who_all
        size = np.empty(unit_of.size, np.int64)
        size[head] = dsizes
        size[~is_head] = side_closed * takes_all
        amount = np.empty(unit_of.size, np.int64)
        amount[head] = bankruptcies
        amount[~is_head] = -shares_all
        other = np.where(is_head, NOBODY, rows[unit_of])
        self.events.add(
            self.market.t, EventKind.ADL, account, k, other, size, amount, prices[unit_of]
        )
        return np.unique(who_all), int(np.abs(bankruptcies).sum())

    def _ranked(self, k: int, side: int, total: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (the best-ranked accounts holding ``side``, the running total of what they
        hold), long enough to cover ``total`` base quantums when they can."""
        col = self.ledger.size[:, k]
        # Grow the head of the ranking until it covers every unit's need (usually a few accounts).
        count = 64
        while True:
            ranked = self.ranking(k, side, count)
            live = col[ranked]
            avail = np.where(np.sign(live) == side, np.abs(live), 0)
            covered = np.cumsum(avail)
            have = int(covered[-1]) if covered.size else 0
            if have >= total or ranked.size < count:
                return ranked, covered
            count *= 4

    def _holders(self, k: int, side: int, rows: np.ndarray | slice) -> np.ndarray:
        """Return which accounts of ``rows`` hold ``side`` in market k (the maker never)."""
        return (np.sign(self.ledger.size[rows, k]) == side) & ~self.ledger.is_maker[rows]

    def _walked(
        self, row: int, k: int, need: int, cand: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (the accounts a dYdX walk for ``row`` visits, the running total of what they
        hold): the holders ``cand`` of the walked side (ascending ids) from a pseudo-random
        offset, at most ``adl_max_candidates`` of them, cut where they cover ``need``."""
        col = self.ledger.size[:, k]
        if cand.size == 0:
            return cand, np.zeros(0, np.int64)
        start = int(self._offset_uniform(row) * cand.size)
        most = self.venue.markets[k].adl_max_candidates
        visited = cand.size if not most else min(most, cand.size)
        # The walk wraps around the end of the account list.
        order = cand[(start + np.arange(visited)) % cand.size]
        covered = np.cumsum(np.abs(col[order]))
        stop = int(np.searchsorted(covered, need, side="left")) + 1
        return order[:stop], covered[:stop]

    def _offset_uniform(self, row: int) -> float:
        """Return the walk's uniform for bankrupt account ``row`` at this block: entry ``row``
        of the block's table of uniforms."""
        return self.draws.block_uniform(Purpose.DELEVERAGING_OFFSET, self.market.t, row)

    def _offset(
        self,
        rows: np.ndarray,
        k: int,
        dsizes: np.ndarray,
        bankruptcies: np.ndarray,
        queue: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """Trade the units against the queue (accounts, running total of what they hold) in
        order, the maker taking what the queue cannot; return (the counterparties, the notional
        deleveraged in quote quantums)."""
        led = self.ledger
        side_closed = -1 if dsizes[0] > 0 else 1
        needs = np.abs(dsizes).astype(np.int64)
        unit, who, takes, shares = _pieces(dsizes, bankruptcies, queue)
        # One trade per counterparty (a counterparty reached by several units trades once, with
        # the sum: the same sizes and balances as one trade per unit).
        chosen, inverse = np.unique(who, return_inverse=True)
        dsize_total = np.zeros(chosen.size, np.int64)
        dquote_total = np.zeros(chosen.size, np.int64)
        np.add.at(dsize_total, inverse, side_closed * takes)
        np.add.at(dquote_total, inverse, -shares)
        led.trade(chosen, k, dsize_total, dquote_total)
        led.trade(rows, k, dsizes, bankruptcies)
        prices = np.abs(bankruptcies) / needs
        t = self.market.t
        self.events.add(t, EventKind.ADL, rows, k, NOBODY, dsizes, bankruptcies, prices)
        self.events.add(
            t, EventKind.ADL, who, k, rows[unit], side_closed * takes, -shares, prices[unit]
        )
        return chosen, int(np.abs(bankruptcies).sum())


def _pieces(
    dsizes: np.ndarray, bankruptcies: np.ndarray, queue: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the units' needs (in order) against the queue (accounts, running total of what they
    hold), the maker taking what the queue cannot; return per piece (its unit, its
    counterparty, the base quantums taken, the quote the counterparty pays)."""
    needs = np.abs(dsizes).astype(np.int64)
    ends = np.cumsum(needs)  # unit u covers [ends[u] - needs[u], ends[u]) of the queue
    total = int(ends[-1])
    ranked, covered = queue
    have = int(covered[-1]) if covered.size else 0
    # Cut the queue where a unit's need or an account's position ends: each piece is one
    # (unit, counterparty) take; beyond what ranked accounts hold, the maker takes.
    cuts = np.unique(np.concatenate([[0], ends, np.minimum(covered, total)]))
    start, stop = cuts[:-1], cuts[1:]
    unit = np.searchsorted(ends, start, side="right")
    slot = np.searchsorted(covered, start, side="right")
    who = np.where(
        start < have,
        ranked[np.minimum(slot, max(ranked.size - 1, 0))] if ranked.size else MAKER,
        MAKER,
    )
    takes = (stop - start).astype(np.int64)
    shares = as_int64(np.floor(bankruptcies[unit] * (takes / needs[unit])))
    last = np.r_[unit[1:] != unit[:-1], True]
    paid = np.zeros(dsizes.size, np.int64)
    np.add.at(paid, unit[~last], shares[~last])
    shares[last] = bankruptcies[unit[last]] - paid[unit[last]]
    return unit, who, takes, shares


def _pieces_one(
    need: int, bankruptcy: int, order: np.ndarray, covered: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_pieces` of one unit against a queue whose every account holds something:
    (counterparties, base quantums taken, quote paid), the same numbers with fewer steps."""
    have = int(covered[-1]) if covered.size else 0
    takes = np.diff(np.minimum(covered, need), prepend=0)
    who = order
    if have < need:  # the maker takes the rest
        who = np.append(order, MAKER)
        takes = np.append(takes, need - have)
    shares = as_int64(np.floor(bankruptcy * (takes / need)))
    shares[-1] = bankruptcy - int(shares[:-1].sum())
    return who, takes.astype(np.int64, copy=False), shares
