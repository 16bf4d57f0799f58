"""dYdX v4 margin and liquidation formulas, in dYdX's own units and names.

Transcribed from dydxprotocol/v4-chain (protocol/x/perpetuals/types/liquidity_tier.go,
protocol/x/clob/keeper/liquidations.go); see ``shared/reference/venues.md`` section b1.
Units: quote quantums (1 USDC = 1e6), base quantums (atomic resolution per market), parts per
million (ppm). Scalar functions compute with Python integers and fractions, exactly as dYdX's
``big.Int``/``big.Rat`` code; ``*_array`` versions are the int64 kernels the step loop uses.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from engine.fixedpoint import PPM, mul_ppm
from engine.units import as_int64

# Mainnet launch genesis (protocol/testing/mainnet/genesis.json).
MAX_LIQUIDATION_FEE_PPM = 15_000
BANKRUPTCY_ADJUSTMENT_PPM = 1_000_000
SPREAD_TO_MAINTENANCE_MARGIN_RATIO_PPM = 1_500_000
MAX_POSITION_PORTION_LIQUIDATED_PPM = 100_000
MIN_POSITION_NOTIONAL_LIQUIDATED = 1_000 * PPM
FUNDING_RATE_CLAMP_FACTOR_PPM = 6_000_000
MAX_LIQUIDATION_ATTEMPTS_PER_BLOCK = 50
MAX_NOTIONAL_LIQUIDATED = 100_000 * PPM
"""Subaccount block limit: most notional of one subaccount liquidated per block (quote quantums)."""
MAX_QUANTUMS_INSURANCE_LOST = 1_000_000 * PPM
"""Subaccount block limit: most the insurance fund may lose on one subaccount per block."""
MAX_DELEVERAGING_SUBACCOUNTS_TO_ITERATE = 500
FUNDING_RATE_HOURS = 8
"""dYdX quotes (and clamps) an 8-hour funding rate and pays an eighth of it every hour."""


def _ceil_frac(x: Fraction) -> int:
    return math.ceil(x)


# ---------------------------------------------------------------------------------------------
# Margin (liquidity_tier.go)
# ---------------------------------------------------------------------------------------------


def maintenance_margin_ppm(initial_margin_ppm: int, maintenance_fraction_ppm: int) -> int:
    """Return the maintenance margin fraction in ppm: IMF x maintenance fraction, rounded down."""
    return initial_margin_ppm * maintenance_fraction_ppm // PPM


def max_abs_funding_clamp_ppm(
    funding_rate_clamp_factor_ppm: int, initial_margin_ppm: int, maintenance_fraction_ppm: int
) -> int:
    """Return the largest absolute funding rate in ppm: clamp factor x (IMF - MMF), rounded down."""
    mmf = maintenance_margin_ppm(initial_margin_ppm, maintenance_fraction_ppm)
    return funding_rate_clamp_factor_ppm * (initial_margin_ppm - mmf) // PPM


def adjusted_initial_margin_ppm(
    initial_margin_ppm: int,
    open_interest_lower_cap: int,
    open_interest_upper_cap: int,
    open_interest_notional: int,
) -> int:
    """Return the open-interest-scaled initial margin fraction (OIMF) in ppm, rounded down.

    Below the lower cap (or with the upper cap 0, i.e. disabled) it is the base IMF; above the
    upper cap it is 100%; in between it rises linearly.
    """
    if open_interest_upper_cap == 0 or open_interest_notional <= open_interest_lower_cap:
        return initial_margin_ppm
    if open_interest_notional >= open_interest_upper_cap:
        return PPM
    span = open_interest_upper_cap - open_interest_lower_cap
    over = open_interest_notional - open_interest_lower_cap
    return initial_margin_ppm + (PPM - initial_margin_ppm) * over // span


def initial_margin_quote_quantums(
    quote_quantums: int,
    initial_margin_ppm: int,
    open_interest_lower_cap: int = 0,
    open_interest_upper_cap: int = 0,
    open_interest_notional: int = 0,
) -> int:
    """Return the initial margin requirement for a notional in quote quantums, rounded up."""
    imf = adjusted_initial_margin_ppm(
        initial_margin_ppm, open_interest_lower_cap, open_interest_upper_cap, open_interest_notional
    )
    return _ceil_frac(Fraction(abs(quote_quantums) * imf, PPM))


def maintenance_margin_quote_quantums(
    quote_quantums: int, initial_margin_ppm: int, maintenance_fraction_ppm: int
) -> int:
    """Return the maintenance margin requirement: ceil(ceil(notional x base IMF) x fraction).

    Always from the *base* IMF: open-interest scaling never raises maintenance margin.
    """
    base_im = _ceil_frac(Fraction(abs(quote_quantums) * initial_margin_ppm, PPM))
    return _ceil_frac(Fraction(base_im * maintenance_fraction_ppm, PPM))


def initial_margin_quote_quantums_array(
    notional: np.ndarray, initial_margin_ppm: int, adjusted_ppm: int | None = None
) -> np.ndarray:
    """Vector initial margin: int64 (n,) |notional| in quote quantums -> int64 (n,).

    ``adjusted_ppm`` is the market's OIMF from :func:`adjusted_initial_margin_ppm` (one value per
    market per step); the base IMF is used when it is None.
    """
    ppm = initial_margin_ppm if adjusted_ppm is None else adjusted_ppm
    return mul_ppm(np.abs(notional), ppm, "up")


def maintenance_margin_quote_quantums_array(
    notional: np.ndarray, initial_margin_ppm: int, maintenance_fraction_ppm: int
) -> np.ndarray:
    """Vector maintenance margin. ``notional``: int64 (n,) quote quantums; returns int64 (n,)."""
    return mul_ppm(
        mul_ppm(np.abs(notional), initial_margin_ppm, "up"), maintenance_fraction_ppm, "up"
    )


# ---------------------------------------------------------------------------------------------
# Liquidation (liquidations.go)
# ---------------------------------------------------------------------------------------------


def is_liquidatable(total_net_collateral: int, total_maintenance_margin: int) -> bool:
    """Return True when TMMR > 0 and TNC < TMMR."""
    return total_maintenance_margin > 0 and total_net_collateral < total_maintenance_margin


def bankruptcy_price_quote_quantums(
    delta_net_notional: int,
    delta_maintenance_margin: int,
    total_net_collateral: int,
    total_maintenance_margin: int,
) -> int:
    """Return the quote quantums at which closing a delta leaves the account exactly bankrupt.

    ``BP = -DNNV - TNC x |DMMR| / TMMR``, rounded toward +inf. DNNV is the change in signed net
    notional (negative when closing a long), DMMR the change in the position's maintenance
    margin. Positive = quote received (closing a long); negative = quote paid (closing a short).
    """
    if total_maintenance_margin <= 0:
        raise ValueError(
            f"total_maintenance_margin must be positive, was {total_maintenance_margin}"
        )
    bp = Fraction(-delta_net_notional) - Fraction(
        total_net_collateral * abs(delta_maintenance_margin), total_maintenance_margin
    )
    return _ceil_frac(bp)


def fillable_price(
    position_quantums: int,
    position_net_notional: int,
    position_maintenance_margin: int,
    total_net_collateral: int,
    total_maintenance_margin: int,
    bankruptcy_adjustment_ppm: int = BANKRUPTCY_ADJUSTMENT_PPM,
    spread_to_maintenance_margin_ratio_ppm: int = SPREAD_TO_MAINTENANCE_MARGIN_RATIO_PPM,
) -> Fraction:
    """Return the worst price (quote quantums per base quantum) a liquidation order may fill at.

    ``ABR = clamp(BA x (1 - TNC/TMMR), 0, 1)``; ``FP = (PNNV - ABR x SMMR x PMMR) / PS``. At
    TNC = TMMR the order is at the oracle; at TNC <= 0 it is oracle -/+ SMMR x position MMR.
    """
    if position_quantums == 0:
        raise ValueError("position_quantums must be non-zero, was 0")
    ba = Fraction(bankruptcy_adjustment_ppm, PPM)
    abr = ba * (1 - Fraction(total_net_collateral, total_maintenance_margin))
    abr = min(max(abr, Fraction(0)), Fraction(1))
    smmr = Fraction(spread_to_maintenance_margin_ratio_ppm, PPM)
    return (position_net_notional - abr * smmr * position_maintenance_margin) / position_quantums


def liquidation_insurance_fund_delta(
    quote_quantums: int,
    bankruptcy_price_quote_quantums_: int,
    max_liquidation_fee_ppm: int = MAX_LIQUIDATION_FEE_PPM,
) -> int:
    """Return the insurance-fund delta for a liquidation fill with signed quote proceeds.

    ``d = Q - BP``. If d <= 0 the fund pays |d| (negative delta); otherwise it takes the fee
    ``min(max_liquidation_fee_ppm x |Q|, d)`` (rounded down).
    """
    d = quote_quantums - bankruptcy_price_quote_quantums_
    if d <= 0:
        return d
    max_fee = abs(quote_quantums) * max_liquidation_fee_ppm // PPM
    return min(max_fee, d)


def liquidation_insurance_fund_delta_array(
    quote_quantums: np.ndarray, bankruptcy_quote: np.ndarray, max_liquidation_fee_ppm: int
) -> np.ndarray:
    """Vector :func:`liquidation_insurance_fund_delta`. int64 (n,) in, int64 (n,) out."""
    d = np.asarray(quote_quantums, np.int64) - np.asarray(bankruptcy_quote, np.int64)
    fee = mul_ppm(np.abs(quote_quantums), max_liquidation_fee_ppm, "down")
    return np.where(d <= 0, d, np.minimum(fee, d))


def max_and_min_position_notional_liquidatable(
    position_notional: int,
    min_position_notional_liquidated: int = MIN_POSITION_NOTIONAL_LIQUIDATED,
    max_position_portion_liquidated_ppm: int = MAX_POSITION_PORTION_LIQUIDATED_PPM,
) -> tuple[int, int]:
    """Return (max, min) notional of one position that a single block may liquidate.

    The minimum is the smaller of the configured floor and the whole position; the maximum is the
    larger of the floor and the configured portion of the position (rounded down, as
    ``lib.BigIntMulPpm``), never more than the position.
    """
    notional = abs(position_notional)
    min_liq = min(min_position_notional_liquidated, notional)
    portion = notional * max_position_portion_liquidated_ppm // PPM
    max_liq = min(max(min_position_notional_liquidated, portion), notional)
    return max_liq, min_liq


# ---------------------------------------------------------------------------------------------
# Array versions for the step loop (float64 where products overflow int64: within one quantum
# of the exact result, rounded in the venue's direction)
# ---------------------------------------------------------------------------------------------


def bankruptcy_price_quote_quantums_array(
    delta_net_notional: np.ndarray,
    delta_maintenance_margin: np.ndarray,
    total_net_collateral: np.ndarray,
    total_maintenance_margin: np.ndarray,
) -> np.ndarray:
    """Vector :func:`bankruptcy_price_quote_quantums`; int64 (n,) in and out."""
    share = np.abs(delta_maintenance_margin) / total_maintenance_margin.astype(np.float64)
    bp = -delta_net_notional.astype(np.float64) - total_net_collateral * share
    return as_int64(np.ceil(bp))


def fillable_price_array(
    position_quantums: np.ndarray,
    position_net_notional: np.ndarray,
    position_maintenance_margin: np.ndarray,
    total_net_collateral: np.ndarray,
    total_maintenance_margin: np.ndarray,
    bankruptcy_adjustment_ppm: int = BANKRUPTCY_ADJUSTMENT_PPM,
    spread_to_maintenance_margin_ratio_ppm: int = SPREAD_TO_MAINTENANCE_MARGIN_RATIO_PPM,
) -> np.ndarray:
    """Vector :func:`fillable_price`, float64 quote quantums per base quantum."""
    abr = (bankruptcy_adjustment_ppm / PPM) * (
        1.0 - total_net_collateral / total_maintenance_margin.astype(np.float64)
    )
    abr = np.clip(abr, 0.0, 1.0)
    smmr = spread_to_maintenance_margin_ratio_ppm / PPM
    return (position_net_notional - abr * smmr * position_maintenance_margin) / position_quantums


def max_and_min_position_notional_liquidatable_array(
    position_notional: np.ndarray,
    min_position_notional_liquidated: int = MIN_POSITION_NOTIONAL_LIQUIDATED,
    max_position_portion_liquidated_ppm: int = MAX_POSITION_PORTION_LIQUIDATED_PPM,
) -> tuple[np.ndarray, np.ndarray]:
    """Vector :func:`max_and_min_position_notional_liquidatable`; int64 (n,) in, two out."""
    notional = np.abs(np.asarray(position_notional, np.int64))
    min_liq = np.minimum(min_position_notional_liquidated, notional)
    portion = mul_ppm(notional, max_position_portion_liquidated_ppm, "down")
    max_liq = np.minimum(np.maximum(min_position_notional_liquidated, portion), notional)
    return max_liq, min_liq
