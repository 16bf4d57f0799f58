"""The trader population: who sends orders, when, and which way.

(Collateral top-ups of breached accounts are scheduled and applied by the step loop:
``Simulation._track_onsets`` and ``Simulation._apply_topups``.)

Two models (``[traders] model``):

* ``uniform`` — every account sends an order with probability ``accounts.order_rate`` per block,
  on a random market and side;
* ``hawkes`` — the number of orders per block is Poisson with intensity
  ``lambda_t = mu + E_t``: a base rate ``mu`` plus an excitation that every order, every large
  price move and every liquidation feeds and that decays geometrically
  (``E_t+1 = d E_t + eta (1 - d) X_t``, so one event begets ``eta`` = ``branching_ratio`` more
  in expectation). Arriving orders come from a heterogeneous population: momentum traders
  (high leverage, trade with the recent move), hedgers (low leverage, lean against it) and noise
  traders (random side); any of them may instead close part of its position.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from engine.config import SimConfig
from engine.draws import Draws, Purpose, poisson_count

MOMENTUM_AGREEMENT = 0.8
"""Probability that a momentum trader trades with the recent move (a hedger: against it, 0.6)."""
HEDGER_AGREEMENT = 0.4
SIZE_MULTIPLE = np.array([1.0, 1.5, 0.5])
"""Order size multiple by trader type (noise, momentum, hedger)."""
TREND_HALF_LIFE_TICKS = 5.0
TREND_SCALE = 0.25
"""A trend (EWMA of block log returns) of this many typical block moves leans traders by
tanh(1) = 76% of their full lean."""


class TraderType(IntEnum):
    """Trader kinds, stored per account (the market maker is NOISE and never trades by itself)."""

    NOISE = 0
    MOMENTUM = 1
    HEDGER = 2


class Traders:
    """Order arrivals and trader behaviour for one run."""

    def __init__(self, cfg: SimConfig, n_traders: int, sigma_ref: np.ndarray) -> None:
        self.cfg = cfg
        self.tc = cfg.traders
        self.n_traders = n_traders
        tick_minutes = cfg.tick_ms / 60_000
        self.mu = self.tc.base_rate_per_minute * tick_minutes * n_traders
        self.decay = 0.5 ** (1.0 / self.tc.excitation_half_life_ticks)
        self.excitation = 0.0
        self.sigma_ref = sigma_ref
        self.trend = np.zeros(len(cfg.markets))
        self.trend_lambda = 0.5 ** (1.0 / TREND_HALF_LIFE_TICKS)
        self.intensity = self.mu
        self.excitable = self.tc.model == "hawkes"
        """Whether orders, moves and liquidations feed back into arrivals (see observe)."""

    def assign(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (types int8 (n,), leverage float (n,)) of the traders at the start."""
        n = self.n_traders
        acc = self.cfg.accounts
        if self.tc.model == "uniform":
            lev = rng.uniform(acc.leverage_min, acc.leverage_max, n)
            return np.zeros(n, np.int8), lev
        u = rng.random(n)
        types = np.where(
            u < self.tc.momentum_fraction,
            TraderType.MOMENTUM,
            np.where(
                u < self.tc.momentum_fraction + self.tc.hedger_fraction,
                TraderType.HEDGER,
                TraderType.NOISE,
            ),
        ).astype(np.int8)
        lo = np.select(
            [types == TraderType.MOMENTUM, types == TraderType.HEDGER],
            [self.tc.momentum_leverage[0], self.tc.hedger_leverage[0]],
            self.tc.noise_leverage[0],
        )
        hi = np.select(
            [types == TraderType.MOMENTUM, types == TraderType.HEDGER],
            [self.tc.momentum_leverage[1], self.tc.hedger_leverage[1]],
            self.tc.noise_leverage[1],
        )
        return types, lo + (hi - lo) * rng.random(n)

    def orders(
        self, draws: Draws, t: int, types: np.ndarray, sizes: np.ndarray, m: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return block ``t``'s orders as (account ids, markets, signed sizes, close fractions).

        Sizes are in units of the market's ``order_size_fraction x position_sigma_base``; an
        order with a close fraction f > 0 instead closes that fraction of the account's position.
        Ids are unique and ascending; ``types`` and ``sizes`` (positions, (n, m)) include the
        maker in row 0.

        Draws are keyed by block and purpose (:mod:`engine.draws`): who may trade this block
        and what each would send are fixed by the block alone, and the intensity only decides
        how many of them do — the first ``count`` in the block's priority order — so a run whose
        intensity differs sees the same orders plus or minus the last ones.
        """
        acc = self.cfg.accounts
        n = self.n_traders
        if self.tc.model == "uniform":
            if acc.order_rate == 0.0:
                empty = np.empty(0, np.int64)
                return empty, empty, np.empty(0), np.empty(0)
            arrive = draws.block(Purpose.ORDER_ARRIVALS, t).random(n)
            active = np.flatnonzero(arrive < acc.order_rate) + 1
            which = draws.block(Purpose.ORDER_MARKET, t).random(n)
            market_of = np.minimum((which[active - 1] * m).astype(np.int64), m - 1)
            size = draws.block(Purpose.ORDER_SIZE, t).standard_normal(n)[active - 1]
            return active, market_of, size, np.zeros(active.size)
        self.intensity = self.mu + self.excitation
        count = min(poisson_count(draws.block(Purpose.ORDER_ARRIVALS, t), self.intensity), n)
        priority = draws.block(Purpose.ORDER_PRIORITY, t).random(n)
        if count < n:
            first = np.argpartition(priority, count)[:count]
        else:
            first = np.arange(n)
        ranked = first[np.argsort(priority[first], kind="stable")]
        # Attributes are drawn by rank in the priority order (prefix-consistent in count).
        which = draws.block(Purpose.ORDER_MARKET, t).random(count)
        market_of = np.minimum((which * m).astype(np.int64), m - 1)
        u_side = draws.block(Purpose.ORDER_SIDE, t).random(count)
        normal = draws.block(Purpose.ORDER_SIZE, t).standard_normal(count)
        u_close = draws.block(Purpose.ORDER_CLOSE, t).random(count)
        u_fraction = draws.block(Purpose.ORDER_CLOSE_FRACTION, t).random(count)
        order = np.argsort(ranked, kind="stable")  # ascending account ids, as the book expects
        idx = ranked[order] + 1
        market_of, u_side, normal = market_of[order], u_side[order], normal[order]
        u_close, u_fraction = u_close[order], u_fraction[order]
        kind = types[idx]
        # Traders lean with (momentum) or against (hedgers) the recent move in proportion to its
        # strength: a trend well beyond the market's typical block move gives the full lean, a
        # flat one none. (A lean on the trend's sign alone would flip every order of the block
        # whenever a trend near zero changed sign.)
        strength = np.tanh(self.trend[market_of] / (TREND_SCALE * self.sigma_ref[market_of]))
        lean = np.select(
            [kind == TraderType.MOMENTUM, kind == TraderType.HEDGER],
            [MOMENTUM_AGREEMENT - 0.5, HEDGER_AGREEMENT - 0.5],
            0.0,
        )
        buy = 0.5 + lean * strength
        side = np.where(u_side < buy, 1.0, -1.0)
        size = np.abs(normal) * SIZE_MULTIPLE[kind]
        closing = (u_close < self.tc.close_probability) & (sizes[idx, market_of] != 0)
        fraction = np.where(closing, 0.3 + 0.7 * u_fraction, 0.0)
        return idx, market_of, side * size, fraction

    def observe(self, returns: np.ndarray, liquidations: int, orders: int) -> None:
        """Feed the block's orders, large moves and liquidations into the excitation."""
        if self.tc.model != "hawkes":
            return
        big_moves = int((np.abs(returns) > self.tc.move_threshold_sigma * self.sigma_ref).sum())
        events = (
            orders + self.tc.liquidation_weight * liquidations + self.tc.move_weight * big_moves
        )
        self.excitation = (
            self.decay * self.excitation + self.tc.branching_ratio * (1.0 - self.decay) * events
        )
        lam = self.trend_lambda
        self.trend = lam * self.trend + (1.0 - lam) * returns
