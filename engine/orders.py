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
            idx, dsize = idx[keep], dsize[keep]
            ok = self.passes_initial_margin(idx, k, dsize)
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
        led = self.ledger
        market = self.market
        mk = self.venue.markets[k]
        old = led.size[idx, k]
        new = old + dsize
        increases = np.abs(new) > np.abs(old)
        sizes = led.size[idx].copy()
        sizes[:, k] = new
        _, _, im = margin_of(sizes, idx, True, market, self.venue, self.scale)
        cross = led.cross[idx]
        # Equity after the trade: today's equity less what crossing the spread and the fee cost
        # (the trade itself swaps quote for position value at the mark).
        value_now = led.size[idx] * market.mark_q
        trade_cost = np.abs(dsize * market.mark_q[k]) * (self.book.half_spread[k] + mk.taker_fee)
        equity = (
            np.where(
                cross,
                led.quote[idx] + row_sum(value_now),
                led.iso_quote[idx, k] + value_now[:, k],
            )
            - trade_cost
        )
        required = np.where(cross, row_sum(im), im[:, k])
        ok = ~increases | (equity >= required)
        if self.gate.gated[k]:  # the predictive policy holds new leverage back
            refused = increases & ok
            if refused.any():
                notional = float(np.abs(dsize[refused] * market.mark_q[k]).sum()) / 1e6
                self.gate.add_refused(market.t, k, notional)
            ok &= ~increases
        if mk.oi_cap_base > 0:
            cap = base_to_quantums(mk.oi_cap_base, mk.base_quantum_exponent)
            added = np.where(increases & ok, np.abs(new) - np.abs(old), 0)
            room = cap - int(market.open_interest[k])
            ok &= ~increases | (np.cumsum(added) <= room)
        return ok
