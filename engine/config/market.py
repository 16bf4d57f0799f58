"""A perpetual market: its price, book, fees, funding, insurance fund and liquidation rules."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from engine.config.checks import require
from engine.config.margin import MarginModel
from engine.config.ranges import (
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveShare,
    Range,
    Share,
    section,
)

NoLimit = Annotated[float, Range(ge=0, note="(0 = no limit)")]
ContractTier = Literal["", "A", "B", "C", "speculative", "highly_speculative", "isolated"]
"""Drift's contract tiers ("" = not a Drift market); the last three get no insurance."""
UNINSURED_TIERS = ("speculative", "highly_speculative", "isolated")


@section
class LiquidationConfig:
    """How a breached position is closed and who is paid."""

    penalty: Annotated[float, Range(ge=0, lt=1)] = 0.01
    keeper_share: Share = 0.5
    partial: bool = True
    buffer_ratio: NonNegative = 0.02
    min_notional_usd: NonNegative = 1_000.0
    max_portion: PositiveShare = 1.0
    max_notional_per_block_usd: NoLimit = 0.0
    """Most notional of one account (dYdX: subaccount) liquidated in one block."""
    max_insurance_lost_per_block_usd: NoLimit = 0.0
    """Most the insurance fund may lose on one account in one block: a fill that would lose more
    does not happen, and the account waits or is deleveraged (dYdX)."""
    cooldown_ms: NonNegativeInt = 0
    """Least time between two liquidations of the same position (Hyperliquid: 30 s)."""
    stay_until_buffer: bool = False
    """An account that entered liquidation stays in it until equity covers maintenance margin
    plus ``buffer_ratio`` x notional, even once it is back above maintenance (Drift)."""
    backstop_ratio: Annotated[float, Range(ge=0, lt=1, note="(0 = no backstop)")] = 0.0
    """Below this share of maintenance margin the account's positions and remaining margin go
    to the venue's liquidator vault instead of the book (Hyperliquid: 2/3)."""


@section
class MarkConfig:
    """How the venue sets its mark price from its own book and the index.

    * ``book`` — the venue's mid: the index moved by the impact left on the venue's book;
    * ``median_of_three`` (Hyperliquid) — the median of oracle + an EMA of (mid - oracle) over
      ``premium_ema_ms``, the median of best bid / best ask / last trade, and an external perp
      mid: the index with ``external_basis_sd`` of independent basis noise per block;
    * ``index_basis_ma`` (Binance) — the index plus the moving average of (mid - index) over
      ``basis_window_ms``.
    """

    model: Literal["book", "median_of_three", "index_basis_ma"] = "book"
    premium_ema_ms: Annotated[int, Range(gt=0)] = 150_000
    external_basis_sd: Annotated[float, Range(ge=0, lt=0.1)] = 0.0005
    basis_window_ms: Annotated[int, Range(gt=0)] = 300_000


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
    funding_rate_hours: Annotated[float, Range(ge=0, note="(0 = payments are the premium)")] = 0.0
    """The period the premium is quoted over: a payment every ``funding_interval_ticks`` pays
    interval / period of it (dYdX, Hyperliquid: an 8-hour rate paid hourly)."""
    funding_clamp_on: Literal["payment", "rate"] = "payment"
    """What ``funding_clamp`` bounds: each payment, or the quoted rate (dYdX: the 8-hour rate)."""
    contract_tier: ContractTier = ""
    """Drift's contract tier, which caps what the insurance fund pays the market over the run
    (A $100M, B $1M, C $100k; speculative, highly_speculative and isolated nothing), the fund
    keeping one quote quantum, as Drift's does ("" = no tier: the fund pays to its balance)."""
    fee_pool_absorbs: bool = False
    """After the insurance fund, the market's fee pool pays what it holds before the rest is
    socialized (Drift); otherwise the fee pool only advances the socialized amount."""
    adl_order: Literal["ranked", "walk"] = "ranked"
    """How deleveraging picks the opposite-side accounts: ``ranked`` by profit x leverage
    (BitMEX, Binance, Hyperliquid), or ``walk``: in account order from a pseudo-random offset,
    each taking what it holds (dYdX)."""
    adl_max_candidates: Annotated[int, Range(ge=0, note="(0 = no limit)")] = 0
    """Most accounts a walk visits for one deleveraging (dYdX: 500); the market maker takes
    what they cannot."""
    adl_rank_price: Literal["mark", "previous_oracle"] = "mark"
    """The price the ADL ranking values positions at (Hyperliquid: the previous oracle price)."""
    mark: MarkConfig = field(default_factory=MarkConfig)
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)

    def __post_init__(self) -> None:
        require(bool(self.name), "name", "must not be empty, was ''")
