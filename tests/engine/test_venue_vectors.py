"""Every test vector of shared/reference/venues.md, plus array-vs-scalar agreement."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.venues import drift_v2, dydx_v4

# ---- dYdX v4: margin (liquidity_tier_test.go) ------------------------------------------------


def test_d1_d2_maintenance_margin_ppm():
    assert dydx_v4.maintenance_margin_ppm(150_000, 800_000) == 120_000
    assert dydx_v4.maintenance_margin_ppm(637_239, 289_284) == 184_343


def test_d3_d4_max_abs_funding_clamp_ppm():
    assert dydx_v4.max_abs_funding_clamp_ppm(6_000_000, 150_000, 800_000) == 180_000
    assert dydx_v4.max_abs_funding_clamp_ppm(423_978_721, 745_345, 564_947) == 137_481_459


@pytest.mark.parametrize(
    ("imf", "notional", "oi", "lower", "upper", "expected"),
    [
        (567_243, 123_456, 0, 0, 0, 70_030),  # D5
        (100_000, 1, 0, 0, 0, 1),  # D6
        (200_000, 500_000, 1_500_000_000_000, 10**12, 2 * 10**12, 300_000),  # D7
        (200_000, 500_000, 28_123_456_789_123, 25 * 10**12, 60 * 10**12, 135_697),  # D8
        (200_000, 500_000, 80 * 10**12, 25 * 10**12, 50 * 10**12, 500_000),  # D9
    ],
)
def test_d5_to_d9_initial_margin_quote_quantums(imf, notional, oi, lower, upper, expected):
    assert dydx_v4.initial_margin_quote_quantums(notional, imf, lower, upper, oi) == expected
    adjusted = dydx_v4.adjusted_initial_margin_ppm(imf, lower, upper, oi)
    arr = dydx_v4.initial_margin_quote_quantums_array(np.array([notional]), imf, adjusted)
    assert arr.tolist() == [expected]


def test_d8_oimf_value():
    assert (
        dydx_v4.adjusted_initial_margin_ppm(200_000, 25 * 10**12, 60 * 10**12, 28_123_456_789_123)
        == 271_393
    )


def test_d10_d11_d12_adjusted_initial_margin_ppm():
    assert dydx_v4.adjusted_initial_margin_ppm(200_000, 10**6, 2 * 10**6, 1_234_567) == 387_653
    for oi, expected in [
        (10**6, 200_000),
        (2 * 10**6, 1_000_000),
        (2_500_000, 1_000_000),
        (0, 200_000),
    ]:
        assert dydx_v4.adjusted_initial_margin_ppm(200_000, 10**6, 2 * 10**6, oi) == expected
    assert dydx_v4.adjusted_initial_margin_ppm(200_000, 0, 0, 1_500_000) == 200_000


# ---- dYdX v4: liquidation (liquidations_test.go) ---------------------------------------------
# BTC oracle $50,000, 0.1 BTC position = $5,000 notional, IMF 20% x fraction 50% -> MMR $500.
USD = 1_000_000
POS_NOTIONAL = 5_000 * USD
POS_MMR = 500 * USD
POS_QUANTUMS = 10_000_000


def _tnc(usdc_balance):
    return usdc_balance * USD + POS_NOTIONAL


def test_l1_bankruptcy_price_full_close():
    bp = dydx_v4.bankruptcy_price_quote_quantums(-POS_NOTIONAL, -POS_MMR, _tnc(-4_501), POS_MMR)
    assert bp == 4_501_000_000


def test_l3_bankruptcy_price_half_close():
    bp = dydx_v4.bankruptcy_price_quote_quantums(
        -POS_NOTIONAL // 2, -POS_MMR // 2, _tnc(-5_000), POS_MMR
    )
    assert bp == 2_500_000_000


def test_l6_fillable_price():
    fp = dydx_v4.fillable_price(
        POS_QUANTUMS,
        POS_NOTIONAL,
        POS_MMR,
        _tnc(-4_501),
        POS_MMR,
        bankruptcy_adjustment_ppm=1_000_000,
        spread_to_maintenance_margin_ratio_ppm=100_000,
    )
    assert fp == Fraction(49_999, 100)


def test_l10_fillable_price_at_zero_tnc():
    fp = dydx_v4.fillable_price(
        POS_QUANTUMS,
        POS_NOTIONAL,
        POS_MMR,
        _tnc(-5_000),
        POS_MMR,
        bankruptcy_adjustment_ppm=1_000_000,
        spread_to_maintenance_margin_ratio_ppm=100_000,
    )
    assert fp == Fraction(495, 1)


@pytest.mark.parametrize(("fill_usd", "expected"), [(5_610, 28_050_000), (5_049, -51_000_000)])
def test_l13_l18_liquidation_insurance_fund_delta(fill_usd, expected):
    tnc = _tnc(-5_100)
    bp = dydx_v4.bankruptcy_price_quote_quantums(-POS_NOTIONAL, -POS_MMR, tnc, POS_MMR)
    assert dydx_v4.liquidation_insurance_fund_delta(fill_usd * USD, bp, 5_000) == expected
    arr = dydx_v4.liquidation_insurance_fund_delta_array(
        np.array([fill_usd * USD]), np.array([bp]), 5_000
    )
    assert arr.tolist() == [expected]


def test_position_notional_liquidatable_bounds():
    assert dydx_v4.max_and_min_position_notional_liquidatable(50_000 * USD) == (
        5_000 * USD,
        1_000 * USD,
    )
    assert dydx_v4.max_and_min_position_notional_liquidatable(500 * USD) == (500 * USD, 500 * USD)


# ---- Drift v2 (math/liquidation/tests.rs, controller/liquidation/tests.rs) -------------------


@pytest.mark.parametrize(
    ("liq_fee", "if_fee", "expected"),
    [(0, 0, 1_000_000_000), (10_000, 0, 1_111_111_111), (10_000, 10_000, 1_250_000_000)],
)
def test_f1_f2_f3_base_to_cover_margin_shortage(liq_fee, if_fee, expected):
    got = drift_v2.calculate_base_asset_amount_to_cover_margin_shortage(
        10 * USD, 1_000, liq_fee, if_fee, 100 * USD
    )
    assert got == expected


def test_f7_funding_rate_deltas_to_resolve_bankruptcy():
    got = drift_v2.calculate_funding_rate_deltas_to_resolve_bankruptcy(
        -100 * USD, 7 * 10**9, -4 * 10**9
    )
    assert got == 9_090_910_000
    pays = drift_v2.socialized_loss_payments_array(
        100 * USD, np.array([7 * 10**9, -4 * 10**9]), got
    )
    assert pays.sum() >= 100 * USD
    assert (
        pays.sum() - 100 * USD < 2 * 1_000
    )  # rounding dust of at most a few thousandths of a cent


def test_f10_liquidate_perp_long():
    r = drift_v2.liquidate_perp(
        user_base_asset_amount=10**9,
        user_quote_asset_amount=-150 * USD,
        oracle_price=100 * USD,
        maintenance_margin_ratio=500,
        liquidator_fee=10_000,
        max_if_liquidation_fee=10_000,
    )
    assert r["user_base_asset_amount"] == 0
    assert r["user_quote_asset_amount"] == -51 * USD
    assert r["liquidator_base_asset_amount"] == 10**9
    assert r["liquidator_quote_asset_amount"] == -99 * USD
    assert r["if_fee"] == 0


def test_liquidation_fee_ramp_and_max_pct():
    assert drift_v2.get_liquidation_fee(10_000, 20_000, 0, 100) == 10_000
    assert drift_v2.get_liquidation_fee(10_000, 20_000, 0, 2_000) == 12_000
    assert drift_v2.get_liquidation_fee(10_000, 20_000, 0, 50_000) == 20_000
    assert drift_v2.calculate_max_pct_to_liquidate(10 * USD, 0, 0, 1_000, 150) == 10_000
    assert drift_v2.calculate_max_pct_to_liquidate(1_000 * USD, 0, 0, 1_000, 150) == 1_000
    assert drift_v2.calculate_max_pct_to_liquidate(1_000 * USD, 150, 0, 1_000, 150) == 10_000


# ---- float/array versions agree with the exact scalar ones -----------------------------------

notional_st = st.integers(min_value=0, max_value=2**62)
ppm_st = st.integers(min_value=1, max_value=1_000_000)


@given(notional_st, ppm_st, ppm_st)
def test_dydx_margin_arrays_equal_scalars(notional, imf, fraction):
    im = dydx_v4.initial_margin_quote_quantums_array(np.array([notional], np.int64), imf)
    mm = dydx_v4.maintenance_margin_quote_quantums_array(
        np.array([notional], np.int64), imf, fraction
    )
    assert int(im[0]) == dydx_v4.initial_margin_quote_quantums(notional, imf)
    assert int(mm[0]) == dydx_v4.maintenance_margin_quote_quantums(notional, imf, fraction)


@given(st.integers(min_value=0, max_value=2**50), st.integers(0, 100_000), st.integers(1, 10_000))
def test_drift_size_premium_array_equals_scalar(size, imf_factor, weight):
    arr = drift_v2.calculate_size_premium_liability_weight_array(
        np.array([size], np.int64), imf_factor, weight
    )
    assert int(arr[0]) == drift_v2.calculate_size_premium_liability_weight(size, imf_factor, weight)


@given(st.integers(1, 100_000), st.integers(1, 10_000), st.integers(-3, 3))
def test_drift_size_premium_threshold_is_the_first_size_with_a_premium(imf_factor, weight, step):
    """Drift's requirements skip the square root below the threshold: just below it the weight
    is the base weight, from it on the premium passes it; array and scalar versions agree."""
    s0 = drift_v2.size_premium_threshold(imf_factor, weight)
    assume(s0 < 2**50)  # the array version is exact for sizes below 2**52
    size = max(0, s0 + step)
    arr = drift_v2.calculate_size_premium_liability_weight_array(
        np.array([size, s0], np.int64), imf_factor, weight
    )
    assert int(arr[0]) == drift_v2.calculate_size_premium_liability_weight(size, imf_factor, weight)
    assert (int(arr[0]) > weight) == (size >= s0)
    if s0 > 0:
        assert (
            drift_v2.calculate_size_premium_liability_weight(s0 - 1, imf_factor, weight) == weight
        )


# ---- the array versions the step loop uses agree with the exact scalar ones (within 1) -------

usd_amount = st.integers(min_value=1, max_value=10**13)


@given(
    st.integers(-(10**13), -1),
    st.integers(1, 10**12),
    st.integers(-(10**12), 10**12),
    st.integers(1, 10**12),
)
def test_dydx_bankruptcy_array_within_one(dnnv, pmmr, tnc, extra):
    tmmr = pmmr + extra
    exact = dydx_v4.bankruptcy_price_quote_quantums(dnnv, -pmmr, tnc, tmmr)
    arr = dydx_v4.bankruptcy_price_quote_quantums_array(
        np.array([dnnv]), np.array([-pmmr]), np.array([tnc]), np.array([tmmr])
    )
    assert abs(int(arr[0]) - exact) <= 1


@given(st.integers(1, 10**12), st.integers(1, 10**6), usd_amount, st.integers(-(10**9), 10**9))
def test_dydx_fillable_price_array(size, mmr_frac, notional, tnc_off):
    pmmr = max(1, notional * mmr_frac // 10**6)
    tnc = pmmr + tnc_off
    if tnc >= pmmr:
        tnc = pmmr - 1
    exact = dydx_v4.fillable_price(size, notional, pmmr, tnc, pmmr)
    arr = dydx_v4.fillable_price_array(
        np.array([size]), np.array([notional]), np.array([pmmr]), np.array([tnc]), np.array([pmmr])
    )
    assert float(arr[0]) == pytest.approx(float(exact), rel=1e-12)


@given(usd_amount, st.integers(0, 10**10), st.integers(1, 10**6))
def test_dydx_liquidatable_bounds_array(notional, floor, portion):
    exact = dydx_v4.max_and_min_position_notional_liquidatable(notional, floor, portion)
    hi, lo = dydx_v4.max_and_min_position_notional_liquidatable_array(
        np.array([notional]), floor, portion
    )
    assert (int(hi[0]), int(lo[0])) == exact


@given(
    usd_amount,
    st.integers(1, 5_000),
    st.integers(0, 50_000),
    st.integers(0, 20_000),
    st.integers(10**4, 10**11),
)
def test_drift_liquidation_arrays_within_one(shortage, ratio, liq_fee, if_fee, price):
    exact = drift_v2.calculate_base_asset_amount_to_cover_margin_shortage(
        shortage, ratio, liq_fee, if_fee, price
    )
    arr = drift_v2.calculate_base_asset_amount_to_cover_margin_shortage_array(
        np.array([shortage]), np.array([ratio]), liq_fee, if_fee, price
    )
    if exact == drift_v2.U128_MAX:
        assert np.isinf(arr[0])
    else:
        assert abs(float(arr[0]) - exact) <= max(1.0, exact * 1e-15)
    base = 10**9 * 3
    exact_fee = drift_v2.calculate_perp_if_fee(
        shortage, base, ratio, liq_fee, price, drift_v2.PRICE_PRECISION, if_fee
    )
    arr_fee = drift_v2.calculate_perp_if_fee_array(
        np.array([shortage]), np.array([base]), np.array([ratio]), liq_fee, price, if_fee
    )
    assert abs(int(arr_fee[0]) - exact_fee) <= 1


@given(st.integers(0, 10**6), usd_amount, st.integers(0, 10_000), st.integers(1, 1_000))
def test_drift_fee_ramp_and_pct_arrays(slots, shortage, initial, duration):
    assert int(
        drift_v2.get_liquidation_fee_array(10_000, 20_000, np.array([slots]))[0]
    ) == drift_v2.get_liquidation_fee(10_000, 20_000, 0, slots)
    exact = drift_v2.calculate_max_pct_to_liquidate(shortage, slots, 0, initial, duration)
    arr = drift_v2.calculate_max_pct_to_liquidate_array(
        np.array([shortage]), np.array([slots]), initial, duration
    )
    assert abs(int(arr[0]) - exact) <= 1


# ---- smaller venue helpers -------------------------------------------------------------------


def test_dydx_is_liquidatable():
    assert dydx_v4.is_liquidatable(499, 500)
    assert not dydx_v4.is_liquidatable(500, 500)
    assert not dydx_v4.is_liquidatable(-5, 0)  # no maintenance requirement, never liquidatable


def test_hyperliquid_maintenance_rate_and_deductions():
    from engine.venues import hyperliquid

    assert hyperliquid.maintenance_rate_ppm(50) == 10_000  # 1% at 50x
    assert hyperliquid.maintenance_rate_ppm(3) == 166_666  # 16.7% at 3x
    floors = [0, 150_000_000 * USD]
    rates = [12_500, 25_000]
    ded = hyperliquid.maintenance_deductions(floors, rates)
    assert ded == [0, 150_000_000 * USD * 12_500 // 1_000_000]


@given(st.floats(10, 1e5), st.sampled_from([1, -1]), st.floats(0.01, 0.5), st.integers(3, 50))
def test_hyperliquid_liquidation_price_zeroes_margin_available(price, side, equity_frac, lev):
    from engine.venues import hyperliquid

    size = 2.0
    l_rate = 1.0 / lev
    value = equity_frac * price * size  # account value at ``price``
    available = value - l_rate * price * size
    liq = hyperliquid.liquidation_price(price, side, available, size, lev)
    # At the liquidation price, account value equals maintenance margin (MM = l x notional).
    value_at_liq = value + side * size * (liq - price)
    assert value_at_liq == pytest.approx(l_rate * liq * size, rel=1e-9, abs=1e-6)


def test_dydx_position_portion_rounds_down():
    # BigIntMulPpm floors: 10% of 10,000,005 quote quantums is 1,000,000, not 1,000,001.
    assert dydx_v4.max_and_min_position_notional_liquidatable(10_000_005, 1, 100_000) == (
        1_000_000,
        1,
    )
    hi, _ = dydx_v4.max_and_min_position_notional_liquidatable_array(
        np.array([10_000_005]), 1, 100_000
    )
    assert int(hi[0]) == 1_000_000
