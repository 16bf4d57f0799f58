"""Drift v2 margin and liquidation formulas, in Drift's own units and names.

Transcribed from drift-labs/protocol-v2 (programs/drift/src/math/liquidation.rs, math/margin.rs,
controller/liquidation.rs); see ``shared/reference/venues.md`` section b2. Drift works in fixed
precisions: PRICE 1e6, QUOTE 1e6, BASE 1e9, MARGIN 1e4, LIQUIDATION_FEE 1e6. Integer division
floors, as Rust's does on unsigned values. ``*_array`` versions are the kernels the step loop uses.
"""

from __future__ import annotations

import math

import numpy as np

from engine.units import as_int64

PRICE_PRECISION = 1_000_000
QUOTE_PRECISION = 1_000_000
BASE_PRECISION = 1_000_000_000
MARGIN_PRECISION = 10_000
LIQUIDATION_FEE_PRECISION = 1_000_000
LIQUIDATION_PCT_PRECISION = 10_000
SPOT_IMF_PRECISION = 1_000_000
FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO = 1_000
LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO = LIQUIDATION_FEE_PRECISION // MARGIN_PRECISION
PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO = PRICE_PRECISION * BASE_PRECISION // QUOTE_PRECISION
LIQUIDATION_FEE_ADJUST_GRACE_PERIOD_SLOTS = 1_500
LIQUIDATION_FEE_INCREASE_PER_SLOT = 1
DEFAULT_LIQUIDATION_MARGIN_BUFFER_RATIO = MARGIN_PRECISION // 50  # 2%
U128_MAX = 2**128 - 1
INSURANCE_TIER_MAX = {
    "A": 100_000_000 * QUOTE_PRECISION,
    "B": 1_000_000 * QUOTE_PRECISION,
    "C": 100_000 * QUOTE_PRECISION,
    "speculative": 0,
    "highly_speculative": 0,
    "isolated": 0,
}
"""Most the insurance fund pays a market of each contract tier over its life (QUOTE precision;
math/constants.rs INSURANCE_*_MAX, the default of the market's quote_max_insurance)."""


def calculate_size_premium_liability_weight(
    size: int, imf_factor: int, liability_weight: int, precision: int = MARGIN_PRECISION
) -> int:
    """Return the margin ratio raised for a large position: max(w, 0.8 w + sqrt(size) x imf).

    ``size`` in BASE precision, ``imf_factor`` in SPOT_IMF precision (1e6), ``liability_weight``
    and the result in ``precision`` (MARGIN 1e4 for perp margin ratios).
    """
    if imf_factor == 0:
        return liability_weight
    size_sqrt = math.isqrt(abs(size) * 10 + 1)  # BASE 1e9 -> 1e10 -> sqrt 1e5
    numerator = liability_weight - liability_weight // 5
    denom = 100_000 * SPOT_IMF_PRECISION // precision
    premium = numerator + size_sqrt * imf_factor // denom
    return max(liability_weight, premium)


def calculate_size_premium_liability_weight_array(
    size: np.ndarray, imf_factor: int, liability_weight: int, precision: int = MARGIN_PRECISION
) -> np.ndarray:
    """Vector :func:`calculate_size_premium_liability_weight` over int64 sizes (BASE precision)."""
    size = np.abs(np.asarray(size, dtype=np.int64))
    if imf_factor == 0:
        return np.full(size.shape, liability_weight, dtype=np.int64)
    # float sqrt then integer correction reproduces isqrt exactly for sizes < 2**52.
    v = size * 10 + 1
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r -= (r * r > v).astype(np.int64)
    r += ((r + 1) * (r + 1) <= v).astype(np.int64)
    numerator = liability_weight - liability_weight // 5
    denom = 100_000 * SPOT_IMF_PRECISION // precision
    return np.maximum(liability_weight, numerator + r * imf_factor // denom)


_INT64_MAX = 2**63 - 1


def size_premium_threshold(
    imf_factor: int, liability_weight: int, precision: int = MARGIN_PRECISION
) -> int:
    """Return the smallest size (BASE precision) whose size premium exceeds the base weight
    (below it the weight is the base weight, so a caller may skip the square root there).

    The premium ``0.8 w + isqrt(10 size + 1) x imf // denom`` passes ``w`` exactly when
    ``isqrt(10 size + 1) x imf // denom >= w // 5 + 1``, i.e. when the square root reaches
    ``r0 = ceil((w // 5 + 1) x denom / imf)``; below that size the weight is ``w``.
    """
    if imf_factor <= 0:
        return _INT64_MAX
    denom = 100_000 * SPOT_IMF_PRECISION // precision
    r0 = -(-(liability_weight // 5 + 1) * denom // imf_factor)
    # Clipped to int64: a size at the clip still gets the premium computed, so it stays exact.
    return min(_INT64_MAX, max(0, -(-(r0 * r0 - 1) // 10)))


def calculate_base_asset_amount_to_cover_margin_shortage(
    margin_shortage: int,
    margin_ratio: int,
    liquidation_fee: int,
    if_liquidation_fee: int,
    oracle_price: int,
    quote_oracle_price: int = PRICE_PRECISION,
) -> int:
    """Return the base (BASE precision) whose liquidation covers a margin shortage (QUOTE).

    ``base = shortage / (price x (margin_ratio - liquidator_fee) - price x if_fee)``; U128_MAX
    when liquidating cannot help (zero price or margin ratio <= liquidator fee).
    """
    margin_ratio_fee = margin_ratio * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if oracle_price == 0 or margin_ratio_fee <= liquidation_fee:
        return U128_MAX
    price = oracle_price * quote_oracle_price // PRICE_PRECISION
    denom = (
        price * (margin_ratio_fee - liquidation_fee) // LIQUIDATION_FEE_PRECISION
        - price * if_liquidation_fee // LIQUIDATION_FEE_PRECISION
    )
    if denom <= 0:
        return U128_MAX
    return margin_shortage * PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO // denom


def calculate_perp_if_fee(
    margin_shortage: int,
    user_base_asset_amount: int,
    margin_ratio: int,
    liquidator_fee: int,
    oracle_price: int,
    quote_oracle_price: int,
    max_if_liquidation_fee: int,
) -> int:
    """Return the insurance-fund fee (LIQUIDATION_FEE precision) of a perp liquidation.

    ``min(max_if_fee, 0.95 x (margin_ratio - liquidator_fee - shortage / (base x price)))``,
    floored at 0: the fee may never push the user into bankruptcy.
    """
    margin_ratio_fee = margin_ratio * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if (
        oracle_price == 0
        or quote_oracle_price == 0
        or user_base_asset_amount == 0
        or margin_ratio_fee <= liquidator_fee
    ):
        return 0
    price = oracle_price * quote_oracle_price // PRICE_PRECISION
    base_value = abs(user_base_asset_amount) * price // BASE_PRECISION  # QUOTE precision
    if base_value == 0:
        return 0
    shortage_ratio = margin_shortage * LIQUIDATION_FEE_PRECISION // base_value
    implied = max(0, margin_ratio_fee - liquidator_fee - shortage_ratio) * 19 // 20
    return min(max_if_liquidation_fee, implied)


def get_liquidation_fee(
    base_liquidation_fee: int,
    max_liquidation_fee: int,
    last_active_user_slot: int,
    current_slot: int,
) -> int:
    """Return the liquidator fee: the base fee within the grace period, then +1 ppm per slot."""
    slots_elapsed = current_slot - last_active_user_slot
    if slots_elapsed < 0:
        raise ValueError(
            f"current_slot must not precede last_active_user_slot, was {slots_elapsed}"
        )
    if slots_elapsed < LIQUIDATION_FEE_ADJUST_GRACE_PERIOD_SLOTS:
        return base_liquidation_fee
    fee = base_liquidation_fee + slots_elapsed * LIQUIDATION_FEE_INCREASE_PER_SLOT
    return min(fee, max_liquidation_fee)


def calculate_max_pct_to_liquidate(
    margin_shortage: int,
    slots_elapsed: int,
    liquidation_margin_freed: int,
    initial_pct_to_liquidate: int,
    liquidation_duration: int,
) -> int:
    """Return the share (LIQUIDATION_PCT precision, 1e4) of the shortage that may be freed now.

    Shortages under $50 are liquidated at once; otherwise the freeable share ramps from
    ``initial_pct_to_liquidate`` to 100% over ``liquidation_duration`` slots.
    """
    if margin_shortage < 50 * QUOTE_PRECISION:
        return LIQUIDATION_PCT_PRECISION
    pct_freeable = min(
        LIQUIDATION_PCT_PRECISION,
        slots_elapsed * LIQUIDATION_PCT_PRECISION // max(liquidation_duration, 1)
        + initial_pct_to_liquidate,
    )
    total_shortage = margin_shortage + liquidation_margin_freed
    max_margin_freed = total_shortage * pct_freeable // LIQUIDATION_PCT_PRECISION
    freeable = max(0, max_margin_freed - liquidation_margin_freed)
    return freeable * LIQUIDATION_PCT_PRECISION // margin_shortage


def calculate_funding_rate_deltas_to_resolve_bankruptcy(
    loss: int, base_asset_amount_long: int, base_asset_amount_short: int
) -> int:
    """Return the cumulative-funding delta (funding precision 1e9 per base) that socializes a loss.

    Every open position, long and short, pays ``|loss| / (|longs| + |shorts|)`` per base, rounded
    up so the loss is always fully covered.
    """
    total_base = abs(base_asset_amount_long) + abs(base_asset_amount_short)
    if total_base == 0:
        return 0
    per_base = -(-abs(loss) * BASE_PRECISION // total_base)  # QUOTE per base, ceil
    return per_base * FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO


def socialized_loss_payments_array(
    loss: int, base_asset_amounts: np.ndarray, funding_rate_delta: int
) -> np.ndarray:
    """Return what each open position pays (QUOTE, int64, rounded up) under a funding delta.

    ``base_asset_amounts``: int64 (n,) in BASE precision, any sign. The sum covers ``loss``.
    """
    base = np.abs(np.asarray(base_asset_amounts, dtype=np.int64))
    per_base_quote = funding_rate_delta // FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO
    # base (1e9) x per_base_quote (QUOTE per 1e9 base) / 1e9, split to stay inside int64.
    hi = base // BASE_PRECISION
    lo = base - hi * BASE_PRECISION  # (np.divmod is several times slower on int64)
    return hi * per_base_quote + -(-(lo * per_base_quote) // BASE_PRECISION)


def liquidate_perp(
    user_base_asset_amount: int,
    user_quote_asset_amount: int,
    oracle_price: int,
    maintenance_margin_ratio: int,
    liquidator_fee: int,
    max_if_liquidation_fee: int,
    liquidation_margin_buffer_ratio: int = DEFAULT_LIQUIDATION_MARGIN_BUFFER_RATIO,
) -> dict[str, int]:
    """Liquidate a single perp position with no other collateral, as Drift's ``liquidate_perp``.

    The liquidator takes over the base needed to cover the margin shortage (plus buffer) at the
    oracle price less the liquidator fee; the insurance fund takes ``calculate_perp_if_fee``.
    Returns the new balances of user and liquidator and the IF fee, all in Drift precisions.
    """
    base = user_base_asset_amount
    value = abs(base) * oracle_price // BASE_PRECISION
    pnl = user_quote_asset_amount + base * oracle_price // BASE_PRECISION
    margin_req = value * maintenance_margin_ratio // MARGIN_PRECISION
    mr_plus_buffer = margin_req + value * liquidation_margin_buffer_ratio // MARGIN_PRECISION
    tc_plus_buffer = pnl + min(pnl, 0) * liquidation_margin_buffer_ratio // MARGIN_PRECISION
    shortage = max(0, mr_plus_buffer - tc_plus_buffer)
    if_fee = calculate_perp_if_fee(
        shortage,
        base,
        maintenance_margin_ratio,
        liquidator_fee,
        oracle_price,
        PRICE_PRECISION,
        max_if_liquidation_fee,
    )
    to_cover = calculate_base_asset_amount_to_cover_margin_shortage(
        shortage, maintenance_margin_ratio, liquidator_fee, if_fee, oracle_price
    )
    transfer = min(abs(base), to_cover)
    sign = 1 if base > 0 else -1
    quote_value = transfer * oracle_price // BASE_PRECISION
    liq_fee_amount = quote_value * liquidator_fee // LIQUIDATION_FEE_PRECISION
    if_fee_amount = quote_value * if_fee // LIQUIDATION_FEE_PRECISION
    # A long sells to the liquidator below the oracle; a short buys from it above the oracle.
    liquidator_quote_delta = -sign * quote_value + liq_fee_amount
    user_quote_delta = sign * quote_value - liq_fee_amount - if_fee_amount
    return {
        "base_asset_amount": transfer,
        "user_base_asset_amount": base - sign * transfer,
        "user_quote_asset_amount": user_quote_asset_amount + user_quote_delta,
        "liquidator_base_asset_amount": sign * transfer,
        "liquidator_quote_asset_amount": liquidator_quote_delta,
        "if_fee": if_fee_amount,
    }


# ---------------------------------------------------------------------------------------------
# Array versions for the step loop. Products such as shortage x 1e9 overflow int64, so these
# compute in float64 and floor, as Drift's integer division does: within one unit of the
# exact result.
# ---------------------------------------------------------------------------------------------


def calculate_base_asset_amount_to_cover_margin_shortage_array(
    margin_shortage: np.ndarray,
    margin_ratio: np.ndarray,
    liquidation_fee: np.ndarray | int,
    if_liquidation_fee: np.ndarray | int,
    oracle_price: int,
) -> np.ndarray:
    """Vector :func:`calculate_base_asset_amount_to_cover_margin_shortage`; float64 (inf when
    liquidating cannot cover the shortage)."""
    ratio_fee = np.asarray(margin_ratio, np.int64) * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    denom = (
        oracle_price * (ratio_fee - liquidation_fee) // LIQUIDATION_FEE_PRECISION
        - oracle_price * np.asarray(if_liquidation_fee, np.int64) // LIQUIDATION_FEE_PRECISION
    )
    ok = (ratio_fee > liquidation_fee) & (denom > 0) & (oracle_price > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = np.floor(
            np.asarray(margin_shortage, np.float64)
            * PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO
            / np.where(ok, denom, 1)
        )
    return np.where(ok, base, np.inf)


def calculate_perp_if_fee_array(
    margin_shortage: np.ndarray,
    user_base_asset_amount: np.ndarray,
    margin_ratio: np.ndarray,
    liquidator_fee: np.ndarray | int,
    oracle_price: int,
    max_if_liquidation_fee: int,
) -> np.ndarray:
    """Vector :func:`calculate_perp_if_fee` (quote oracle price 1.0); int64 LIQUIDATION_FEE."""
    ratio_fee = np.asarray(margin_ratio, np.int64) * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    base_value = np.floor(
        np.abs(np.asarray(user_base_asset_amount, np.float64)) * oracle_price / BASE_PRECISION
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        shortage_ratio = np.floor(
            np.asarray(margin_shortage, np.float64)
            * LIQUIDATION_FEE_PRECISION
            / np.where(base_value > 0, base_value, 1)
        )
    implied = np.maximum(0.0, ratio_fee - liquidator_fee - shortage_ratio)
    # Capped before the cast (floor and an integer cap commute): the cap, not int64, bounds it.
    implied = as_int64(np.floor(np.minimum(implied * 19 / 20, max_if_liquidation_fee)))
    ok = (base_value > 0) & (ratio_fee > liquidator_fee) & (oracle_price > 0)
    return np.where(ok, implied, 0)


def get_liquidation_fee_array(
    base_liquidation_fee: int, max_liquidation_fee: int, slots_elapsed: np.ndarray
) -> np.ndarray:
    """Vector :func:`get_liquidation_fee` over slots elapsed since the user's last activity."""
    slots = np.asarray(slots_elapsed, np.int64)
    ramp = np.minimum(
        base_liquidation_fee + slots * LIQUIDATION_FEE_INCREASE_PER_SLOT, max_liquidation_fee
    )
    return np.where(slots < LIQUIDATION_FEE_ADJUST_GRACE_PERIOD_SLOTS, base_liquidation_fee, ramp)


def calculate_max_pct_to_liquidate_array(
    margin_shortage: np.ndarray,
    slots_elapsed: np.ndarray,
    initial_pct_to_liquidate: int,
    liquidation_duration: int,
) -> np.ndarray:
    """Vector :func:`calculate_max_pct_to_liquidate` for users with nothing freed yet."""
    shortage = np.asarray(margin_shortage, np.int64)
    pct = np.minimum(
        LIQUIDATION_PCT_PRECISION,
        np.asarray(slots_elapsed, np.int64)
        * LIQUIDATION_PCT_PRECISION
        // max(liquidation_duration, 1)
        + initial_pct_to_liquidate,
    )
    # With nothing freed yet, freeable / shortage reduces to pct (up to Drift's floor).
    freed = np.floor(shortage.astype(np.float64) * pct / LIQUIDATION_PCT_PRECISION)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.floor(freed * LIQUIDATION_PCT_PRECISION / np.where(shortage > 0, shortage, 1))
    out = as_int64(np.where(shortage > 0, out, 0))  # the rest is replaced below
    return np.where(shortage < 50 * QUOTE_PRECISION, LIQUIDATION_PCT_PRECISION, out)
