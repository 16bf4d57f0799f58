"""Venue presets: parameter sets (defaults under a config) and the venues' formula modules.

A config names a venue at the top (``venue = "dydx_v4"``) or per market; the preset's values are
defaults that the config overrides key by key. The formula variants live in
:mod:`engine.venues.dydx_v4`, :mod:`engine.venues.drift_v2` and :mod:`engine.venues.hyperliquid`;
:mod:`engine.liquidation` and :mod:`engine.margin` call them for markets under that preset.
"""

from __future__ import annotations

import copy
from typing import Any

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
        "keepers": {"count": 1, "latency_ticks": 1, "capacity_per_block": 50},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "oi_scaled",
                "initial_margin": 0.05,
                "maintenance_fraction": 0.6,
                "oi_lower_cap_usd": 40_000_000.0,
                "oi_upper_cap_usd": 100_000_000.0,
            },
            "loss_resolution": "adl",
            # 600% x (IMF - MMF), dYdX's funding clamp.
            "funding_clamp": 0.12,
            "liquidation": {
                "penalty": 0.015,
                "keeper_share": 0.0,
                "partial": True,
                "buffer_ratio": 0.0,
                "min_notional_usd": 1_000.0,
                "max_portion": 0.1,
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
            "funding_clamp": 0.0125,
            "liquidation": {
                # liquidator fee 1% (keeper share) and an IF fee of at most 1%.
                "penalty": 0.02,
                "keeper_share": 0.5,
                "partial": True,
                "buffer_ratio": 0.02,
                "min_notional_usd": 0.0,
                "max_portion": 1.0,
            },
        },
    },
    # Hyperliquid BTC: 40x to $150M, 20x above; market order for the full size, 20% at a time
    # above $100k; ADL (b3).
    "hyperliquid": {
        "keepers": {"count": 1, "latency_ticks": 0, "capacity_per_block": 100},
        "market": {
            **_COMMON_MARKET,
            "margin": {
                "model": "tiered",
                "brackets": [
                    {"floor_usd": 0.0, "initial_margin": 0.025, "maintenance_margin": 0.0125},
                    {
                        "floor_usd": 150_000_000.0,
                        "initial_margin": 0.05,
                        "maintenance_margin": 0.025,
                    },
                ],
            },
            "loss_resolution": "adl",
            "funding_clamp": 0.04,
            "liquidation": {
                "penalty": 0.0,
                "keeper_share": 0.0,
                "partial": False,
                "buffer_ratio": 0.0,
                "min_notional_usd": 100_000.0,
                "max_portion": 0.2,
            },
        },
    },
}


def preset_defaults(name: str) -> dict[str, Any]:
    """Return a deep copy of a preset's defaults (top-level sections and a ``market`` table)."""
    return copy.deepcopy(PRESETS[name])
