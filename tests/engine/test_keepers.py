"""Keepers' order and the unit lookup give what sorting every unit and np.isin give."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.keepers import among_units, keeper_order


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 120), st.integers(0, 2**32 - 1))
def test_keeper_order_is_the_head_of_the_full_sort(units, capacity, seed):
    """Shortfall ratios drawn from a few values, so ties at the cut are common."""
    rng = np.random.default_rng(seed)
    acct = rng.integers(0, 50, units)
    mkt = rng.integers(0, 4, units)
    ratio = rng.choice([0.0, 0.01, 0.25, 0.5, 1.0, 3.0], units)
    expected = np.lexsort((mkt, acct, -ratio))[:capacity]
    assert np.array_equal(keeper_order(acct, mkt, ratio, capacity), expected)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_among_units_is_membership_of_account_market_pairs(count, units, seed):
    rng = np.random.default_rng(seed)
    n, m = 30, 4
    acct, mkt = rng.integers(0, n, count), rng.integers(-1, m, count)
    unit_acct, unit_mkt = rng.integers(0, n, units), rng.integers(0, m, units)
    pairs = set(zip(unit_acct.tolist(), unit_mkt.tolist(), strict=True))
    expected = [k >= 0 and (a, k) in pairs for a, k in zip(acct, mkt, strict=True)]
    assert among_units(acct, mkt, unit_acct, unit_mkt, (n, m)).tolist() == expected
