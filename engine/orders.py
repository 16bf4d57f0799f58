"""Order flow: the traders' market orders, gated by initial margin, the OI cap and the policy.

Every order trades against the maker on the book (taker fee to the fee pool). A risk-increasing
order must leave equity >= IM after its fee and half spread, fit under the market's OI cap and,
in a market the predictive policy gates, is refused (the refusal is the policy's cost).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.book import Book
from engine.config import SimConfig
from engine.draws import Draws
from engine.events import FEE_POOL, NOBODY, EventKind, EventLog
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.rows import row_sum
from engine.state import Ledger, exact_sum
from engine.traders import Traders
from engine.units import as_int64, base_to_quantums
from engine.valuation import book_fills, margin_of
from engine.venue import MAKER, VenueModel


class Gate(Protocol):
    """Where the policy holds new leverage back (:class:`engine.policy.Policy` is one)."""

    gated: np.ndarray
    """bool (m,): markets where risk-increasing orders are refused this block."""

    def add_refused(self, t: int, k: int, notional: float) -> None:
        """Book the notional (quote units) of orders refused by gating at block t."""
        ...


class OrderFlow:
    """Fills the traders' orders and any other market orders (de-risking) on the book."""

    def __init__(
        self,
        cfg: SimConfig,
        traders: Traders,
        trader_type: np.ndarray,
        draws: Draws,
        ledger: Ledger,
        book: Book,
        events: EventLog,
        venue: VenueModel,
        market: MarketState,
        scale: RequirementScale,
        gate: Gate,
        last_order_tick: np.ndarray,
    ) -> None:
        self.accounts_cfg = cfg.accounts
        self.traders = traders
        self.trader_type = trader_type
        self.draws = draws
        self.ledger = ledger
        self.book = book
        self.events = events
        self.venue = venue
        self.market = market
        self.scale = scale
        self.gate = gate
        self.last_order_tick = last_order_tick
        """Block of each account's last accepted order (0: none since the start); the
        recorder reads it."""

    def order_flow(self) -> np.ndarray:
        """Place this block's orders; return int64 (2, m): accepted and rejected per market."""
        m = self.venue.m
        t = self.market.t
        counts = np.zeros((2, m), np.int64)
        led = self.ledger
        active, market_of, units, close_fraction = self.traders.orders(
            self.draws, t, self.trader_type, led.size, m
        )
        if active.size == 0:
            return counts
        # Every order's initial-margin check at once: an account sends one order a block, and
        # the trades of one market change nothing another market's checks read.
        batch = []
        for k, mk in enumerate(self.venue.markets):
            sel = market_of == k
            idx = active[sel]
            if idx.size == 0:
                continue
            base = units[sel] * self.accounts_cfg.order_size_fraction * mk.position_sigma_base
            dsize = base_to_quantums(base, mk.base_quantum_exponent)
            fraction = close_fraction[sel]
            position = led.size[idx, k]
            closing = as_int64(np.rint(-position * fraction))
            dsize = np.where(fraction > 0, closing, dsize)
            keep = dsize != 0
            batch.append((k, idx[keep], dsize[keep]))
        if not batch:
            return counts
        checks = self._margin_checks(
            np.concatenate([b[1] for b in batch]),
            np.concatenate([np.full(b[1].size, b[0], np.int64) for b in batch]),
            np.concatenate([b[2] for b in batch]),
        )
        start = 0
        for k, idx, dsize in batch:
            stop = start + idx.size
            ok = self._gate_and_cap(k, dsize, *(c[start:stop] for c in checks))
            start = stop
            counts[0, k] = int(ok.sum())
            counts[1, k] = int((~ok).sum())
            if (~ok).any():
                self.events.add(t, EventKind.ORDER_REJECTED, idx[~ok], k, NOBODY, dsize[~ok])
            idx, dsize = idx[ok], dsize[ok]
            self.last_order_tick[idx] = t
            if idx.size:
                self.market_orders(idx, k, dsize, EventKind.TRADE)
        return counts

    def market_orders(
        self, idx: np.ndarray, k: int, dsize: np.ndarray, kind: EventKind
    ) -> tuple[float, float]:
        """Fill market orders ``dsize`` of accounts ``idx`` in market k against the maker, in
        order, on the book (taker fee to the fee pool); return (the quote notional traded, what
        the takers paid to the book: impact and spread plus fees, quote units)."""
        led = self.ledger
        market, venue = self.market, self.venue
        t = market.t
        price_q, taker_usd = book_fills(self.book, k, dsize, market, venue)
        quote = as_int64(np.floor(-dsize * price_q))
        fee = as_int64(np.ceil(np.abs(quote) * venue.markets[k].taker_fee))
        # The book's impact and spread: the distance of each fill from the price the book
        # quotes around (the index), always against the taker.
        reference_q = float(market.index_now[k]) * venue.price_scale[k]
        impact = float((np.abs(dsize) * np.abs(price_q - reference_q)).sum())
        led.trade(idx, k, dsize, quote)
        led.trade(np.array([MAKER]), k, -exact_sum(dsize), -exact_sum(quote))
        self.events.add(t, kind, idx, k, MAKER, dsize, quote, price_q)
        if fee.any():
            led.credit(idx, k, -fee)
            led.add_fee_pool(k, exact_sum(fee))
            self.events.add(t, EventKind.FEE, idx, k, FEE_POOL, 0, -fee)
        self.book.consume(k, taker_usd)
        return float(np.abs(taker_usd).sum()), (impact + float(fee.sum())) / 1e6

    def passes_initial_margin(self, idx: np.ndarray, k: int, dsize: np.ndarray) -> np.ndarray:
        """Return bool (len(idx),): reducing orders pass; risk-increasing ones need equity >= IM
        after the trade (taker fee and half spread included) and room under the OI cap."""
        checks = self._margin_checks(idx, np.full(idx.size, k, np.int64), dsize)
        return self._gate_and_cap(k, dsize, *checks)

    def _margin_checks(
        self, idx: np.ndarray, ks: np.ndarray, dsize: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return, per order of account ``idx`` in market ``ks``, (whether it adds risk, whether
        equity after it covers IM, how much it adds to the account's |position|)."""
        led = self.ledger
        market = self.market
        rows = np.arange(idx.size)
        old = led.size[idx, ks]
        new = old + dsize
        increases = np.abs(new) > np.abs(old)
        held = led.size[idx]
        sizes = held.copy()
        sizes[rows, ks] = new
        _, _, im = margin_of(sizes, idx, True, market, self.venue, self.scale)
        cross = led.cross[idx]
        # Equity after the trade: today's equity less what crossing the spread and the fee cost
        # (the trade itself swaps quote for position value at the mark).
        value_now = held * market.mark_q
        fee = np.array([mk.taker_fee for mk in self.venue.markets])
        trade_cost = np.abs(dsize * market.mark_q[ks]) * (self.book.half_spread + fee)[ks]
        equity = (
            np.where(
                cross,
                led.quote[idx] + row_sum(value_now),
                led.iso_quote[idx, ks] + value_now[rows, ks],
            )
            - trade_cost
        )
        required = np.where(cross, row_sum(im), im[rows, ks])
        return increases, ~increases | (equity >= required), np.abs(new) - np.abs(old)

    def _gate_and_cap(
        self,
        k: int,
        dsize: np.ndarray,
        increases: np.ndarray,
        ok: np.ndarray,
        added: np.ndarray,
    ) -> np.ndarray:
        """Return which orders of market k pass, given their margin checks, once the policy's
        gate and the open-interest cap have had their say (in the orders' order)."""
        market = self.market
        mk = self.venue.markets[k]
        if self.gate.gated[k]:  # the predictive policy holds new leverage back
            refused = increases & ok
            if refused.any():
                notional = float(np.abs(dsize[refused] * market.mark_q[k]).sum()) / 1e6
                self.gate.add_refused(market.t, k, notional)
            ok = ok & ~increases
        if mk.oi_cap_base > 0:
            cap = base_to_quantums(mk.oi_cap_base, mk.base_quantum_exponent)
            room = cap - int(market.open_interest[k])
            ok = ok & (~increases | (np.cumsum(np.where(increases & ok, added, 0)) <= room))
        return ok
