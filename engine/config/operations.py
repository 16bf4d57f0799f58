"""How the venue operates under load: keepers, the oracle, network congestion, circuit breakers."""

from __future__ import annotations

from typing import Annotated

from engine.config.ranges import (
    Count,
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveShare,
    Range,
    section,
)


@section
class KeepersConfig:
    """Liquidators: how late they see a breach and how many liquidations fit in a block."""

    count: Count = 3
    latency_ticks: NonNegativeInt = 1
    capacity_per_block: Count = 50


@section
class OracleConfig:
    """The external index as the venue sees it: late, and sometimes not at all."""

    delay_ticks: NonNegativeInt = 1
    stale_probability: Annotated[float, Range(ge=0, lt=1)] = 0.0
    max_age_ticks: Count = 5


@section
class CongestionConfig:
    """Network congestion when volatility spikes: fewer liquidations fit in a block, keepers
    land later and the oracle lags more.

    Congestion = clip((stress - vol_threshold) / vol_span, 0, 1), where stress is the largest
    ratio of a market's fast EWMA volatility to its ``sigma_annual``.
    """

    enabled: bool = False
    vol_threshold: NonNegative = 3.0
    vol_span: Positive = 10.0
    capacity_loss: Annotated[float, Range(ge=0, lt=1)] = 0.8
    extra_latency_ticks: NonNegativeInt = 3
    extra_oracle_delay_ticks: NonNegativeInt = 2


@section
class CircuitBreakerConfig:
    """Pause liquidations in a market whose oracle is stale or far from the mark."""

    enabled: bool = True
    max_deviation: Positive = 0.05


@section
class VaultConfig:
    """The venue's liquidator vault (Hyperliquid's HLP liquidator): an account of its own that
    takes over every account below a market's ``liquidation.backstop_ratio`` of maintenance
    margin — its positions at the mark and the margin it has left — and then sells the
    positions on the book, ``unwind_share`` of each per block, like any taker. Its equity and
    PnL are venue outcomes; it exists only when some market has a backstop."""

    collateral_usd: NonNegative = 0.0
    unwind_share: PositiveShare = 0.2
    min_unwind_usd: NonNegative = 10_000.0
    """A position worth less than this is sold whole."""
    max_unwind_usd_per_block: Annotated[float, Range(ge=0, note="(0 = no limit)")] = 0.0
    """Most notional the vault sells per market per block."""
