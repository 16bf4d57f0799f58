"""The venue's mark price: how it is set from the venue's own book and the index.

Each market's ``mark.model`` picks one (see :class:`engine.config.MarkConfig`):

* ``book`` — the venue's mid, the index moved by the impact left on the venue's book;
* ``median_of_three`` — Hyperliquid's median of (oracle + EMA of mid - oracle over 150 s,
  median of best bid / best ask / last trade, an external perp mid);
* ``index_basis_ma`` — Binance's index plus the moving average of the basis (mid - index).

"Oracle" and "index" here are the index as the venue sees it (late or stale, see
:mod:`engine.market`), except the external perp mid, which follows the live index.

The engine has no separate last-trade price: the last trade is taken as the previous block's
mid, so the second term is that mid clipped to this block's bid and ask. The external perp mid
is the index with independent normal basis noise per block, a keyed draw, so paired runs see
the same external venue.
"""

from __future__ import annotations

import math

import numpy as np

from engine.config import MarketConfig
from engine.draws import Draws, Purpose

_BOOK, _MEDIAN, _BASIS_MA = 0, 1, 2
_MODELS = {"book": _BOOK, "median_of_three": _MEDIAN, "index_basis_ma": _BASIS_MA}


class MarkPrice:
    """Per-market mark price state: the premium EMA, the basis window and the last mid."""

    def __init__(
        self, markets: tuple[MarketConfig, ...], tick_ms: int, opening: np.ndarray, draws: Draws
    ) -> None:
        self.model = np.array([_MODELS[mk.mark.model] for mk in markets])
        self.only_book = bool((self.model == _BOOK).all())
        self.draws = draws
        self.ema_weight = np.array(
            [1.0 - math.exp(-tick_ms / mk.mark.premium_ema_ms) for mk in markets]
        )
        """Weight of each block's premium in the EMA: 1 - exp(-block / window)."""
        self.basis_sd = np.array([mk.mark.external_basis_sd for mk in markets])
        self.premium_ema = np.zeros(len(markets))
        self.last_mid = opening.copy()
        self.windows = [max(1, round(mk.mark.basis_window_ms / tick_ms)) for mk in markets]
        self.basis = np.zeros((max(self.windows, default=1), len(markets)))
        """The last blocks' basis (mid - index), a ring indexed by block; zero before the run
        (the opening mark is the index)."""
        self.seen = self.basis.shape[0]
        """Blocks of basis written to the ring, the opening zeros included."""

    def mark(
        self,
        t: int,
        mid: np.ndarray,
        oracle: np.ndarray,
        index: np.ndarray,
        half_spread: np.ndarray,
    ) -> np.ndarray:
        """Return the marks at block ``t`` from the venue's mid, the oracle, the external index
        and the book's half spread (all (m,)); advance the state."""
        if self.only_book:
            return mid
        self.premium_ema += self.ema_weight * ((mid - oracle) - self.premium_ema)
        with_premium = oracle + self.premium_ema
        book_median = np.clip(self.last_mid, mid * (1.0 - half_spread), mid * (1.0 + half_spread))
        noise = self.draws.block(Purpose.EXTERNAL_BASIS, t).standard_normal(mid.size)
        external = index * (1.0 + self.basis_sd * noise)
        median = np.median(np.stack([with_premium, book_median, external]), axis=0)
        self.last_mid = mid.copy()
        self.basis[self.seen % self.basis.shape[0]] = mid - oracle
        self.seen += 1
        basis_ma = np.empty(mid.size)
        for k, w in enumerate(self.windows):
            rows = [(self.seen - 1 - j) % self.basis.shape[0] for j in range(w)]
            basis_ma[k] = self.basis[rows, k].mean()
        with_basis = oracle + basis_ma
        return np.where(
            self.model == _MEDIAN, median, np.where(self.model == _BASIS_MA, with_basis, mid)
        )
