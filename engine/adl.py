"""Auto-deleveraging: offsetting a bankrupt position against opposite-side traders.

Counterparties are ranked by profit x leverage for winners and profit / leverage for losers
(BitMEX / Hyperliquid), ties by account id, and take the bankrupt position at its bankruptcy
price; the market maker takes what the ranked accounts cannot. The ranking of each (market,
side) is kept for ``ADL_REFRESH_TICKS`` blocks (venues publish the queue periodically);
counterparties' live sizes are re-read at each use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.events import NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger
from engine.units import as_int64
from engine.valuation import pool_equity
from engine.venue import MAKER

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

    def __init__(self, ledger: Ledger, events: EventLog, market: MarketState) -> None:
        self.ledger = ledger
        self.events = events
        self.market = market
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
            cand = np.flatnonzero((np.sign(col) == side) & ~led.is_maker)
            value = col[cand] * self.market.mark_q[k]
            entry = led.entry[cand, k]
            pnl_ratio = (value - entry) / np.maximum(np.abs(entry), 1.0)
            equity = np.maximum(pool_equity(led, cand, k, self.market), 1.0)
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

        All units close the same side. The best-ranked opposite positions are reduced first and
        the market maker takes what they cannot; unit u takes the part of the queue after what
        the units before it took. Each counterparty pays its share of the unit's bankruptcy
        quote (float shares, since bankruptcy x takes overflows int64); the unit's last
        counterparty takes the remainder, so every bankrupt account receives exactly its
        bankruptcy quote.
        """
        led = self.ledger
        side_closed = -1 if dsizes[0] > 0 else 1  # side of the bankrupt positions
        needs = np.abs(dsizes).astype(np.int64)
        ends = np.cumsum(needs)  # unit u covers [ends[u] - needs[u], ends[u]) of the queue
        total = int(ends[-1])
        col = led.size[:, k]
        # Grow the head of the ranking until it covers every unit's need (usually a few accounts).
        count = 64
        while True:
            ranked = self.ranking(k, -side_closed, count)
            live = col[ranked]
            avail = np.where(np.sign(live) == -side_closed, np.abs(live), 0)
            covered = np.cumsum(avail)
            have = int(covered[-1]) if covered.size else 0
            if have >= total or ranked.size < count:
                break
            count *= 4
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
        paid = np.zeros(rows.size, np.int64)
        np.add.at(paid, unit[~last], shares[~last])
        shares[last] = bankruptcies[unit[last]] - paid[unit[last]]
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
