"""Features of a breach forecast: market state from order flow and volatility, account state.

Every feature of the row (account a, tick t) uses only data at or before t: market features are
trailing windows over the market table (prefix sums, trailing maxima, a causal EWMA filter), and
account features read the row itself and the account's previous sample. ``tests/predictor``
proves it by altering every row after t and checking the features at t do not change.

An account is described by the market of its largest position (its *dominant* market): market
features are that market's, and directional features are signed so that positive means
"against the account" (a falling price for a long).

Windows are in minutes and converted to ticks with the run's ``tick_ms``; volatilities are per
square-root minute, so a forecast horizon of H minutes scales them by sqrt(H).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

SCHEMA_VERSION = 1
"""Bumped whenever a feature is added, removed or changes meaning (model.json records it)."""

RETURN_WINDOWS = (1, 5, 15, 60)
VOL_WINDOWS = (5, 15, 60)
FLOW_WINDOWS = (1, 5, 15)
EWMA_HALF_LIVES = (5, 30, 120)
MINUTES_PER_YEAR = 365.25 * 24 * 60

MARKET_FEATURES = (
    *(f"ret_{w}m" for w in RETURN_WINDOWS),
    *(f"rv_{w}m" for w in VOL_WINDOWS),
    *(f"parkinson_{w}m" for w in VOL_WINDOWS),
    *(f"ewma_sigma_{h}m" for h in EWMA_HALF_LIVES),
    "vol_of_vol_60m",
    *(f"flow_imbalance_{w}m" for w in FLOW_WINDOWS),
    "trade_rate_1m",
    "trade_rate_15m",
    "half_spread",
    "log_depth_usd",
    "depth_vs_max_60m",
    "liq_count_5m",
    "liq_count_15m",
    "liq_share_5m",
    "liq_share_15m",
    "oi_change_5m",
    "oi_change_60m",
    "funding_rate",
    "basis",
    "oracle_gap",
    "oracle_age_s",
    "congestion",
    "insurance_cover",
    "cross_corr_60m",
)
"""Per-(tick, market) features; an account gets those of its dominant market."""

ACCOUNT_FEATURES = (
    "log_margin_ratio",
    "log_margin_ratio_slope",
    "leverage",
    "distance_to_liquidation",
    *(f"distance_sigmas_{h}m" for h in EWMA_HALF_LIVES),
    "upnl_ratio",
    "own_impact",
    "cross",
    "minutes_since_topup",
    "minutes_since_order",
    "positions",
    "dominant_share",
    "direction",
    *(f"adverse_ret_{w}m" for w in RETURN_WINDOWS[:3]),
    "adverse_flow_5m",
    "adverse_basis",
)
"""Per-account-row features; distance_sigmas_* depend on the horizon."""

FEATURES = ACCOUNT_FEATURES + MARKET_FEATURES
"""The model's input columns, in order."""


def window_ticks(minutes: float, tick_ms: int) -> int:
    """Return the number of ticks in ``minutes`` (at least 1)."""
    return max(1, round(minutes * 60_000 / tick_ms))


def _trailing_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Return the sum of x over the last ``w`` rows up to and including each row, shape of x."""
    cs = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    lo = np.maximum(np.arange(1, x.shape[0] + 1) - w, 0)
    return cs[1:] - cs[lo]


def _trailing_count(n: int, w: int) -> np.ndarray:
    """Return the number of rows each trailing window of length ``w`` holds, shape (n, 1)."""
    return np.minimum(np.arange(1, n + 1), w)[:, None].astype(np.float64)


def _trailing_extreme(x: np.ndarray, w: int, fn) -> np.ndarray:
    """Return fn (np.max or np.min) of x over the last ``w`` rows (the first row repeated
    before the start)."""
    padded = np.concatenate([np.repeat(x[:1], w - 1, axis=0), x])
    return fn(sliding_window_view(padded, w, axis=0), axis=-1)


def _lagged(x: np.ndarray, w: int) -> np.ndarray:
    """Return x w rows earlier (the first row before the start)."""
    idx = np.maximum(np.arange(x.shape[0]) - w, 0)
    return x[idx]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def market_arrays(markets: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    """Return the market table as arrays of shape (ticks, markets), one per column.

    Raises ValueError unless the table holds every tick from 0 once for each of ``names``.
    """
    m = len(names)
    order = {name: k for k, name in enumerate(names)}
    k = markets["market"].map(order)
    if k.isna().any():
        raise ValueError(f"market table holds markets not in the config: {set(markets['market'])}")
    ticks = markets["tick"].to_numpy()
    n_ticks = int(ticks.max()) + 1
    if len(markets) != n_ticks * m:
        raise ValueError(f"market table has {len(markets)} rows, expected {n_ticks} ticks x {m}")
    pos = ticks * m + k.to_numpy()
    if np.unique(pos).size != pos.size:
        raise ValueError("market table repeats a (tick, market) row")
    out = {}
    for col in markets.columns:
        if col in ("market", "time_ms"):
            continue
        arr = np.empty(n_ticks * m, np.float64)
        arr[pos] = markets[col].to_numpy(np.float64)
        out[col] = arr.reshape(n_ticks, m)
    return out


def market_features(arrays: dict[str, np.ndarray], tick_ms: int) -> np.ndarray:
    """Return MARKET_FEATURES for every (tick, market): float64 (ticks, markets, features)."""
    mark = arrays["mark_price"]
    n, m = mark.shape
    tick_min = tick_ms / 60_000.0
    log_mark = np.log(mark)
    lr = np.vstack([np.zeros((1, m)), np.diff(log_mark, axis=0)])
    lr2 = lr * lr
    feats: dict[str, np.ndarray] = {}
    for w in RETURN_WINDOWS:
        wt = window_ticks(w, tick_ms)
        feats[f"ret_{w}m"] = log_mark - _lagged(log_mark, wt)
    for w in VOL_WINDOWS:
        wt = window_ticks(w, tick_ms)
        feats[f"rv_{w}m"] = np.sqrt(_trailing_sum(lr2, wt) / _trailing_count(n, wt) / tick_min)
    # Parkinson: the high-low range of each trailing 1-minute bar, averaged over the window.
    bar = window_ticks(1, tick_ms) + 1  # a bar's ticks plus the previous close
    hl2 = np.log(_trailing_extreme(mark, bar, np.max) / _trailing_extreme(mark, bar, np.min)) ** 2
    for w in VOL_WINDOWS:
        wt = window_ticks(w, tick_ms)
        mean = _trailing_sum(hl2, wt) / _trailing_count(n, wt)
        feats[f"parkinson_{w}m"] = np.sqrt(mean / (4.0 * np.log(2.0)))
    # EWMA of squared returns started from the volatility the venue assumed at tick 0.
    var0 = arrays["sigma_annual"][0] ** 2 * tick_min / MINUTES_PER_YEAR
    for h in EWMA_HALF_LIVES:
        alpha = 1.0 - 0.5 ** (1.0 / window_ticks(h, tick_ms))
        var, _ = lfilter([alpha], [1.0, alpha - 1.0], lr2, axis=0, zi=((1 - alpha) * var0)[None])
        feats[f"ewma_sigma_{h}m"] = np.sqrt(var / tick_min)
    rv5, w60 = feats["rv_5m"], window_ticks(60, tick_ms)
    count60 = _trailing_count(n, w60)
    mean = _trailing_sum(rv5, w60) / count60
    feats["vol_of_vol_60m"] = np.sqrt(np.maximum(_trailing_sum(rv5**2, w60) / count60 - mean**2, 0))
    buy, sell = arrays["taker_buy_usd"], arrays["taker_sell_usd"]
    for w in FLOW_WINDOWS:
        wt = window_ticks(w, tick_ms)
        b, s = _trailing_sum(buy, wt), _trailing_sum(sell, wt)
        feats[f"flow_imbalance_{w}m"] = _ratio(b - s, b + s)
    for w in (1, 15):
        wt = window_ticks(w, tick_ms)
        feats[f"trade_rate_{w}m"] = _trailing_sum(arrays["orders_accepted"], wt) / (wt * tick_min)
    depth = arrays["bid_depth"] + arrays["ask_depth"]
    feats["half_spread"] = arrays["half_spread"]
    feats["log_depth_usd"] = np.log1p(depth)
    feats["depth_vs_max_60m"] = _ratio(depth, _trailing_extreme(depth, w60, np.max))
    oi = arrays["oi_notional"]
    for w in (5, 15):
        wt = window_ticks(w, tick_ms)
        feats[f"liq_count_{w}m"] = _trailing_sum(arrays["liquidations"], wt)
        feats[f"liq_share_{w}m"] = _ratio(_trailing_sum(arrays["liquidated_notional"], wt), oi)
    for w in (5, 60):
        feats[f"oi_change_{w}m"] = np.log1p(oi) - np.log1p(_lagged(oi, window_ticks(w, tick_ms)))
    feats["funding_rate"] = arrays["funding_rate"]
    feats["basis"] = mark / arrays["index_price"] - 1.0
    feats["oracle_gap"] = mark / arrays["oracle_price"] - 1.0
    feats["oracle_age_s"] = arrays["oracle_age"] * tick_ms / 1000.0
    feats["congestion"] = arrays["congestion"]
    feats["insurance_cover"] = _ratio(arrays["insurance_fund"], oi)
    feats["cross_corr_60m"] = _cross_correlation(lr, w60)
    return np.stack([feats[f] for f in MARKET_FEATURES], axis=-1)


def _cross_correlation(lr: np.ndarray, w: int) -> np.ndarray:
    """Return the trailing correlation of each market's returns with the mean return of the
    other markets (NaN with a single market or a flat window)."""
    n, m = lr.shape
    if m < 2:
        return np.full((n, m), np.nan)
    others = (lr.sum(axis=1, keepdims=True) - lr) / (m - 1)
    c = _trailing_count(n, w)
    mx, my = _trailing_sum(lr, w) / c, _trailing_sum(others, w) / c
    cov = _trailing_sum(lr * others, w) / c - mx * my
    vx = _trailing_sum(lr * lr, w) / c - mx * mx
    vy = _trailing_sum(others * others, w) / c - my * my
    den = np.sqrt(np.maximum(vx * vy, 0.0))
    out = np.full((n, m), np.nan)
    np.divide(cov, den, out=out, where=den > 1e-30)
    return np.clip(out, -1.0, 1.0)


def previous_sample(accounts: pd.DataFrame) -> np.ndarray:
    """Return, for each account row, the index of the same account's previous sample (-1 for
    its first)."""
    acct = accounts["account"].to_numpy()
    tick = accounts["tick"].to_numpy()
    order = np.lexsort((tick, acct))
    prev = np.full(len(acct), -1, np.int64)
    same = acct[order][1:] == acct[order][:-1]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def account_features(
    accounts: pd.DataFrame,
    names: list[str],
    market: np.ndarray,
    tick_ms: int,
    horizon_minutes: float,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Return FEATURES for the account rows ``rows`` (default all): float32 (rows, features).

    ``accounts`` is a whole sampled account table (with ``notional_<market>`` columns for
    ``names``), so that each row finds the account's previous sample; ``market`` is
    :func:`market_features` of the same run.
    """
    prev = previous_sample(accounts)
    log_mr_all = np.log(np.clip(accounts["margin_ratio"].to_numpy(), 1e-3, 1e3))
    tick_all = accounts["tick"].to_numpy()
    if rows is not None:
        accounts = accounts.iloc[rows]
        prev = prev[rows]
    n = len(accounts)
    per_market = np.column_stack([accounts[f"notional_{name}"].to_numpy() for name in names])
    dominant = np.abs(per_market).argmax(axis=1)
    signed = per_market[np.arange(n), dominant]
    direction = np.sign(signed)
    tick = accounts["tick"].to_numpy()
    # One gather of the dominant market's row per account row, float32 like the output.
    n_markets = market.shape[1]
    flat = market.reshape(-1, market.shape[2]).astype(np.float32, copy=False)
    mkt = np.take(flat, tick * n_markets + dominant, axis=0)  # (rows, market features)
    col = {f: j for j, f in enumerate(MARKET_FEATURES)}

    log_mr = np.log(np.clip(accounts["margin_ratio"].to_numpy(), 1e-3, 1e3))
    dt_min = (tick - tick_all[prev]) * tick_ms / 60_000.0
    slope = np.full(n, np.nan)
    ok = (prev >= 0) & (dt_min > 0)
    slope[ok] = (log_mr[ok] - log_mr_all[prev[ok]]) / dt_min[ok]

    notional = accounts["notional"].to_numpy()
    dist = accounts["distance_to_liquidation"].to_numpy()
    depth = np.expm1(mkt[:, col["log_depth_usd"]])
    topup = accounts["ticks_since_topup"].to_numpy()
    minute = tick_ms / 60_000.0
    gross = np.abs(per_market).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        feats = {
            "log_margin_ratio": log_mr,
            "log_margin_ratio_slope": slope,
            "leverage": np.clip(accounts["leverage"].to_numpy(), 0.0, 1e3),
            "distance_to_liquidation": dist,
            "upnl_ratio": _ratio(accounts["unrealized_pnl"].to_numpy(), notional),
            "own_impact": _ratio(notional, depth),
            "cross": accounts["cross"].to_numpy(np.float64),
            "minutes_since_topup": np.where(topup >= 0, topup * minute, np.nan),
            "minutes_since_order": accounts["ticks_since_order"].to_numpy() * minute,
            "positions": (per_market != 0).sum(axis=1).astype(np.float64),
            "dominant_share": _ratio(np.abs(signed), gross),
            "direction": direction,
            "adverse_flow_5m": -direction * mkt[:, col["flow_imbalance_5m"]],
            "adverse_basis": -direction * mkt[:, col["basis"]],
        }
        for h in EWMA_HALF_LIVES:
            sigma_h = mkt[:, col[f"ewma_sigma_{h}m"]] * np.sqrt(horizon_minutes)
            feats[f"distance_sigmas_{h}m"] = _ratio(dist, sigma_h)
        for w in RETURN_WINDOWS[:3]:
            feats[f"adverse_ret_{w}m"] = -direction * mkt[:, col[f"ret_{w}m"]]
    out = np.empty((n, len(FEATURES)), np.float32)
    for j, f in enumerate(ACCOUNT_FEATURES):
        out[:, j] = feats[f]
    out[:, len(ACCOUNT_FEATURES) :] = mkt
    return out
