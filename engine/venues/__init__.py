"""Venue presets: parameter sets (defaults under a config) and the venues' formula modules.

A config names a venue at the top (``venue = "dydx_v4"``) or per market; the preset's values are
defaults that the config overrides key by key. The formula variants live in
:mod:`engine.venues.dydx_v4`, :mod:`engine.venues.drift_v2`, :mod:`engine.venues.hyperliquid`
and :mod:`engine.venues.binance_um`;
:mod:`engine.liquidation` and :mod:`engine.margin` call them for markets under that preset.

The rules each preset applies over blocks (per-block limits, cooldowns, the liquidator vault,
Drift's liquidation buffer, insurance tiers, funding periods), with their sources and the
figures of the tests that show them, are in ``docs/venues.md``.
"""

from __future__ import annotations

import copy
from typing import Any

from engine.fixedpoint import PPM
from engine.venues import binance_um, drift_v2, dydx_v4, hyperliquid

# dYdX Mid-Cap tier: IMF 5%, maintenance fraction 60% (MMF 3%).
_DYDX_IMF_PPM = 50_000
_DYDX_FRACTION_PPM = 600_000

_COMMON_MARKET: dict[str, Any] = {
    "tick_size": 0.1,
    "base_quantum_exponent": -9,
    "depth_usd": 5_000_000.0,
    "half_spread": 0.0001,
    "impact_half_life_ticks": 10.0,
    "insurance_fund_usd": 1_000_000.0,
    "insurance_cap_per_block_usd": 0.0,
    "funding_interval_ticks": 60,
}

PRESETS: dict[str, dict[str, Any]] = {
    # A neutral venue: Binance-like brackets, partial liquidation with a buffer, ADL.
    "generic": {
        "keepers": {"count": 3, "latency_ticks": 1, "capacity_per_block": 50},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "tiered",
                "brackets": [
                    {"floor_usd": 0.0, "initial_margin": 0.05, "maintenance_margin": 0.025},
                    {"floor_usd": 1_000_000.0, "initial_margin": 0.10, "maintenance_margin": 0.05},
                    {"floor_usd": 5_000_000.0, "initial_margin": 0.20, "maintenance_margin": 0.10},
                ],
            },
            "loss_resolution": "adl",
            "funding_clamp": 0.0075,
            "liquidation": {
                "penalty": 0.01,
                "keeper_share": 0.5,
                "partial": True,
                "buffer_ratio": 0.02,
                "min_notional_usd": 1_000.0,
                "max_portion": 1.0,
            },
        },
    },
    # dYdX v4 mainnet launch genesis, Mid-Cap tier with OI caps (venues.md b1).
    "dydx_v4": {
        "keepers": {
            "count": 1,
            "latency_ticks": 1,
            "capacity_per_block": dydx_v4.MAX_LIQUIDATION_ATTEMPTS_PER_BLOCK,
        },
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "oi_scaled",
                "initial_margin": _DYDX_IMF_PPM / PPM,
                "maintenance_fraction": _DYDX_FRACTION_PPM / PPM,
                "oi_lower_cap_usd": 40_000_000.0,
                "oi_upper_cap_usd": 100_000_000.0,
            },
            "loss_resolution": "adl",
            # Deleveraging walks the opposite side from a pseudo-random offset, <= 500 accounts.
            "adl_order": "walk",
            "adl_max_candidates": dydx_v4.MAX_DELEVERAGING_SUBACCOUNTS_TO_ITERATE,
            # 600% x (IMF - MMF), dYdX's clamp on the 8-hour rate; an eighth is paid each hour.
            "funding_rate_hours": dydx_v4.FUNDING_RATE_HOURS,
            "funding_clamp_on": "rate",
            "funding_clamp": dydx_v4.max_abs_funding_clamp_ppm(
                dydx_v4.FUNDING_RATE_CLAMP_FACTOR_PPM, _DYDX_IMF_PPM, _DYDX_FRACTION_PPM
            )
            / PPM,
            "liquidation": {
                "penalty": dydx_v4.MAX_LIQUIDATION_FEE_PPM / PPM,
                "keeper_share": 0.0,
                "partial": True,
                "buffer_ratio": 0.0,
                "min_notional_usd": dydx_v4.MIN_POSITION_NOTIONAL_LIQUIDATED / PPM,
                "max_portion": dydx_v4.MAX_POSITION_PORTION_LIQUIDATED_PPM / PPM,
                "max_notional_per_block_usd": dydx_v4.MAX_NOTIONAL_LIQUIDATED / PPM,
                "max_insurance_lost_per_block_usd": dydx_v4.MAX_QUANTUMS_INSURANCE_LOST / PPM,
            },
        },
    },
    # Drift v2: size-premium margin, buffer-sized partial liquidation, socialized loss (b2).
    "drift_v2": {
        "keepers": {"count": 5, "latency_ticks": 1, "capacity_per_block": 30},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "size_premium",
                "initial_margin": 0.10,
                "maintenance_margin": 0.05,
                "imf_factor": 0.0005,
            },
            "loss_resolution": "socialized",
            # Tier A (BTC, ETH, SOL): the fund may pay up to $100M over the market's life; the
            # fee pool pays before a loss is socialized.
            "contract_tier": "A",
            "fee_pool_absorbs": True,
            "funding_clamp": 0.0125,
            "liquidation": {
                # liquidator fee 1% (keeper share) and an IF fee of at most 1%.
                "penalty": 0.02,
                "keeper_share": 0.5,
                "partial": True,
                "buffer_ratio": drift_v2.DEFAULT_LIQUIDATION_MARGIN_BUFFER_RATIO
                / drift_v2.MARGIN_PRECISION,
                "stay_until_buffer": True,
                "min_notional_usd": 0.0,
                "max_portion": 1.0,
            },
        },
    },
    # Hyperliquid BTC: 40x to $150M, 20x above; market order for the full size, 20% at a time
    # above $100k with a 30 s cooldown; below 2/3 of MM the liquidator vault takes over; ADL (b3).
    "hyperliquid": {
        "keepers": {"count": 1, "latency_ticks": 0, "capacity_per_block": 100},
        # The liquidator vault; $10M is a scale choice matched to the default $5M books.
        "vault": {"collateral_usd": 10_000_000.0, "unwind_share": 0.2},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "tiered",
                "brackets": [
                    {
                        "floor_usd": float(floor),
                        "initial_margin": 1.0 / lev,
                        "maintenance_margin": hyperliquid.maintenance_rate_ppm(lev) / PPM,
                    }
                    for floor, lev in hyperliquid.BTC_MAX_LEVERAGE
                ],
            },
            "loss_resolution": "adl",
            "adl_rank_price": "previous_oracle",
            "mark": {"model": "median_of_three", "premium_ema_ms": hyperliquid.MARK_EMA_MS},
            # An 8-hour rate paid hourly at 1/8, each payment capped at 4%.
            "funding_rate_hours": 8.0,
            "funding_clamp_on": "payment",
            "funding_clamp": 0.04,
            "liquidation": {
                "penalty": 0.0,
                "keeper_share": 0.0,
                "partial": False,
                "buffer_ratio": 0.0,
                "min_notional_usd": 100_000.0,
                "max_portion": 0.2,
                "cooldown_ms": hyperliquid.CHUNK_COOLDOWN_MS,
                "backstop_ratio": hyperliquid.BACKSTOP_RATIO,
            },
        },
    },
    # Binance USD-M BTCUSDT: brackets with maintenance amounts (2021-03-18 table), one IOC that
    # restores margin, a clearance fee of up to 0.5% to the insurance fund, mark = index + 5-min
    # moving average of the basis, ADL by profit % x effective leverage (docs/venues.md).
    "binance_um": {
        "keepers": {"count": 1, "latency_ticks": 0, "capacity_per_block": 1_000},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "tiered",
                "brackets": [
                    {
                        "floor_usd": float(floor),
                        "initial_margin": im,
                        "maintenance_margin": mm,
                        "maintenance_amount_usd": float(amount),
                    }
                    for floor, im, mm, amount in binance_um.BTCUSDT_BRACKETS
                ],
            },
            "loss_resolution": "adl",
            "mark": {"model": "index_basis_ma", "basis_window_ms": binance_um.BASIS_WINDOW_MS},
            "liquidation": {
                "penalty": binance_um.CLEARANCE_FEE,
                "keeper_share": 0.0,
                "partial": True,
                "buffer_ratio": 0.0,
                "min_notional_usd": 0.0,
                "max_portion": 1.0,
            },
        },
    },
}


def preset_defaults(name: str) -> dict[str, Any]:
    """Return a deep copy of a preset's defaults (top-level sections and a ``market`` table)."""
    return copy.deepcopy(PRESETS[name])
