"""A perpetual market: its price, book, fees, funding, insurance fund and liquidation rules."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from engine.config.checks import require
from engine.config.margin import MarginModel
from engine.config.ranges import NonNegative, Positive, PositiveShare, Range, Share, section


@section
class LiquidationConfig:
    """How a breached position is closed and who is paid."""

    penalty: Annotated[float, Range(ge=0, lt=1)] = 0.01
    keeper_share: Share = 0.5
    partial: bool = True
    buffer_ratio: NonNegative = 0.02
    min_notional_usd: NonNegative = 1_000.0
    max_portion: PositiveShare = 1.0


@section
class MarketConfig:
    """One perpetual market."""

    name: str
    initial_price: Positive
    sigma_annual: NonNegative
    margin: MarginModel
    venue: str = ""
    drift_annual: float = 0.0
    tick_size: Positive = 0.01
    base_quantum_exponent: Annotated[int, Range(ge=-18, le=0)] = -9
    position_sigma_base: NonNegative = 1.0
    oi_cap_base: NonNegative = 0.0
    depth_usd: Positive = 5_000_000.0
    half_spread: Annotated[float, Range(ge=0, lt=0.1)] = 0.0001
    impact_half_life_ticks: Positive = 10.0
    depth_refill_half_life_ticks: Positive = 5.0
    permanent_impact_fraction: Share = 0.3
    basis_half_life_ticks: Positive = 30.0
    depth_vol_elasticity: NonNegative = 1.0
    min_depth_fraction: PositiveShare = 0.1
    spread_vol_elasticity: NonNegative = 1.0
    loss_resolution: Literal["adl", "socialized"] = "adl"
    insurance_fund_usd: NonNegative = 1_000_000.0
    insurance_cap_per_block_usd: Annotated[float, Range(ge=0, note="(0 = no cap)")] = 0.0
    taker_fee: Annotated[float, Range(ge=0, lt=0.1)] = 0.0
    funding_interval_ticks: Annotated[int, Range(ge=0, note="(0 = no funding)")] = 60
    funding_clamp: Annotated[float, Range(ge=0, lt=1)] = 0.0075
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)

    def __post_init__(self) -> None:
        require(bool(self.name), "name", "must not be empty, was ''")
