"""The venue's order book per market: depth that walks with a square-root profile, refills after
being consumed, and is withdrawn by market makers when volatility spikes; price impact with a
transient part and a slower "permanent" part that arbitrage erodes.

Depth profile: the quote notional resting within a relative distance x of the mid on one side is
``D(x) = depth x (x / 1%)^2``, so a market order of notional q walks the book to
``x(q) = 1% x sqrt(q / depth)`` and fills on average at two thirds of that: impact grows with the
square root of size (the square-root law) by construction. ``depth`` is the quote notional
within 1% of the mid on each side.

Per block: market makers set a target depth ``base x clip((sigma_ref / sigma_now)^e, floor, 1)``
from a fast EWMA of the index's volatility (withdrawal is immediate, refill follows a half-life);
the half spread widens as ``base x max(1, (sigma_now / sigma_ref)^e)``; orders consume depth on
their side and move the mid; at block end the move is split into a transient part (decays with
``impact_half_life_ticks``) and a permanent part (decays with ``basis_half_life_ticks``, the
pace at which arbitrage pulls the venue back to the index). The venue's mid is the index times
(1 + transient + permanent); the index itself never sees the venue's impact.
"""

from __future__ import annotations

import math

import numpy as np

from engine.config import MarketConfig

FAST_VOL_HALF_LIFE_TICKS = 10.0
MS_PER_YEAR = 365.0 * 24 * 3600 * 1000


MID_FLOOR = 0.01
"""The lowest the venue's mid or a sell fill goes, as a share of the index: only orders hundreds
of times the book's depth get there (a shipped scenario never does), and a price at or below
zero has no meaning in the ledger."""


class Book:
    """Bid and ask depth, spread and impact of every market (arrays of shape (m,))."""

    def __init__(self, markets: tuple[MarketConfig, ...], tick_ms: int) -> None:
        def arr(name: str) -> np.ndarray:
            return np.array([float(getattr(mk, name)) for mk in markets])

        self.base_depth = arr("depth_usd")
        self.base_half_spread = arr("half_spread")
        self.refill = 1.0 - 0.5 ** (1.0 / arr("depth_refill_half_life_ticks"))
        self.transient_decay = 0.5 ** (1.0 / arr("impact_half_life_ticks"))
        self.permanent_decay = 0.5 ** (1.0 / arr("basis_half_life_ticks"))
        self.permanent_fraction = arr("permanent_impact_fraction")
        self.depth_elasticity = arr("depth_vol_elasticity")
        self.spread_elasticity = arr("spread_vol_elasticity")
        self.min_depth = arr("min_depth_fraction") * self.base_depth
        dt = tick_ms / MS_PER_YEAR
        self.sigma_ref = np.maximum(arr("sigma_annual") * math.sqrt(dt), 1e-12)
        self.fast_var = self.sigma_ref**2
        self.fast_lambda = 0.5 ** (1.0 / FAST_VOL_HALF_LIFE_TICKS)
        m = len(markets)
        # Row 0 is the bid side, row 1 the ask side; bid_depth and ask_depth are views.
        self.depth = np.vstack([self.base_depth, self.base_depth])
        self.bid_depth = self.depth[0]
        self.ask_depth = self.depth[1]
        self.half_spread = self.base_half_spread.copy()
        self.transient = np.zeros(m)
        self.permanent = np.zeros(m)
        # Consumed this block (quote units) per side, and the mid's move so far.
        self.sold = np.zeros(m)
        self.bought = np.zeros(m)
        self.block_move = np.zeros(m)

    # ---- the block's conditions --------------------------------------------------------------

    def begin_block(self, index_return: np.ndarray) -> None:
        """Update volatility; makers withdraw or refill depth and set the spread; impact decays."""
        lam = self.fast_lambda
        self.fast_var = lam * self.fast_var + (1.0 - lam) * index_return**2
        stress = np.maximum(np.sqrt(self.fast_var) / self.sigma_ref, 1.0)
        target = np.maximum(self.base_depth / stress**self.depth_elasticity, self.min_depth)
        # Makers pull quotes at once when volatility jumps; depth comes back at the refill pace.
        depth = self.depth
        depth += (target - depth) * self.refill
        np.minimum(depth, target, out=depth)
        self.half_spread = self.base_half_spread * stress**self.spread_elasticity
        self.transient *= self.transient_decay
        self.permanent *= self.permanent_decay

    def deviation(self) -> np.ndarray:
        """Return the venue mid's relative deviation from the index (m,), never below
        -(1 - MID_FLOOR): impact adds up linearly, and orders hundreds of times the book's
        depth would otherwise walk the mid below zero."""
        return np.maximum(self.transient + self.permanent + self.block_move, MID_FLOOR - 1.0)

    # ---- orders ------------------------------------------------------------------------------

    def fills(
        self,
        k: int,
        taker_usd: np.ndarray,
        index_price: float,
        sent: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (average fill prices, mid moves) of market orders sent in order into market k.

        ``taker_usd``: signed quote notional per order (> 0 buys from the asks, < 0 sells into
        the bids), in the order they arrive. ``sent`` (default: all) marks the orders that will
        reach the book; the others are priced as if sent, on the book the sent ones before them
        left, but do not move it for the orders after them. Pure: the book changes only
        through :meth:`consume`, so a caller can price orders it may not all send.
        """
        buys = np.where(taker_usd > 0, taker_usd, 0.0)
        sells = np.where(taker_usd < 0, -taker_usd, 0.0)
        sent_buys = buys if sent is None else np.where(sent, buys, 0.0)
        sent_sells = sells if sent is None else np.where(sent, sells, 0.0)
        bought_before = _running(self.bought[k], sent_buys)[:-1]
        sold_before = _running(self.sold[k], sent_sells)[:-1]
        bought_after = bought_before + buys
        sold_after = sold_before + sells
        ask_x = _walk(bought_before, self.ask_depth[k])
        bid_x = _walk(sold_before, self.bid_depth[k])
        base_move = self.transient[k] + self.permanent[k]
        mid_before = index_price * np.maximum(1.0 + base_move + ask_x - bid_x, MID_FLOOR)
        hs = self.half_spread[k]
        avg_ask = _average_walk(bought_before, bought_after, self.ask_depth[k])
        avg_bid = _average_walk(sold_before, sold_after, self.bid_depth[k])
        # Deeper into the book than the mid already moved: the average minus what was walked.
        buy_fill = mid_before * (1.0 + hs + (avg_ask - ask_x))
        sell_fill = mid_before * np.maximum(1.0 - hs - (avg_bid - bid_x), MID_FLOOR)
        fill = np.where(taker_usd > 0, buy_fill, sell_fill)
        move = (_walk(bought_after, self.ask_depth[k]) - ask_x) - (
            _walk(sold_after, self.bid_depth[k]) - bid_x
        )
        return fill, move

    def consume(self, k: int, taker_usd: np.ndarray) -> None:
        """Commit orders that :meth:`fills` priced: they use up depth and move the mid."""
        self.bought[k] = _running(self.bought[k], np.where(taker_usd > 0, taker_usd, 0.0))[-1]
        self.sold[k] = _running(self.sold[k], np.where(taker_usd < 0, -taker_usd, 0.0))[-1]
        self.block_move[k] = _walk(self.bought[k], self.ask_depth[k]) - _walk(
            self.sold[k], self.bid_depth[k]
        )

    def end_block(self) -> None:
        """Split the block's move into transient and permanent impact; deplete the depth used."""
        if not (self.sold.any() or self.bought.any()):
            return  # a quiet block: nothing to split or deplete
        self.permanent += self.permanent_fraction * self.block_move
        self.transient += (1.0 - self.permanent_fraction) * self.block_move
        self.bid_depth -= self.sold
        self.ask_depth -= self.bought
        np.maximum(self.depth, self.min_depth, out=self.depth)
        self.sold[:] = 0.0
        self.bought[:] = 0.0
        self.block_move[:] = 0.0


def _running(start: float, amounts: np.ndarray) -> np.ndarray:
    """Return start, start + a0, start + a0 + a1, ... added in order, so that pricing orders in
    one batch or one at a time gives the same floating-point totals."""
    return np.cumsum(np.concatenate([[start], amounts]))


def _walk(consumed: np.ndarray | float, depth: float | np.ndarray) -> np.ndarray:
    """Relative distance from the mid the book has been walked to after ``consumed`` notional."""
    return 0.01 * np.sqrt(np.asarray(consumed) / depth)


def _average_walk(
    before: np.ndarray | float, after: np.ndarray | float, depth: float
) -> np.ndarray:
    """Average distance from the mid of the fills between two consumption levels."""
    before = np.asarray(before, np.float64)
    after = np.asarray(after, np.float64)
    span = after - before
    integral = (2.0 / 3.0) * 0.01 * (after**1.5 - before**1.5) / math.sqrt(depth)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(span > 0, integral / np.where(span > 0, span, 1.0), _walk(before, depth))
    return avg
