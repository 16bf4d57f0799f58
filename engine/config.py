"""Typed, strict config: TOML under venue preset defaults, then overrides, as frozen dataclasses.

Every check lives here. An unknown key, a value of the wrong type or an inconsistent value raises
:class:`ConfigError` whose message names the key and the value, e.g.
``markets.0.margin.brackets.0.maintenance_margin must be below initial_margin, was 0.1 >= 0.05``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import PredliqError


class ConfigError(PredliqError, ValueError):
    """An invalid config: the message names the key and the offending value."""


# Bounds that keep every ledger amount inside int64 quote quantums (1e-6 of the quote): the
# ledger holds 2**63 / 1e6 = 9.2e12 quote units, so a single amount may be at most 1e12 and the
# money a run starts with (maker collateral and insurance funds) at most 1e12 in all, leaving a
# 9x margin for PnL, fees and sums. Prices are bounded so that a position's notional is too.
MAX_USD = 1e12
"""The largest amount in quote units any ``*_usd`` key (and their total) may hold."""
MAX_PRICE = 1e9
"""The largest price (initial price, replay bar) in quote units."""
MAX_ANNUAL = 1e3
"""The largest annualized rate (``*_annual``: drift, volatility), as a fraction (100,000%)."""
MAX_INT = 2**53
"""The largest integer a config may hold (exact in JSON and float64)."""
MAX_ACCOUNTS = 10_000_000
MAX_STEPS = 10_000_000


def _bound_number(key: str, x: float) -> None:
    """Refuse a number outside what the engine can hold (see MAX_USD, MAX_PRICE, MAX_ANNUAL)."""
    leaf = key.rsplit(".", 1)[-1]
    # The book's depth is a float of the impact model, never a ledger amount: a test's "no
    # impact" book is 1e20 deep. It must only be finite.
    if leaf.endswith("_usd") and leaf != "depth_usd":
        limit, what = MAX_USD, "the int64 ledger holds 9.2e12 quote units"
    elif leaf == "initial_price":
        limit, what = MAX_PRICE, "prices are bounded so notionals fit the ledger"
    elif leaf.endswith("_annual"):
        limit, what = MAX_ANNUAL, "an annual rate as a fraction"
    else:
        return
    _require(abs(x) <= limit, key, f"must be at most {_sci(limit)} ({what}), was {_sci(x)}")


def _sci(x: float) -> str:
    """1e12, 2.5e13, 300: numbers in messages as a person writes them."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.6g}")


def physical_memory() -> int | None:
    """Return this machine's memory in bytes, or None where it cannot be read."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key} {message}")


def _require_non_negative(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        _require(v >= 0, name, f"must be >= 0, was {v}")


# ---------------------------------------------------------------------------------------------
# Margin models (one dataclass each; the TOML key ``model`` picks which)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional bracket: rates apply to the part of a position above ``floor_usd``."""

    floor_usd: float
    initial_margin: float
    maintenance_margin: float

    def __post_init__(self) -> None:
        _require(
            self.floor_usd >= 0 and self.floor_usd == int(self.floor_usd),
            "floor_usd",
            f"must be a whole non-negative number of quote units, was {self.floor_usd}",
        )
        _require(
            0 < self.maintenance_margin,
            "maintenance_margin",
            f"must be positive, was {self.maintenance_margin}",
        )
        _require(
            self.maintenance_margin < self.initial_margin,
            "maintenance_margin",
            f"must be below initial_margin, was {self.maintenance_margin} >= {self.initial_margin}",
        )
        _require(
            self.initial_margin <= 1, "initial_margin", f"must be <= 1, was {self.initial_margin}"
        )


@dataclass(frozen=True, slots=True)
class TieredMargin:
    """Static brackets with maintenance deduction (Binance / Hyperliquid)."""

    brackets: tuple[Bracket, ...]
    model: Literal["tiered"] = "tiered"

    def __post_init__(self) -> None:
        _require(len(self.brackets) > 0, "brackets", "must hold at least one bracket, was empty")
        _require(
            self.brackets[0].floor_usd == 0,
            "brackets.0.floor_usd",
            f"must be 0, was {self.brackets[0].floor_usd}",
        )
        for i in range(1, len(self.brackets)):
            a, b = self.brackets[i - 1], self.brackets[i]
            _require(
                b.floor_usd > a.floor_usd,
                f"brackets.{i}.floor_usd",
                f"must rise from bracket to bracket, was {b.floor_usd} <= {a.floor_usd}",
            )
            _require(
                b.maintenance_margin >= a.maintenance_margin
                and b.initial_margin >= a.initial_margin,
                f"brackets.{i}",
                "rates must not fall as notional rises (margin must grow with size), "
                f"was {b.initial_margin}/{b.maintenance_margin} after "
                f"{a.initial_margin}/{a.maintenance_margin}",
            )


@dataclass(frozen=True, slots=True)
class OIScaledMargin:
    """dYdX v4: open-interest-scaled initial margin (OIMF); maintenance from the base IMF."""

    initial_margin: float
    maintenance_fraction: float
    oi_lower_cap_usd: float = 0.0
    oi_upper_cap_usd: float = 0.0
    model: Literal["oi_scaled"] = "oi_scaled"

    def __post_init__(self) -> None:
        _require(
            0 < self.initial_margin <= 1,
            "initial_margin",
            f"must be in (0, 1], was {self.initial_margin}",
        )
        _require(
            0 < self.maintenance_fraction < 1,
            "maintenance_fraction",
            f"must be in (0, 1) so maintenance is below initial margin, was "
            f"{self.maintenance_fraction}",
        )
        _require(
            self.oi_upper_cap_usd == 0 or self.oi_upper_cap_usd > self.oi_lower_cap_usd >= 0,
            "oi_upper_cap_usd",
            f"must be 0 (disabled) or above oi_lower_cap_usd >= 0, was {self.oi_upper_cap_usd} "
            f"with lower {self.oi_lower_cap_usd}",
        )


@dataclass(frozen=True, slots=True)
class SizePremiumMargin:
    """Drift v2: margin ratios raised by sqrt(size) x imf_factor for large positions."""

    initial_margin: float
    maintenance_margin: float
    imf_factor: float = 0.0
    model: Literal["size_premium"] = "size_premium"

    def __post_init__(self) -> None:
        _require(
            0 < self.maintenance_margin < self.initial_margin <= 1,
            "maintenance_margin",
            f"must be positive and below initial_margin <= 1, was {self.maintenance_margin} >= "
            f"{self.initial_margin}"
            if self.maintenance_margin >= self.initial_margin
            else f"must be positive and below initial_margin <= 1, was {self.maintenance_margin}",
        )
        _require(self.imf_factor >= 0, "imf_factor", f"must be >= 0, was {self.imf_factor}")


@dataclass(frozen=True, slots=True)
class VolScaledMargin:
    """Volatility-scaled margin: MMF = clip(z x EWMA sigma x sqrt(MPOR), floor, cap).

    The rate may rise by at most ``max_rise_per_step`` (relative) per step: the
    anti-procyclicality rule that stops margin from jumping in the middle of a crash.
    """

    z: float = 3.0
    margin_period_ticks: int = 60
    ewma_half_life_ticks: float = 60.0
    floor_maintenance: float = 0.01
    cap_maintenance: float = 0.5
    max_rise_per_step: float = 0.05
    initial_over_maintenance: float = 1.5
    model: Literal["vol_scaled"] = "vol_scaled"

    def __post_init__(self) -> None:
        _require(self.z > 0, "z", f"must be positive, was {self.z}")
        _require(
            self.margin_period_ticks >= 1,
            "margin_period_ticks",
            f"must be >= 1, was {self.margin_period_ticks}",
        )
        _require(
            self.ewma_half_life_ticks > 0,
            "ewma_half_life_ticks",
            f"must be positive, was {self.ewma_half_life_ticks}",
        )
        _require(
            0 < self.floor_maintenance < self.cap_maintenance,
            "floor_maintenance",
            f"must be positive and below cap_maintenance, was {self.floor_maintenance} >= "
            f"{self.cap_maintenance}",
        )
        _require(
            self.cap_maintenance * self.initial_over_maintenance <= 1,
            "cap_maintenance",
            f"times initial_over_maintenance must be <= 1, was "
            f"{self.cap_maintenance * self.initial_over_maintenance}",
        )
        _require(
            self.initial_over_maintenance > 1,
            "initial_over_maintenance",
            f"must be above 1 so maintenance is below initial margin, was "
            f"{self.initial_over_maintenance}",
        )
        _require(
            self.max_rise_per_step > 0,
            "max_rise_per_step",
            f"must be positive, was {self.max_rise_per_step}",
        )


MarginModel = TieredMargin | OIScaledMargin | SizePremiumMargin | VolScaledMargin
MARGIN_MODELS: dict[str, type] = {
    "tiered": TieredMargin,
    "oi_scaled": OIScaledMargin,
    "size_premium": SizePremiumMargin,
    "vol_scaled": VolScaledMargin,
}


# ---------------------------------------------------------------------------------------------
# Markets, accounts, keepers, oracle
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiquidationConfig:
    """How a breached position is closed and who is paid."""

    penalty: float = 0.01
    keeper_share: float = 0.5
    partial: bool = True
    buffer_ratio: float = 0.02
    min_notional_usd: float = 1_000.0
    max_portion: float = 1.0

    def __post_init__(self) -> None:
        _require(0 <= self.penalty < 1, "penalty", f"must be in [0, 1), was {self.penalty}")
        _require(
            0 <= self.keeper_share <= 1,
            "keeper_share",
            f"must be in [0, 1], was {self.keeper_share}",
        )
        _require(self.buffer_ratio >= 0, "buffer_ratio", f"must be >= 0, was {self.buffer_ratio}")
        _require(
            self.min_notional_usd >= 0,
            "min_notional_usd",
            f"must be >= 0, was {self.min_notional_usd}",
        )
        _require(
            0 < self.max_portion <= 1, "max_portion", f"must be in (0, 1], was {self.max_portion}"
        )


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """One perpetual market."""

    name: str
    initial_price: float
    sigma_annual: float
    margin: MarginModel
    venue: str = ""
    drift_annual: float = 0.0
    tick_size: float = 0.01
    base_quantum_exponent: int = -9
    position_sigma_base: float = 1.0
    oi_cap_base: float = 0.0
    depth_usd: float = 5_000_000.0
    half_spread: float = 0.0001
    impact_half_life_ticks: float = 10.0
    depth_refill_half_life_ticks: float = 5.0
    permanent_impact_fraction: float = 0.3
    basis_half_life_ticks: float = 30.0
    depth_vol_elasticity: float = 1.0
    min_depth_fraction: float = 0.1
    spread_vol_elasticity: float = 1.0
    loss_resolution: Literal["adl", "socialized"] = "adl"
    insurance_fund_usd: float = 1_000_000.0
    insurance_cap_per_block_usd: float = 0.0
    taker_fee: float = 0.0
    funding_interval_ticks: int = 60
    funding_clamp: float = 0.0075
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name), "name", "must not be empty, was ''")
        _require(
            self.initial_price > 0, "initial_price", f"must be positive, was {self.initial_price}"
        )
        _require(self.sigma_annual >= 0, "sigma_annual", f"must be >= 0, was {self.sigma_annual}")
        _require(self.tick_size > 0, "tick_size", f"must be positive, was {self.tick_size}")
        _require(
            -18 <= self.base_quantum_exponent <= 0,
            "base_quantum_exponent",
            f"must be in [-18, 0], was {self.base_quantum_exponent}",
        )
        _require(
            self.position_sigma_base >= 0,
            "position_sigma_base",
            f"must be >= 0, was {self.position_sigma_base}",
        )
        _require(self.oi_cap_base >= 0, "oi_cap_base", f"must be >= 0, was {self.oi_cap_base}")
        _require(self.depth_usd > 0, "depth_usd", f"must be positive, was {self.depth_usd}")
        _require(
            0 <= self.half_spread < 0.1,
            "half_spread",
            f"must be in [0, 0.1), was {self.half_spread}",
        )
        _require(
            self.impact_half_life_ticks > 0,
            "impact_half_life_ticks",
            f"must be positive, was {self.impact_half_life_ticks}",
        )
        for name in ("depth_refill_half_life_ticks", "basis_half_life_ticks"):
            v = getattr(self, name)
            _require(v > 0, name, f"must be positive, was {v}")
        _require(
            0 <= self.permanent_impact_fraction <= 1,
            "permanent_impact_fraction",
            f"must be in [0, 1], was {self.permanent_impact_fraction}",
        )
        _require_non_negative(self, "depth_vol_elasticity", "spread_vol_elasticity")
        _require(
            0 < self.min_depth_fraction <= 1,
            "min_depth_fraction",
            f"must be in (0, 1], was {self.min_depth_fraction}",
        )
        _require(
            self.insurance_fund_usd >= 0,
            "insurance_fund_usd",
            f"must be >= 0, was {self.insurance_fund_usd}",
        )
        _require(
            self.insurance_cap_per_block_usd >= 0,
            "insurance_cap_per_block_usd",
            f"must be >= 0 (0 = no cap), was {self.insurance_cap_per_block_usd}",
        )
        _require(
            0 <= self.taker_fee < 0.1, "taker_fee", f"must be in [0, 0.1), was {self.taker_fee}"
        )
        _require(
            self.funding_interval_ticks >= 0,
            "funding_interval_ticks",
            f"must be >= 0 (0 = no funding), was {self.funding_interval_ticks}",
        )
        _require(
            0 <= self.funding_clamp < 1,
            "funding_clamp",
            f"must be in [0, 1), was {self.funding_clamp}",
        )


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """The starting population: a snapshot of accounts already holding positions."""

    count: int = 10_000
    cross_fraction: float = 0.7
    leverage_min: float = 2.0
    leverage_max: float = 20.0
    maker_collateral_usd: float = 1e9
    order_rate: float = 0.0
    order_size_fraction: float = 0.2
    whales: int = 0
    """Accounts (the first ones) whose positions are ``whale_size_multiple`` times larger:
    concentrated open interest."""
    whale_size_multiple: float = 50.0

    def __post_init__(self) -> None:
        _require(self.count >= 1, "count", f"must be >= 1, was {self.count}")
        _require(
            0 <= self.cross_fraction <= 1,
            "cross_fraction",
            f"must be in [0, 1], was {self.cross_fraction}",
        )
        _require(
            0 < self.leverage_min <= self.leverage_max,
            "leverage_min",
            f"must be positive and <= leverage_max, was {self.leverage_min} > {self.leverage_max}"
            if self.leverage_min > self.leverage_max
            else f"must be positive, was {self.leverage_min}",
        )
        _require(
            self.maker_collateral_usd > 0,
            "maker_collateral_usd",
            f"must be positive, was {self.maker_collateral_usd}",
        )
        _require(
            0 <= self.order_rate <= 1, "order_rate", f"must be in [0, 1], was {self.order_rate}"
        )
        _require(
            0 <= self.whales <= self.count,
            "whales",
            f"must be between 0 and count ({self.count}), was {self.whales}",
        )
        _require(
            self.whale_size_multiple > 0,
            "whale_size_multiple",
            f"must be positive, was {self.whale_size_multiple}",
        )
        _require(
            self.order_size_fraction > 0,
            "order_size_fraction",
            f"must be positive, was {self.order_size_fraction}",
        )


@dataclass(frozen=True, slots=True)
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
    base_rate_per_minute: float = 0.01
    branching_ratio: float = 0.7
    excitation_half_life_ticks: float = 8.0
    move_threshold_sigma: float = 3.0
    move_weight: float = 20.0
    liquidation_weight: float = 1.0
    close_probability: float = 0.3
    topup_probability: float = 0.0
    topup_delay_ticks: int = 4
    topup_target_ratio: float = 1.5

    def __post_init__(self) -> None:
        _require(
            self.momentum_fraction >= 0
            and self.hedger_fraction >= 0
            and self.momentum_fraction + self.hedger_fraction <= 1,
            "momentum_fraction",
            f"and hedger_fraction must be >= 0 and sum to at most 1, was "
            f"{self.momentum_fraction} + {self.hedger_fraction}",
        )
        for name in ("momentum_leverage", "noise_leverage", "hedger_leverage"):
            v = getattr(self, name)
            _require(
                len(v) == 2 and 0 < v[0] <= v[1],
                name,
                f"must be [low, high] with 0 < low <= high, was {list(v)}",
            )
        _require(
            0 <= self.branching_ratio < 1,
            "branching_ratio",
            f"must be in [0, 1) for a stable process, was {self.branching_ratio}",
        )
        _require_non_negative(
            self,
            "base_rate_per_minute",
            "move_threshold_sigma",
            "move_weight",
            "liquidation_weight",
        )
        _require(
            self.excitation_half_life_ticks > 0,
            "excitation_half_life_ticks",
            f"must be positive, was {self.excitation_half_life_ticks}",
        )
        for name in ("close_probability", "topup_probability"):
            v = getattr(self, name)
            _require(0 <= v <= 1, name, f"must be in [0, 1], was {v}")
        _require(
            self.topup_delay_ticks >= 0,
            "topup_delay_ticks",
            f"must be >= 0, was {self.topup_delay_ticks}",
        )
        _require(
            self.topup_target_ratio >= 1,
            "topup_target_ratio",
            f"must be >= 1, was {self.topup_target_ratio}",
        )


@dataclass(frozen=True, slots=True)
class KeepersConfig:
    """Liquidators: how late they see a breach and how many liquidations fit in a block."""

    count: int = 3
    latency_ticks: int = 1
    capacity_per_block: int = 50

    def __post_init__(self) -> None:
        _require(self.count >= 1, "count", f"must be >= 1, was {self.count}")
        _require(
            self.latency_ticks >= 0, "latency_ticks", f"must be >= 0, was {self.latency_ticks}"
        )
        _require(
            self.capacity_per_block >= 1,
            "capacity_per_block",
            f"must be >= 1, was {self.capacity_per_block}",
        )


@dataclass(frozen=True, slots=True)
class OracleConfig:
    """The external index as the venue sees it: late, and sometimes not at all."""

    delay_ticks: int = 1
    stale_probability: float = 0.0
    max_age_ticks: int = 5

    def __post_init__(self) -> None:
        _require(self.delay_ticks >= 0, "delay_ticks", f"must be >= 0, was {self.delay_ticks}")
        _require(
            0 <= self.stale_probability < 1,
            "stale_probability",
            f"must be in [0, 1), was {self.stale_probability}",
        )
        _require(
            self.max_age_ticks >= 1, "max_age_ticks", f"must be >= 1, was {self.max_age_ticks}"
        )


@dataclass(frozen=True, slots=True)
class CongestionConfig:
    """Network congestion when volatility spikes: fewer liquidations fit in a block, keepers
    land later and the oracle lags more.

    Congestion = clip((stress - vol_threshold) / vol_span, 0, 1), where stress is the largest
    ratio of a market's fast EWMA volatility to its ``sigma_annual``.
    """

    enabled: bool = False
    vol_threshold: float = 3.0
    vol_span: float = 10.0
    capacity_loss: float = 0.8
    extra_latency_ticks: int = 3
    extra_oracle_delay_ticks: int = 2

    def __post_init__(self) -> None:
        _require(
            self.vol_threshold >= 0, "vol_threshold", f"must be >= 0, was {self.vol_threshold}"
        )
        _require(self.vol_span > 0, "vol_span", f"must be positive, was {self.vol_span}")
        _require(
            0 <= self.capacity_loss < 1,
            "capacity_loss",
            f"must be in [0, 1), was {self.capacity_loss}",
        )
        _require_non_negative(self, "extra_latency_ticks", "extra_oracle_delay_ticks")


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """What a run records for training: sampled account rows and their breach labels."""

    sample_every_ticks: int = 20
    """Blocks between account samples (0: no account table, e.g. for pure engine runs)."""
    horizons_minutes: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0)

    def __post_init__(self) -> None:
        _require(
            self.sample_every_ticks >= 0,
            "sample_every_ticks",
            f"must be >= 0 (0 = no sampling), was {self.sample_every_ticks}",
        )
        _require(
            len(self.horizons_minutes) >= 1 and all(h > 0 for h in self.horizons_minutes),
            "horizons_minutes",
            f"must be positive and at least one, was {list(self.horizons_minutes)}",
        )


POLICIES = ("static", "vol_scaled", "oi_scaled", "predictive")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How the venue sets requirements on top of each market's margin model, and acts early.

    ``knob`` is the policy's one aggressiveness setting (swept for capital-cost frontiers):

    - ``static``: every requirement is multiplied by knob (>= 1; 1 = the venue's own tiers);
    - ``vol_scaled``: maintenance rate = max(base, knob x EWMA sigma x sqrt(margin period)),
      rising at most ``max_rise_per_step`` per block (anti-procyclicality); IM scales with it;
    - ``oi_scaled``: IM multiplied by 1 + knob x (open interest / opening open interest - 1)
      when open interest has grown (dYdX-style), at most to 100% IM;
    - ``predictive``: acts on forecast breach probabilities p from a forecaster; with the risk
      score s = knob x p, each scored account's MM and IM get a multiplier 1 + min(s,
      addon_cap); new risk-increasing orders in a market are refused while the forecast breach
      notional (sum of s x notional) exceeds ``gate_depth_multiple`` x its book depth per 1%;
      accounts with s >= ``derisk_score`` are reduced by ``derisk_fraction`` of each position
      per block, at most ``derisk_depth_share`` of the book's depth per market and block;
      accounts with s >= ``warn_score`` get a margin call (answered like a breach, with the
      traders' top-up probability and delay), at most once per ``warn_cooldown_ticks``.
      Requirements never fall below the base; when the forecaster fails, the block runs the
      reactive (static, knob 1) policy and the fallback is counted. Accounts without a
      position or already in breach are not scored and get no early action (the reactive path
      handles a breach); an account with a top-up pending gets no margin call.

    With ``allocation = "budget"`` the predictive policy instead spends a budget of knob actions
    per forecast (every ``cadence_ticks`` blocks; knob a whole number): the forecaster returns
    each scored account's breach probability and expected bad debt within H, and the accounts
    whose best action avoids the most expected loss per unit of its cost get it — a margin call
    (avoids the expected loss if answered; costs the deposit back to the traders' top-up target)
    or a de-risk of ``derisk_fraction`` (avoids that fraction of it; costs the fill's spread,
    square-root impact and taker fee). No add-ons or gating: every lever it pulls is one of the
    budget's actions.
    """

    name: Literal["static", "vol_scaled", "oi_scaled", "predictive"] = "static"
    knob: float = 1.0
    margin_period_ticks: int = 60
    max_rise_per_step: float = 0.05
    cadence_ticks: int = 4
    """Blocks between forecasts (predictive)."""
    risk_band_sigmas: float = 6.0
    """Score only accounts whose margin could be used up by a move of this many sigma x
    sqrt(horizon) (0: score every account)."""
    horizon_minutes: float = 5.0
    addon_cap: float = 1.0
    gate_depth_multiple: float = 1.0
    derisk_score: float = 0.5
    derisk_fraction: float = 0.1
    derisk_depth_share: float = 0.05
    warn_score: float = 0.2
    warn_cooldown_ticks: int = 20
    forecast_timeout_s: float = 0.0
    """A forecast that takes longer is discarded as a fallback (0: no limit; with a limit, the
    outputs of a run depend on the machine's speed)."""
    allocation: Literal["threshold", "budget"] = "threshold"
    """How the predictive policy turns forecasts into actions (see above)."""
    budget_actions: Literal["best", "call", "derisk"] = "best"
    """Which actions the budget may buy: the better of a margin call and a de-risk for each
    account, or only one kind."""
    act_on_breached: bool = False
    """Score and act on accounts already in breach too (the ``breached_only`` control arm of
    an evaluation: what the predictive mechanics buy as reactive extras). By default an account
    in breach is left to the reactive path alone."""

    def __post_init__(self) -> None:
        _require(
            self.name in POLICIES,
            "name",
            f"must be one of {', '.join(POLICIES)}, was {self.name!r}",
        )
        _require(
            math.isfinite(self.knob) and self.knob >= 0, "knob", f"must be >= 0, was {self.knob}"
        )
        _require(
            self.name != "static" or self.knob >= 1,
            "knob",
            f"must be >= 1 for the static policy (requirements never fall below the venue's), "
            f"was {self.knob}",
        )
        _require(
            self.allocation in ("threshold", "budget"),
            "allocation",
            f"must be 'threshold' or 'budget', was {self.allocation!r}",
        )
        _require(
            self.budget_actions in ("best", "call", "derisk"),
            "budget_actions",
            f"must be 'best', 'call' or 'derisk', was {self.budget_actions!r}",
        )
        _require(
            self.allocation != "budget" or self.knob == int(self.knob),
            "knob",
            f"must be a whole number of actions per forecast with the budget allocation, "
            f"was {self.knob}",
        )
        for name in ("margin_period_ticks", "cadence_ticks"):
            v = getattr(self, name)
            _require(v >= 1, name, f"must be >= 1, was {v}")
        for name in ("max_rise_per_step", "horizon_minutes", "derisk_score", "warn_score"):
            v = getattr(self, name)
            _require(v > 0, name, f"must be positive, was {v}")
        _require(
            0 < self.derisk_fraction <= 1,
            "derisk_fraction",
            f"must be in (0, 1], was {self.derisk_fraction}",
        )
        _require_non_negative(
            self,
            "risk_band_sigmas",
            "addon_cap",
            "gate_depth_multiple",
            "derisk_depth_share",
            "warn_cooldown_ticks",
            "forecast_timeout_s",
        )


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """Pause liquidations in a market whose oracle is stale or far from the mark."""

    enabled: bool = True
    max_deviation: float = 0.05

    def __post_init__(self) -> None:
        _require(
            self.max_deviation > 0, "max_deviation", f"must be positive, was {self.max_deviation}"
        )


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How the external index moves: the process, its parameters, and cross-market correlation.

    Volatility targets come from each market's ``sigma_annual``. ``correlation`` is the
    correlation between every pair of markets' shocks (calm regime); ``stress_correlation`` the
    same in the stress regime of ``regime``.
    """

    model: Literal["gbm", "garch", "jump", "regime", "replay"] = "gbm"
    correlation: float = 0.0
    stress_correlation: float = 0.0
    garch_alpha: float = 0.08
    garch_beta: float = 0.90
    jump_intensity_per_day: float = 2.0
    jump_mean: float = -0.01
    jump_std: float = 0.02
    regime_enter_per_day: float = 0.5
    regime_exit_per_day: float = 12.0
    stress_vol_multiplier: float = 4.0
    stress_drift_annual: float = -20.0
    stress_jump_multiplier: float = 5.0
    replay_file: str = ""
    replay_market: str = ""
    replay_gaps: Literal["split", "refuse"] = "refuse"
    replay_segment: int = -1
    """Which gap-free segment to replay when gaps are split (-1: the longest)."""

    def __post_init__(self) -> None:
        for name in ("correlation", "stress_correlation"):
            v = getattr(self, name)
            _require(-1 < v < 1, name, f"must be in (-1, 1), was {v}")
        _require(self.garch_alpha >= 0, "garch_alpha", f"must be >= 0, was {self.garch_alpha}")
        _require(self.garch_beta >= 0, "garch_beta", f"must be >= 0, was {self.garch_beta}")
        _require(
            self.garch_alpha + self.garch_beta < 1,
            "garch_beta",
            f"plus garch_alpha must be below 1 (stationary), was "
            f"{self.garch_alpha + self.garch_beta}",
        )
        _require_non_negative(
            self,
            "jump_intensity_per_day",
            "jump_std",
            "regime_enter_per_day",
            "regime_exit_per_day",
            "stress_jump_multiplier",
        )
        _require(
            self.stress_vol_multiplier > 0,
            "stress_vol_multiplier",
            f"must be positive, was {self.stress_vol_multiplier}",
        )
        _require(
            self.model != "replay" or bool(self.replay_file),
            "replay_file",
            "must name a 1-minute bar file when model is 'replay', was ''",
        )
        _require(
            self.replay_segment >= -1,
            "replay_segment",
            f"must be >= 0 (or -1 for the longest), was {self.replay_segment}",
        )


@dataclass(frozen=True, slots=True)
class ShockConfig:
    """A deterministic move of one market's index, added to its random path (a crash or a gap)."""

    market: str
    tick: int
    log_return: float
    over_ticks: int = 1

    def __post_init__(self) -> None:
        _require(self.tick >= 1, "tick", f"must be >= 1, was {self.tick}")
        _require(self.over_ticks >= 1, "over_ticks", f"must be >= 1, was {self.over_ticks}")
        _require(
            abs(self.log_return) <= 5,
            "log_return",
            f"must be within +/-5 (a factor of 148), was {self.log_return}",
        )


@dataclass(frozen=True, slots=True)
class SimConfig:
    """A whole run."""

    markets: tuple[MarketConfig, ...]
    name: str = "custom"
    seed: int = 0
    steps: int = 1_440
    tick_ms: int = 60_000
    venue: str = "generic"
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    keepers: KeepersConfig = field(default_factory=KeepersConfig)
    traders: TradersConfig = field(default_factory=TradersConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    congestion: CongestionConfig = field(default_factory=CongestionConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    shocks: tuple[ShockConfig, ...] = ()

    def __post_init__(self) -> None:
        _require(len(self.markets) >= 1, "markets", "must hold at least one market, was empty")
        names = [m.name for m in self.markets]
        _require(len(set(names)) == len(names), "markets", f"names must be unique, was {names}")
        _require(
            re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name) is not None,
            "name",
            f"must be letters, digits, '_', '-' or '.', was {self.name!r}",
        )
        if self.index.model == "replay":
            _require(
                self.index.replay_market in names,
                "index.replay_market",
                f"must name a market ({', '.join(names)}), was {self.index.replay_market!r}",
            )
            _require(
                60_000 % self.tick_ms == 0,
                "tick_ms",
                f"must divide a 1-minute bar (60000) for a replay, was {self.tick_ms}",
            )
        if len(self.markets) > 1:
            lower = -1.0 / (len(self.markets) - 1)
            for name in ("correlation", "stress_correlation"):
                v = getattr(self.index, name)
                _require(
                    v > lower,
                    f"index.{name}",
                    f"must be above {lower:.3g} for {len(self.markets)} markets (a valid "
                    f"correlation matrix), was {v}",
                )
        for i, shock in enumerate(self.shocks):
            _require(
                shock.market in names,
                f"shocks.{i}.market",
                f"must name a market ({', '.join(names)}), was {shock.market!r}",
            )
        _require(self.seed >= 0, "seed", f"must be >= 0, was {self.seed}")
        _require(
            self.steps >= 1 or (self.steps == 0 and self.index.model == "replay"),
            "steps",
            f"must be >= 1 (or 0 for a whole replay), was {self.steps}",
        )
        _require(self.tick_ms >= 1, "tick_ms", f"must be >= 1, was {self.tick_ms}")
        _require(
            self.steps <= MAX_STEPS, "steps", f"must be at most {MAX_STEPS:,}, was {self.steps}"
        )
        _require(
            self.accounts.count <= MAX_ACCOUNTS,
            "accounts.count",
            f"must be at most {MAX_ACCOUNTS:,}, was {self.accounts.count}",
        )
        opening = self.accounts.maker_collateral_usd + sum(
            m.insurance_fund_usd for m in self.markets
        )
        _require(
            opening <= MAX_USD,
            "accounts.maker_collateral_usd",
            f"plus every market's insurance_fund_usd must be at most {_sci(MAX_USD)} (the "
            f"money a run starts with must leave the int64 ledger room), was {_sci(opening)}",
        )
        need, have = self.memory_estimate(), physical_memory()
        _require(
            have is None or need <= 0.8 * have,
            "accounts.count",
            f"and steps need about {need / 2**30:.1f} GiB, more than 80% of this machine's "
            f"{(have or 0) / 2**30:.1f} GiB, was {self.accounts.count:,} accounts x "
            f"{self.steps:,} steps",
        )

    def memory_estimate(self) -> int:
        """Return about how many bytes a run of this config holds at its peak: the account
        columns and their per-block scratch, the per-block market records, the sampled
        account history and the event log (an upper estimate, for refusing runs that cannot
        fit before anything is allocated)."""
        n, m = self.accounts.count, len(self.markets)
        steps = max(self.steps, 1)
        accounts = n * (m * 8 * 24 + 256)
        records = steps * m * 8 * 64
        every = self.history.sample_every_ticks
        history = 0 if every <= 0 else (steps // every + 1) * n * 8 * 40
        events = steps * min(n, 10_000) * 8
        return int(accounts + records + history + events)

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved config as plain data (what the manifest records)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Return a stable SHA-256 of the resolved config."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data, strictly
# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is float:
        _require(
            isinstance(value, int | float) and not isinstance(value, bool),
            key,
            f"must be a number, was {value!r}",
        )
        try:
            x = float(value)
        except OverflowError:  # an integer beyond float64 (10**400)
            x = math.inf
        shown = (
            repr(value)
            if len(repr(value)) <= 30
            else f"{repr(value)[:12]}... ({len(repr(value))} digits)"
        )
        _require(math.isfinite(x), key, f"must be a finite number, was {shown}")
        _bound_number(key, x)
        return x
    if tp is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, was {value!r}",
        )
        _require(abs(value) <= MAX_INT, key, f"must be at most 2**53 in size, was {value!r}")
        return value
    if tp is bool:
        _require(isinstance(value, bool), key, f"must be true or false, was {value!r}")
        return value
    if tp is str:
        _require(isinstance(value, str), key, f"must be a string, was {value!r}")
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        _require(value in allowed, key, f"must be one of {list(allowed)}, was {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        _require(isinstance(value, list | tuple), key, f"must be a list, was {value!r}")
        return tuple(_build(item_tp, v, f"{key}.{i}") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union) and tp == MarginModel:
        _require(isinstance(value, dict), key, f"must be a table, was {value!r}")
        model = value.get("model")
        _require(
            model in MARGIN_MODELS,
            f"{key}.model",
            f"must be one of {sorted(MARGIN_MODELS)}, was {model!r}",
        )
        return _build(MARGIN_MODELS[model], value, key)
    if dataclasses.is_dataclass(tp):
        _require(isinstance(value, dict), key, f"must be a table, was {value!r}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        for k in value:
            _require(
                k in known,
                f"{key}.{k}" if key else str(k),
                f"is not a known key (known: {', '.join(sorted(known))}), was {value[k]!r}",
            )
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{key}.{f.name}" if key else f.name
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{sub} is required, was missing")
        try:
            return typing.cast(Any, tp)(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{key}.{e}" if key else str(e)) from None
    raise TypeError(f"unsupported config type {_type_name(tp)} at {key}")  # a bug, not user input


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value`` where value is a TOML value or a bare word (taken as a string)."""
    if "=" not in text:
        raise ConfigError(f"--set must look like key=value, was {text!r}")
    path, raw = text.split("=", 1)
    path = path.strip()
    raw = raw.strip()
    if not path or any(not p for p in path.split(".")):
        raise ConfigError(f"--set key must be a dotted path, was {path!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw in ("true", "false") or not _BARE_WORD.match(raw):
            raise ConfigError(f"--set {path} value does not parse, was {raw!r}") from None
        value = raw
    return path.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` in ``data``; list items by index or by their ``name``."""
    node: Any = data
    dotted = ".".join(path)
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(path[: i + 1]))
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(path[:i])} is not a table, was {node!r}")
    last = path[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, dotted)
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {dotted}: parent is not a table, was {node!r}")


def _list_index(items: list[Any], part: str, key: str) -> int:
    if part.isdigit():
        idx = int(part)
        if idx >= len(items):
            raise ConfigError(f"--set {key}: index {idx} is out of range, was {len(items)} items")
        return idx
    for idx, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    raise ConfigError(f"--set {key}: no item named {part!r}")


def _list_item(items: list[Any], part: str, key: str) -> Any:
    return items[_list_index(items, part, key)]


def resolve(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> SimConfig:
    """Merge venue presets under raw config data, apply overrides, and validate.

    Overrides are applied after the presets are merged, so ``--set`` can reach a preset's values
    (``markets.0.margin.brackets.0.maintenance_margin=0.03``); the venue they name (``--set
    venue=dydx_v4``) picks the presets.
    """
    parsed = [parse_override(text) for text in overrides]
    with_overrides = copy.deepcopy(data)
    for path, value in parsed:
        apply_override(with_overrides, path, value)
    merged = _merge_presets(data, with_overrides)
    for path, value in parsed:
        apply_override(merged, path, value)
    return _build(SimConfig, merged, "")


def _merge_presets(data: dict[str, Any], venues_from: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` over the defaults of the venues that ``venues_from`` names."""
    from engine.venues import PRESETS, preset_defaults

    venue = venues_from.get("venue", "generic")
    _require(venue in PRESETS, "venue", f"must be one of {sorted(PRESETS)}, was {venue!r}")
    top_defaults = {k: v for k, v in preset_defaults(venue).items() if k != "market"}
    merged = _deep_merge(top_defaults, data)
    markets = data.get("markets")
    named = venues_from.get("markets")
    if not isinstance(markets, list):
        return merged
    out = []
    for i, m in enumerate(markets):
        _require(isinstance(m, dict), f"markets.{i}", f"must be a table, was {m!r}")
        own = named[i] if isinstance(named, list) and i < len(named) else m
        mv = (own.get("venue") if isinstance(own, dict) else None) or venue
        _require(
            mv in PRESETS, f"markets.{i}.venue", f"must be one of {sorted(PRESETS)}, was {mv!r}"
        )
        base = preset_defaults(mv)["market"]
        # A market's own margin table replaces the preset's whole (a different model's keys
        # would otherwise be merged in and rejected as unknown).
        mm = _deep_merge({k: v for k, v in base.items() if k != "margin"}, m)
        mm.setdefault("margin", copy.deepcopy(base["margin"]))
        mm["venue"] = mv
        out.append(mm)
    merged["markets"] = out
    return merged


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SimConfig:
    """Read a TOML config file, apply ``--set`` overrides, validate, and return it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte {e.start}: {e.reason})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    # A replay file named in a config file is relative to that file (a --set one to the
    # current folder), so scenario files work from wherever they are run.
    index = data.get("index")
    if isinstance(index, dict) and isinstance(index.get("replay_file"), str):
        replay = Path(index["replay_file"])
        if index["replay_file"] and not replay.is_absolute():
            index["replay_file"] = str((p.parent / replay).resolve())
    return resolve(data, overrides)
