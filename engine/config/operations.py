"""How the venue operates under load: keepers, the oracle, network congestion, circuit breakers."""

from __future__ import annotations

from typing import Annotated

from engine.config.ranges import Count, NonNegative, NonNegativeInt, Positive, Range, section


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
