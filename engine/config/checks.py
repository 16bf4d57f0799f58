"""What every config section shares: the error, the engine's bounds, and how a refusal reads:
the key, what it must be, and what it was (``markets.0.tick_size must be positive, was 0.0``)."""

from __future__ import annotations

import re

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


def require(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError("<key> <message>") unless ``cond``."""
    if not cond:
        raise ConfigError(f"{key} {message}")


def sci(x: float) -> str:
    """1e12, 2.5e13, 300: numbers in messages as a person writes them."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.6g}")


def bound_number(key: str, x: float) -> None:
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
    require(abs(x) <= limit, key, f"must be at most {sci(limit)} ({what}), was {sci(x)}")
