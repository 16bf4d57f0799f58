"""Typed, strict config: TOML under venue preset defaults, then overrides, as frozen dataclasses.

One module per part of the venue, each section declaring its fields' ranges once in their
annotations (:mod:`engine.config.ranges`); every error names the key and the value, e.g.
``markets.0.margin.brackets.0.maintenance_margin must be below initial_margin, was 0.1 >= 0.05``.

- :mod:`~engine.config.checks` — ConfigError and the engine's bounds;
- :mod:`~engine.config.ranges` — declared field ranges and the ``section`` decorator;
- :mod:`~engine.config.margin` — the margin models;
- :mod:`~engine.config.market` — a market and its liquidation rules;
- :mod:`~engine.config.population` — accounts and traders;
- :mod:`~engine.config.operations` — keepers, oracle, congestion, circuit breakers;
- :mod:`~engine.config.policy` — the margin policy;
- :mod:`~engine.config.prices` — the index process and shocks;
- :mod:`~engine.config.run` — a whole run (SimConfig) and its history;
- :mod:`~engine.config.loading` — reading TOML, presets and ``--set`` overrides.

Everything is importable from ``engine.config`` itself.
"""

from engine.config.checks import (
    MAX_ACCOUNTS,
    MAX_ANNUAL,
    MAX_INT,
    MAX_PRICE,
    MAX_STEPS,
    MAX_USD,
    ConfigError,
)
from engine.config.loading import apply_override, load_config, parse_override, resolve
from engine.config.margin import (
    MARGIN_MODELS,
    Bracket,
    MarginModel,
    OIScaledMargin,
    SizePremiumMargin,
    TieredMargin,
    VolScaledMargin,
)
from engine.config.market import LiquidationConfig, MarkConfig, MarketConfig
from engine.config.operations import (
    CircuitBreakerConfig,
    CongestionConfig,
    KeepersConfig,
    OracleConfig,
    VaultConfig,
)
from engine.config.policy import POLICIES, PolicyConfig
from engine.config.population import AccountsConfig, TradersConfig
from engine.config.prices import IndexConfig, ShockConfig
from engine.config.ranges import Range
from engine.config.run import HistoryConfig, SimConfig, physical_memory

__all__ = [
    "MARGIN_MODELS",
    "MAX_ACCOUNTS",
    "MAX_ANNUAL",
    "MAX_INT",
    "MAX_PRICE",
    "MAX_STEPS",
    "MAX_USD",
    "POLICIES",
    "AccountsConfig",
    "Bracket",
    "CircuitBreakerConfig",
    "CongestionConfig",
    "ConfigError",
    "HistoryConfig",
    "IndexConfig",
    "KeepersConfig",
    "LiquidationConfig",
    "MarginModel",
    "MarkConfig",
    "MarketConfig",
    "OIScaledMargin",
    "OracleConfig",
    "PolicyConfig",
    "Range",
    "ShockConfig",
    "SimConfig",
    "SizePremiumMargin",
    "TieredMargin",
    "TradersConfig",
    "VaultConfig",
    "VolScaledMargin",
    "apply_override",
    "load_config",
    "parse_override",
    "physical_memory",
    "resolve",
]
