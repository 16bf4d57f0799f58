"""Ledger units and the one place where float amounts become integers.

Ledger amounts (collateral, transfers, fees, insurance fund, bad debt) are int64 *quote quantums*
(1e-6 of the quote currency, as dYdX). Position sizes are int64 *base quantums*, whose size is set
per market by ``base_quantum_exponent`` (dYdX's atomic resolution: -9 means 1e-9 base units).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

QUOTE_QUANTUMS_PER_UNIT = 1_000_000
"""Quote quantums in one unit of the quote currency (1 USD = 1,000,000 quantums)."""

Rounding = Literal["up", "down", "nearest"]


def to_quote_quantums(x: float | np.ndarray, rounding: Rounding) -> np.ndarray:
    """Convert an amount already expressed in quote quantums (float) to int64, rounding as named.

    ``rounding="up"`` rounds toward +inf, ``"down"`` toward -inf, ``"nearest"`` half to even.
    Never truncate (``int(x)``): truncation rounds toward zero, which is up for negatives.
    """
    a = np.asarray(x, dtype=np.float64)
    if rounding == "up":
        r = np.ceil(a)
    elif rounding == "down":
        r = np.floor(a)
    elif rounding == "nearest":
        r = np.rint(a)
    else:
        raise ValueError(f"rounding must be 'up', 'down' or 'nearest', was {rounding!r}")
    return r.astype(np.int64)  # 0-d for a scalar


def usd_to_quote_quantums(usd: float | np.ndarray, rounding: Rounding) -> np.ndarray:
    """Convert an amount in quote currency units (e.g. USD) to int64 quote quantums."""
    return to_quote_quantums(np.asarray(usd, dtype=np.float64) * QUOTE_QUANTUMS_PER_UNIT, rounding)


def base_to_quantums(base: float | np.ndarray, exponent: int) -> np.ndarray:
    """Convert a size in base units to int64 base quantums, rounding to nearest (0-d for a
    scalar)."""
    return np.rint(np.asarray(base, dtype=np.float64) * 10.0 ** (-exponent)).astype(np.int64)


def quote_per_base_quantum(price: float | np.ndarray, exponent: int) -> np.ndarray:
    """Return the price in quote quantums per base quantum for a price in quote units per base unit.

    ``value_q = size_q * quote_per_base_quantum(price, exponent)`` is a position's value in quote
    quantums.
    """
    return np.asarray(price, dtype=np.float64) * (QUOTE_QUANTUMS_PER_UNIT * 10.0**exponent)
