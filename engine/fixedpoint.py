"""Exact integer kernels for parts-per-million arithmetic on int64 arrays.

Venues state margin as ``ceil(notional * ppm / 1e6)``. ``notional * ppm`` overflows int64 once a
notional passes 9.2e12 quote quantums ($9.2M), and float64 loses the last unit, so these kernels
split ``x = a * 1e6 + b`` and compute ``a * ppm + ceil(b * ppm / 1e6)``, which is exact for every
``0 <= x < 2**63`` and ``0 <= ppm <= 1e6``.
"""

from __future__ import annotations

import numpy as np

PPM = 1_000_000
_INT64_MAX = 2**63 - 1


def ceil_div(num: np.ndarray, den: int) -> np.ndarray:
    """Return ceil(num / den) for int64 ``num`` and a positive int ``den``."""
    return -np.floor_divide(-num, den)


def mul_ppm(x: np.ndarray, ppm: np.ndarray | int, rounding: str) -> np.ndarray:
    """Return ``x * ppm / 1e6`` rounded ``"up"`` or ``"down"``, exactly, as int64.

    Parameters
    ----------
    x : int64 array, non-negative, quote quantums.
    ppm : int64 array broadcastable to ``x`` (or an int) in [0, 1e6].
    """
    x = np.asarray(x, dtype=np.int64)
    if rounding not in ("up", "down"):
        raise ValueError(f"rounding must be 'up' or 'down', was {rounding!r}")
    rate: np.ndarray | np.int64
    if isinstance(ppm, int | np.integer):  # one rate (the usual call): no array to scan
        top = int(ppm)
        rate = np.int64(ppm)
    else:
        rate = np.asarray(ppm, dtype=np.int64)
        top = int(rate.max()) if rate.size else 0
    if x.size and int(x.max()) <= (_INT64_MAX - PPM) // max(top, 1):
        # No overflow possible: one product and one division (the common case); x >= 0, so
        # rounding up is adding PPM - 1 first.
        num = x * rate
        return (num + (PPM - 1)) // PPM if rounding == "up" else num // PPM
    hi = x // PPM
    lo = x - hi * PPM  # np.divmod is several times slower than this on int64
    part = lo * rate
    if rounding == "up":
        return hi * rate + ceil_div(part, PPM)
    return hi * rate + part // PPM
