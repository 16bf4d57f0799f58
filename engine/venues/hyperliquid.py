"""Hyperliquid margin formulas (from its public docs; see ``shared/reference/venues.md`` b3).

Amounts in quote quantums, rates in ppm. Tiers are margin brackets by position notional:
``MM = notional x mmr(tier) - deduction(tier)`` with the deduction that makes MM continuous.
"""

from __future__ import annotations

from fractions import Fraction

from engine.fixedpoint import PPM

CHUNK_COOLDOWN_MS = 30_000
"""Least time between two 20% liquidation orders of one position above $100k."""
BACKSTOP_RATIO = 2 / 3
"""Below this share of maintenance margin the liquidator vault takes the account over."""
MARK_EMA_MS = 150_000
"""Window of the EMA of (mid - oracle) in the first term of the mark price's median."""

BTC_MAX_LEVERAGE: tuple[tuple[int, int], ...] = ((0, 40), (150_000_000, 20))
"""BTC on mainnet: (notional floor in USD, max leverage): 40x up to $150M, 20x above."""


def maintenance_rate_ppm(max_leverage: int) -> int:
    """Return the maintenance margin rate in ppm: half the initial rate at max leverage."""
    return PPM // (2 * max_leverage)


def maintenance_deductions(lower_bounds: list[int], rates_ppm: list[int]) -> list[int]:
    """Return each tier's deduction in quote quantums (exact when bounds are whole dollars).

    ``deduction(0) = 0``; ``deduction(n) = deduction(n-1) + lower_bound(n) x (mmr(n) - mmr(n-1))``.
    """
    out = [0]
    for n in range(1, len(lower_bounds)):
        out.append(out[-1] + lower_bounds[n] * (rates_ppm[n] - rates_ppm[n - 1]) // PPM)
    return out


def liquidation_price(
    price: float,
    side: int,
    margin_available: float,
    position_size: float,
    maintenance_leverage: float,
) -> float:
    """Return the price at which an account's margin available reaches zero.

    ``liq = price - side x margin_available / size / (1 - l x side)``, ``l = 1/maintenance
    leverage``, side +1 long / -1 short, margin available = account value - MM required.
    """
    lev = Fraction(1) / Fraction(maintenance_leverage)
    return float(
        Fraction(price)
        - side * Fraction(margin_available) / Fraction(abs(position_size)) / (1 - lev * side)
    )
