"""Ledger units and the one place where float amounts become integers.

Ledger amounts (collateral, transfers, fees, insurance fund, bad debt) are int64 *quote quantums*
(1e-6 of the quote currency, as dYdX). Position sizes are int64 *base quantums*, whose size is set
per market by ``base_quantum_exponent`` (dYdX's atomic resolution: -9 means 1e-9 base units).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from engine.errors import PredliqError

QUOTE_QUANTUMS_PER_UNIT = 1_000_000
"""Quote quantums in one unit of the quote currency (1 USD = 1,000,000 quantums)."""

Rounding = Literal["up", "down", "nearest"]

INT64_BOUND = 2**63
"""Every ledger integer x satisfies -2**63 <= x < 2**63: about 9.2e12 quote units of money."""


class LedgerOverflowError(PredliqError, ValueError):
    """An amount the int64 ledger cannot hold: the run stops rather than wrap (a refusal of the
    config that led there, reported as one line)."""


def as_int64(a: float | np.ndarray, what: str = "an amount") -> np.ndarray:
    """Cast float64 values already rounded to whole numbers to int64, refusing any the cast
    would wrap or make up (beyond +/-2**63, infinite or NaN: numpy's cast gives -2**63 for
    them, silently)."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    a = a.astype(np.float64, copy=False)
    if a.size and not (a.max() < 2.0**63 and a.min() >= -(2.0**63)):  # NaN fails both
        worst = a[~(np.abs(a) < 2.0**63)].flat[0]
        raise LedgerOverflowError(
            f"{what} of {worst:.3g} quantums is beyond the int64 ledger (|x| < 9.2e18)"
        )
    return a.astype(np.int64)


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
    return as_int64(r, "a quote amount")  # 0-d for a scalar


def usd_to_quote_quantums(usd: float | np.ndarray, rounding: Rounding) -> np.ndarray:
    """Convert an amount in quote currency units (e.g. USD) to int64 quote quantums."""
    return to_quote_quantums(np.asarray(usd, dtype=np.float64) * QUOTE_QUANTUMS_PER_UNIT, rounding)


def base_to_quantums(base: float | np.ndarray, exponent: int) -> np.ndarray:
    """Convert a size in base units to int64 base quantums, rounding to nearest (0-d for a
    scalar)."""
    return as_int64(np.rint(np.asarray(base, dtype=np.float64) * 10.0 ** (-exponent)), "a size")


def quote_per_base_quantum(price: float | np.ndarray, exponent: int) -> np.ndarray:
    """Return the price in quote quantums per base quantum for a price in quote units per base unit.

    ``value_q = size_q * quote_per_base_quantum(price, exponent)`` is a position's value in quote
    quantums.
    """
    return np.asarray(price, dtype=np.float64) * (QUOTE_QUANTUMS_PER_UNIT * 10.0**exponent)
