"""Features use only the past, and the analytic baseline matches the first-passage law."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.baselines import first_passage_probability
from predictor.data import MARKET_COLUMNS, discover
from predictor.features import (
    ACCOUNT_FEATURES,
    FEATURES,
    MARKET_FEATURES,
    account_features,
    market_arrays,
    market_features,
)


def _features(markets: pd.DataFrame, accounts: pd.DataFrame, names, tick_ms) -> np.ndarray:
    mf = market_features(market_arrays(markets, names), tick_ms)
    return account_features(accounts, names, mf, tick_ms, 5.0)


@pytest.fixture(scope="module")
def one_path(small_histories):
    part = [p for p in discover(small_histories) if p.scenario == "cascade"][0]
    names = part.markets
    markets = part.read("markets", [*MARKET_COLUMNS, "sigma_annual"])
    accounts = part.read("accounts")
    return markets, accounts, names, part.tick_ms


@pytest.mark.parametrize("cut_tick", [40, 260, 500])
def test_altering_every_row_after_t_leaves_features_at_t_unchanged(one_path, cut_tick):
    markets, accounts, names, tick_ms = one_path
    before = _features(markets, accounts, names, tick_ms)
    rng = np.random.default_rng(cut_tick)
    m2, a2 = markets.copy(), accounts.copy()
    later_m = m2["tick"] > cut_tick
    for col in MARKET_COLUMNS + ("sigma_annual",):
        if col in ("tick", "market"):
            continue
        values = m2[col].to_numpy(np.float64).copy()
        values[later_m] = values[later_m] * rng.uniform(0.5, 1.5, later_m.sum()) + 1.0
        m2[col] = values if m2[col].dtype.kind == "f" else np.rint(values).astype(np.int64)
    later_a = a2["tick"] > cut_tick
    for col in a2.columns:
        if col in ("tick", "account", "time_ms") or a2[col].dtype == bool:
            continue
        values = a2[col].to_numpy(np.float64).copy()
        values[later_a] = values[later_a] * rng.uniform(0.5, 1.5, later_a.sum()) - 3.0
        a2[col] = values if a2[col].dtype.kind == "f" else np.rint(values).astype(a2[col].dtype)
    after = _features(m2, a2, names, tick_ms)
    past = (accounts["tick"] <= cut_tick).to_numpy()
    assert past.any() and (~past).any()
    np.testing.assert_array_equal(before[past], after[past])
    # The alteration did reach the later rows, so the comparison can fail.
    assert not np.array_equal(np.nan_to_num(before[~past]), np.nan_to_num(after[~past]))


def test_feature_matrix_shape_and_order(one_path):
    markets, accounts, names, tick_ms = one_path
    X = _features(markets, accounts, names, tick_ms)
    assert X.shape == (len(accounts), len(FEATURES))
    assert X.dtype == np.float32
    assert list(FEATURES) == list(ACCOUNT_FEATURES) + list(MARKET_FEATURES)
    # Volatilities are positive and finite once a window has data.
    j = FEATURES.index("ewma_sigma_30m")
    assert np.isfinite(X[:, j]).all() and (X[:, j] > 0).all()


def test_market_table_with_a_repeated_row_is_refused(one_path):
    markets, _, names, _ = one_path
    broken = pd.concat([markets, markets.iloc[[5]]]).iloc[1:]
    with pytest.raises(ValueError, match="repeats"):
        market_arrays(broken, names)


def test_first_passage_matches_monte_carlo():
    rng = np.random.default_rng(7)
    sigma, horizon, steps, paths = 0.01, 5.0, 2000, 20000  # per sqrt(minute), minutes
    dt = horizon / steps
    increments = -0.5 * sigma**2 * dt + sigma * np.sqrt(dt) * rng.standard_normal((paths, steps))
    log_path = np.cumsum(increments, axis=1)
    for distance in (0.01, 0.02, 0.04):
        hit_down = (log_path.min(axis=1) <= np.log1p(-distance)).mean()
        hit_up = (log_path.max(axis=1) >= np.log1p(distance)).mean()
        p_long = first_passage_probability(np.array([distance]), np.array([1.0]), sigma, horizon)
        p_short = first_passage_probability(np.array([distance]), np.array([-1.0]), sigma, horizon)
        # Discrete monitoring misses some crossings: the simulated rate sits a little below.
        assert hit_down <= p_long[0] + 0.01 and p_long[0] - hit_down < 0.03
        assert hit_up <= p_short[0] + 0.01 and p_short[0] - hit_up < 0.03


def test_first_passage_edges():
    d = np.array([0.0, -0.1, 1.0, 2.0, 0.5])
    side = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    p = first_passage_probability(d, side, np.full(5, 1e-4), 5.0)
    assert p[0] == 1.0 and p[1] == 1.0  # already at or past the liquidation price
    assert p[2] == 0.0 and p[3] == 0.0  # a long cannot lose more than the whole price
    assert 0.0 <= p[4] < 1e-12
