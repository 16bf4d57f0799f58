"""Margin models: requirements monotone in size, IM above MM, venue formulas used exactly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import (
    Bracket,
    OIScaledMargin,
    SizePremiumMargin,
    TieredMargin,
    VolScaledMargin,
)
from engine.margin import MarginContext, make_requirements, vol_scaled_mmf_ppm
from engine.venues import dydx_v4

rate = st.floats(0.001, 0.4)


@st.composite
def tiered(draw):
    n = draw(st.integers(1, 4))
    floors = sorted(draw(st.sets(st.integers(1, 10**7), min_size=n - 1, max_size=n - 1)))
    mms = sorted(draw(st.lists(st.floats(0.001, 0.3), min_size=n, max_size=n)))
    gaps = draw(st.lists(st.floats(0.0001, 0.3), min_size=n, max_size=n))
    ims = np.maximum.accumulate([mm + g for mm, g in zip(mms, gaps, strict=True)])
    return TieredMargin(
        brackets=tuple(
            Bracket(floor_usd=float(f), initial_margin=float(min(im, 1.0)), maintenance_margin=mm)
            for f, im, mm in zip([0, *floors], ims, mms, strict=True)
        )
    )


models = st.one_of(
    tiered(),
    st.builds(
        OIScaledMargin,
        initial_margin=rate,
        maintenance_fraction=st.floats(0.05, 0.95),
        oi_lower_cap_usd=st.just(1e6),
        oi_upper_cap_usd=st.just(5e6),
    ),
    st.builds(
        SizePremiumMargin,
        initial_margin=st.floats(0.05, 0.5),
        maintenance_margin=st.floats(0.01, 0.049),
        imf_factor=st.floats(0, 0.01),
    ),
    st.just(VolScaledMargin()),
)


@settings(max_examples=200, deadline=None)
@given(
    models,
    st.lists(st.integers(0, 10**14), min_size=2, max_size=30),
    st.floats(0.01, 100_000),
    st.integers(0, 10**14),
    st.integers(10_000, 500_000),
)
def test_requirements_monotone_in_size_and_im_at_least_mm(model, sizes, price, oi, vol_ppm):
    req = make_requirements(model, -9)
    size = np.sort(np.asarray(sizes, np.int64))
    px_q = price * 1e6 * 1e-9
    notional = np.rint(size * px_q).astype(np.int64)
    ctx = MarginContext(oi_notional=oi, vol_mmf_ppm=vol_ppm)
    im, mm = req.requirements(notional, size, ctx)
    assert (np.diff(mm) >= 0).all()
    assert (np.diff(im) >= 0).all()
    assert (im >= mm).all()
    assert (mm >= 0).all()
    # Shorts need the same margin as longs.
    im_s, mm_s = req.requirements(notional, -size, ctx)
    assert (im_s == im).all() and (mm_s == mm).all()


def test_tiered_deduction_makes_margin_continuous():
    model = TieredMargin(brackets=(Bracket(0, 0.025, 0.0125), Bracket(150_000_000, 0.05, 0.025)))
    req = make_requirements(model, -9)
    usd = 1_000_000
    n = np.array([150_000_000 * usd - 1, 150_000_000 * usd, 150_000_000 * usd + 1], np.int64)
    _, mm = req.requirements(n, n, MarginContext(0, 0))
    assert mm[1] == 150_000_000 * usd // 80  # 1.25% exactly at the boundary
    assert mm[0] <= mm[1] <= mm[2] <= mm[1] + 1


def test_oi_scaled_uses_dydx_formulas():
    model = OIScaledMargin(
        initial_margin=0.2, maintenance_fraction=0.5, oi_lower_cap_usd=25e6, oi_upper_cap_usd=60e6
    )
    req = make_requirements(model, -9)
    im, mm = req.requirements(
        np.array([500_000], np.int64),
        np.array([1], np.int64),
        MarginContext(oi_notional=28_123_456_789_123, vol_mmf_ppm=0),
    )
    assert im[0] == 135_697  # venues.md D8
    assert mm[0] == dydx_v4.maintenance_margin_quote_quantums(500_000, 200_000, 500_000)


def test_vol_scaled_rises_slowly_and_falls_at_once():
    cfg = VolScaledMargin(
        z=3.0,
        margin_period_ticks=100,
        floor_maintenance=0.01,
        cap_maintenance=0.5,
        max_rise_per_step=0.05,
    )
    calm = vol_scaled_mmf_ppm(0.0001, 0, cfg)
    assert calm == 10_000  # the floor
    spiked = vol_scaled_mmf_ppm(0.01, calm, cfg)  # target 30%
    assert spiked == 10_500  # capped at +5% per step
    back = vol_scaled_mmf_ppm(0.0001, 200_000, cfg)
    assert back == 10_000


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([-12, -9, -6, -3, 0, 2]),
    st.floats(0.0001, 0.01),
    st.integers(-3, 3),
    st.integers(0, 2**32 - 1),
)
def test_drift_requirements_skip_the_premium_only_where_it_cannot_apply(exponent, imf, step, seed):
    """Drift's requirements compute the size premium only from the first size where it can
    pass the base weight (converted from Drift's BASE precision to the market's base quanta);
    around that size and across exponents they equal Drift's formula on every position."""
    from engine.fixedpoint import mul_ppm
    from engine.venues import drift_v2

    req = make_requirements(
        SizePremiumMargin(initial_margin=0.1, maintenance_margin=0.05, imf_factor=imf), exponent
    )
    rng = np.random.default_rng(seed)
    first = req._premium_from[req.mm_ratio]
    sizes = np.concatenate(
        [[max(first + step, 0), first, max(first - 1, 0)], rng.integers(0, 10**9, 20)]
    )
    sizes = np.minimum(sizes, 2**50 // max(10 ** (9 + exponent), 1)).astype(np.int64)
    sizes = sizes * rng.choice([-1, 1], sizes.size)
    notional = np.abs(sizes) * 7
    ctx = MarginContext(oi_notional=0, vol_mmf_ppm=0)
    scale = 1_000_000 // drift_v2.MARGIN_PRECISION
    for weight, got in (
        (req.mm_ratio, req.maintenance(notional, sizes, ctx)),
        (req.im_ratio, req.requirements(notional, sizes, ctx)[0]),
    ):
        ratio = drift_v2.calculate_size_premium_liability_weight_array(
            req.drift_base(sizes), req.imf_factor, weight
        )
        assert np.array_equal(got, mul_ppm(notional, ratio * scale, "up"))
        rate = np.broadcast_to(req.max_mm_rate(sizes), sizes.shape)
        if weight == req.mm_ratio:
            assert np.array_equal(rate, ratio / drift_v2.MARGIN_PRECISION)
