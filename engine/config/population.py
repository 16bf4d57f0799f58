"""The accounts a run starts with, and how they trade and top up."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.config.checks import require
from engine.config.ranges import Count, NonNegative, NonNegativeInt, Positive, Range, Share, section


@section
class AccountsConfig:
    """The starting population: a snapshot of accounts already holding positions."""

    count: Count = 10_000
    cross_fraction: Share = 0.7
    leverage_min: float = 2.0
    leverage_max: float = 20.0
    maker_collateral_usd: Positive = 1e9
    order_rate: Share = 0.0
    order_size_fraction: Positive = 0.2
    whales: int = 0
    """Accounts (the first ones) whose positions are ``whale_size_multiple`` times larger:
    concentrated open interest."""
    whale_size_multiple: Positive = 50.0
    opening_margin: Literal["drawn", "initial"] = "drawn"
    """``drawn``: each account's collateral is its notional over its drawn leverage, whatever
    the venue requires (a snapshot may start below maintenance margin where the leverage
    settings exceed what the venue's rules maintain). ``initial``: collateral is raised, where
    it falls short, to the venue's initial margin of the position at the opening mark, so
    every account could have opened its book on this venue. The margin is the one before open
    interest builds: dYdX's open-interest scaling of IMF is at its base there."""

    def __post_init__(self) -> None:
        require(
            0 < self.leverage_min <= self.leverage_max,
            "leverage_min",
            f"must be positive and <= leverage_max, was {self.leverage_min} > {self.leverage_max}"
            if self.leverage_min > self.leverage_max
            else f"must be positive, was {self.leverage_min}",
        )
        require(
            0 <= self.whales <= self.count,
            "whales",
            f"must be between 0 and count ({self.count}), was {self.whales}",
        )


@section
class TradersConfig:
    """Who trades and when.

    ``uniform``: each account sends an order with probability ``accounts.order_rate`` per block,
    random side. ``hawkes``: orders arrive as a self-exciting (Hawkes) process — a base rate
    plus excitation from recent orders, large price moves and liquidations, with branching ratio
    ``branching_ratio`` — from a heterogeneous population: momentum traders (high leverage, trade
    with the recent move), hedgers (low leverage, against it) and noise traders. In both models
    an account that enters breach tops up collateral with ``topup_probability``, after
    ``topup_delay_ticks``, back to ``topup_target_ratio`` x MM.
    """

    model: Literal["uniform", "hawkes"] = "uniform"
    momentum_fraction: float = 0.25
    hedger_fraction: float = 0.15
    momentum_leverage: tuple[float, ...] = (10.0, 40.0)
    noise_leverage: tuple[float, ...] = (2.0, 20.0)
    hedger_leverage: tuple[float, ...] = (1.0, 3.0)
    base_rate_per_minute: NonNegative = 0.01
    branching_ratio: Annotated[float, Range(ge=0, lt=1, note="for a stable process")] = 0.7
    excitation_half_life_ticks: Positive = 8.0
    move_threshold_sigma: NonNegative = 3.0
    move_weight: NonNegative = 20.0
    liquidation_weight: NonNegative = 1.0
    close_probability: Share = 0.3
    topup_probability: Share = 0.0
    topup_delay_ticks: NonNegativeInt = 4
    topup_target_ratio: Annotated[float, Range(ge=1)] = 1.5

    def __post_init__(self) -> None:
        require(
            self.momentum_fraction >= 0
            and self.hedger_fraction >= 0
            and self.momentum_fraction + self.hedger_fraction <= 1,
            "momentum_fraction",
            f"and hedger_fraction must be >= 0 and sum to at most 1, was "
            f"{self.momentum_fraction} + {self.hedger_fraction}",
        )
        for name in ("momentum_leverage", "noise_leverage", "hedger_leverage"):
            v = getattr(self, name)
            require(
                len(v) == 2 and 0 < v[0] <= v[1],
                name,
                f"must be [low, high] with 0 < low <= high, was {list(v)}",
            )
