"""The column-wise row reductions give numpy's row reductions bit for bit (the engine's outputs
depend on it: a float sum in another order can change a last bit)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.rows import row_any, row_argmax, row_min, row_sum


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 9),
    st.sampled_from([1, 2, 3, 7, 8, 9, 33, 1000]),
    st.sampled_from(["C", "F", "reversed", "strided"]),
    st.integers(0, 2**32 - 1),
)
def test_row_sum_is_numpys_row_sum_bit_for_bit(m, r, layout, seed):
    rng = np.random.default_rng(seed)
    # Magnitudes over 24 decades, signs mixed, some exact zeros and negative zeros: float sums
    # whose order shows in the last bits.
    a = rng.standard_normal((r, m)) * 10.0 ** rng.integers(-10, 14, (r, m))
    a[rng.random((r, m)) < 0.1] = -0.0
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "reversed":
        a = a[::-1]
    elif layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
    assert row_sum(a).tobytes() == a.sum(axis=1).tobytes()
    ints = (a * 1e3).astype(np.int64)
    assert row_sum(ints).dtype == np.int64
    assert np.array_equal(row_sum(ints), ints.sum(axis=1))
    assert row_min(a).tobytes() == a.min(axis=1).tobytes()
    assert np.array_equal(row_argmax(a), a.argmax(axis=1))
    ties = np.round(a) % 3  # many equal values in a row
    assert np.array_equal(row_argmax(ties), ties.argmax(axis=1))
    flags = a > 1.0
    assert np.array_equal(row_any(flags), flags.any(axis=1))


def test_row_reductions_of_no_columns():
    assert np.array_equal(row_sum(np.zeros((3, 0))), np.zeros(3))
    assert np.array_equal(row_any(np.zeros((3, 0), bool)), np.zeros(3, bool))
