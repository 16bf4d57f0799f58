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

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.signal import lfilter

SCHEMA_VERSION = 2
"""Bumped whenever a feature is added, removed or changes meaning (model.json records it)."""

RETURN_WINDOWS = (1, 5, 15, 60)
VOL_WINDOWS = (5, 15, 60)
FLOW_WINDOWS = (1, 5, 15)
EWMA_HALF_LIVES = (5, 30, 120)
MINUTES_PER_YEAR = 365.25 * 24 * 60
MAP_RUNGS = (0.01, 0.025, 0.05, 0.10)
"""Rungs of the engine's liquidation map (``crowded_<side>_<d>pct`` market columns)."""
CROWDING_BAND_SIGMAS = 2.0
"""An account's own crowding is read at this many sigma x sqrt(H) from the mark."""


def _rung(d: float) -> str:
    return f"{d * 100:g}pct"


_MARKET_BEYOND = (
    *(f"crowding_{side}_{_rung(d)}" for side in ("long", "short") for d in MAP_RUNGS),
    "insurance_vs_crowded",
    "keeper_backlog",
    "depth_change_5m",
    "depth_refill_15m",
    "others_ret_5m",
    "others_liq_share_5m",
)
"""Market features of what the first-passage law cannot see (see FEATURE_GROUPS)."""
_ACCOUNT_BEYOND = (
    "adverse_flow_1m",
    "adverse_flow_15m",
    "adverse_others_ret_5m",
    "crowding_own_band",
    *(f"crowding_own_{_rung(d)}" for d in MAP_RUNGS),
)
"""Account features of what it cannot see (beside ``adverse_flow_5m``, an older one)."""

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
    *_MARKET_BEYOND,
)
"""Per-(tick, market) features; an account gets those of its dominant market.

``crowding_<side>_<d>`` is the notional of the side's positions that a uniform adverse move of
at most d would bring to maintenance margin (the engine's liquidation map), over the book depth
that would absorb their liquidations within d (the bids for longs; the book's square-root
profile rests depth x (d / 1%)^2 within d, see :mod:`engine.book`).
``keeper_backlog`` is the accounts in breach over the keepers' capacity per block; depth change
and refill compare the book with itself 5 minutes ago and with its 15-minute low; ``others_*``
are the mean move and liquidated share of the other markets (contagion)."""

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
    *_ACCOUNT_BEYOND,
)
"""Per-account-row features; distance_sigmas_* and crowding_own_band depend on the horizon.

``crowding_own_<d>`` is the crowding of the account's own side (its dominant market's longs for
a long); ``crowding_own_band`` the same read at CROWDING_BAND_SIGMAS x sigma x sqrt(H), linear
between the map's rungs."""

FEATURES = ACCOUNT_FEATURES + MARKET_FEATURES
"""The model's input columns, in order."""

FIRST_PASSAGE_FEATURES = (
    "log_margin_ratio",
    "log_margin_ratio_slope",
    "leverage",
    "distance_to_liquidation",
    *(f"distance_sigmas_{h}m" for h in EWMA_HALF_LIVES),
    *(f"rv_{w}m" for w in VOL_WINDOWS),
    *(f"parkinson_{w}m" for w in VOL_WINDOWS),
    *(f"ewma_sigma_{h}m" for h in EWMA_HALF_LIVES),
    "vol_of_vol_60m",
    "direction",
)
"""What the closed-form first-passage law sees: the distance to liquidation and volatility."""
BEYOND_FIRST_PASSAGE_FEATURES = (*_MARKET_BEYOND, "adverse_flow_5m", *_ACCOUNT_BEYOND)
"""What it cannot see: crowding of liquidation prices against the book, keeper backlog, depth
leaving and refilling, contagion from the other markets, taker flow against the account's side,
the insurance fund against the crowded notional."""
FEATURE_GROUPS = {
    "first_passage": FIRST_PASSAGE_FEATURES,
    "beyond_first_passage": BEYOND_FIRST_PASSAGE_FEATURES,
    "other": tuple(
        f for f in FEATURES if f not in FIRST_PASSAGE_FEATURES + BEYOND_FIRST_PASSAGE_FEATURES
    ),
}
"""Features grouped for permutation importance: how much of the forecast the analytic law's
inputs explain, and how much the rest."""


def window_ticks(minutes: float, tick_ms: int) -> int:
    """Return the number of ticks in ``minutes`` (at least 1)."""
    return max(1, round(minutes * 60_000 / tick_ms))


class MarketFeatureStream:
    """MARKET_FEATURES computed tick by tick, for the dataset builder and for serving alike.

    :meth:`update` takes the market table's next rows and returns their features. Trailing sums
    are differences of running prefix sums carried across calls, the EWMA filter carries its
    state, and lags and extremes read a kept tail of the series — so feeding a history in one
    call (the dataset builder) or a few ticks at a time (the engine's forecaster) gives the
    same bits. Memory is bounded by the longest window, however long the run.
    """

    def __init__(self, tick_ms: int):
        self.tick_ms = tick_ms
        self.n = 0
        """Ticks seen so far."""
        windows = [window_ticks(w, tick_ms) for w in (*RETURN_WINDOWS, *VOL_WINDOWS, 60)]
        self.keep = max(*windows, window_ticks(1, tick_ms) + 1)
        """Rows of each series (and prefix sums) kept: enough for the longest window."""
        self._tail: dict[str, np.ndarray] = {}
        self._prefix: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        self._slot: dict[str, tuple[str, int]] = {}
        self._ewma_state: dict[int, np.ndarray] = {}

    # Every helper returns values for the rows of the current update, global ticks
    # self.n .. self.n + k - 1; ``_extend`` has been called for the series it reads.

    def _extend(self, name: str, new: np.ndarray) -> np.ndarray:
        """Append ``new`` rows to the kept tail of series ``name``; return tail + new, whose
        first row is global tick max(0, self.n - keep)."""
        full = new if name not in self._tail else np.concatenate([self._tail[name], new])
        self._tail[name] = full[-self.keep :]
        return full

    def _rows(self, k: int, back: int, base: int) -> np.ndarray:
        """Return the positions in a kept-tail array (first row = global tick ``base``) of the
        rows ``back`` ticks before each new row, clamped to tick 0."""
        return np.maximum(np.arange(self.n, self.n + k) - back, 0) - base

    def _lag(self, full: np.ndarray, k: int, w: int) -> np.ndarray:
        return full[self._rows(k, w, max(0, self.n - self.keep))]

    def _extreme(self, full: np.ndarray, k: int, w: int, fn) -> np.ndarray:
        """Return fn (np.max or np.min) over each new row's trailing window of ``w`` rows."""
        first = self.n - max(0, self.n - self.keep)  # position of the first new row in full
        start = first - (w - 1)
        if start < 0:
            # Only near tick 0 (full then starts at tick 0): a window reaching before the run
            # is clamped to tick 0, the same as repeating that row in front.
            full = np.concatenate([np.repeat(full[:1], -start, axis=0), full])
            first, start = first - start, 0
        # A view of each new row's window, (k, ..., w): no index arrays, no gathered copy.
        windows = np.lib.stride_tricks.sliding_window_view(full[start : first + k], w, axis=0)
        return fn(windows, axis=-1)

    def _accumulate(self, group: str, series: dict[str, np.ndarray]) -> None:
        """Extend the running prefix sums of ``series`` (name -> new rows, (k, m) each).

        Prefix sums accumulate in one sequence across calls (cumsum runs sequentially along the
        ticks, for each series and market alike), so a window sum is the same difference of the
        same numbers however the history was fed. Series are summed as one (k, s, m) block: one
        cumsum for all of them.
        """
        new = np.stack([np.asarray(v, np.float64) for v in series.values()], axis=1)
        before = self._prefix.get(group)
        if before is None:
            before = np.zeros((1,) + new.shape[1:])
        grown = np.cumsum(np.concatenate([before[-1:], new]), axis=0)[1:]
        self._pending[group] = np.concatenate([before, grown])
        for i, name in enumerate(series):
            self._slot[name] = (group, i)

    def _sum(self, name: str, w: int) -> np.ndarray:
        """Return the trailing sum over ``w`` rows of series ``name`` for each new row."""
        group, i = self._slot[name]
        prefix = self._pending[group]  # global prefix entries max(0, n - keep) .. n + k
        base = max(0, self.n - self.keep)
        k = prefix.shape[0] - 1 - (self.n - base)  # the update's new rows
        hi = np.arange(self.n + 1, self.n + k + 1)
        lo = np.maximum(hi - w, 0)
        return prefix[hi - base, i] - prefix[lo - base, i]

    def _commit_sums(self) -> None:
        """Keep the prefix sums of the last ``keep`` rows once an update has used them."""
        for group, prefix in self._pending.items():
            self._prefix[group] = prefix[-(self.keep + 1) :]
        self._pending.clear()

    def _count(self, k: int, w: int) -> np.ndarray:
        return np.minimum(np.arange(self.n + 1, self.n + k + 1), w)[:, None].astype(np.float64)

    def update(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return MARKET_FEATURES of the next ticks: float64 (ticks, markets, features).

        ``arrays`` maps market-table columns to (ticks, markets) arrays of the ticks after the
        ones already fed (all of them for a whole history).
        """
        tick_ms = self.tick_ms
        mark = np.asarray(arrays["mark_price"], np.float64)
        k, m = mark.shape
        if k == 0:
            return np.empty((0, m, len(MARKET_FEATURES)))
        tick_min = tick_ms / 60_000.0
        if self.n == 0:
            # EWMA of squared returns started from the volatility the venue assumed at tick 0.
            var0 = arrays["sigma_annual"][0] ** 2 * tick_min / MINUTES_PER_YEAR
            for h in EWMA_HALF_LIVES:
                alpha = 1.0 - 0.5 ** (1.0 / window_ticks(h, tick_ms))
                self._ewma_state[h] = ((1 - alpha) * var0)[None]
        log_mark_full = self._extend("log_mark", np.log(mark))
        log_mark = log_mark_full[-k:]
        previous = log_mark_full[-k - 1 : -1] if log_mark_full.shape[0] > k else None
        if previous is None:  # the first tick of the run has no return
            lr = np.vstack([np.zeros((1, m)), np.diff(log_mark, axis=0)])
        else:
            lr = log_mark - previous
        lr2 = lr * lr
        # Parkinson: the high-low range of each trailing 1-minute bar, averaged over a window.
        bar = window_ticks(1, tick_ms) + 1  # a bar's ticks plus the previous close
        mark_full = self._extend("mark", mark)
        high = self._extreme(mark_full, k, bar, np.max)
        low = self._extreme(mark_full, k, bar, np.min)
        inputs = {
            "lr2": lr2,
            "hl2": np.log(high / low) ** 2,
            "buy": arrays["taker_buy_usd"],
            "sell": arrays["taker_sell_usd"],
            "orders": arrays["orders_accepted"],
            "liqs": arrays["liquidations"],
            "liq_usd": arrays["liquidated_notional"],
        }
        if m >= 2:  # cross-market correlation: each market against the mean of the others
            others = (lr.sum(axis=1, keepdims=True) - lr) / (m - 1)
            inputs.update(lr=lr, others=others, lr_others=lr * others, others_sq=others * others)
        self._accumulate("inputs", inputs)
        feats: dict[str, np.ndarray] = {}
        for w in RETURN_WINDOWS:
            feats[f"ret_{w}m"] = log_mark - self._lag(log_mark_full, k, window_ticks(w, tick_ms))
        for w in VOL_WINDOWS:
            wt = window_ticks(w, tick_ms)
            feats[f"rv_{w}m"] = np.sqrt(self._sum("lr2", wt) / self._count(k, wt) / tick_min)
        for w in VOL_WINDOWS:
            wt = window_ticks(w, tick_ms)
            mean = self._sum("hl2", wt) / self._count(k, wt)
            feats[f"parkinson_{w}m"] = np.sqrt(mean / (4.0 * np.log(2.0)))
        for h in EWMA_HALF_LIVES:
            alpha = 1.0 - 0.5 ** (1.0 / window_ticks(h, tick_ms))
            var, self._ewma_state[h] = lfilter(
                [alpha], [1.0, alpha - 1.0], lr2, axis=0, zi=self._ewma_state[h]
            )
            feats[f"ewma_sigma_{h}m"] = np.sqrt(var / tick_min)
        rv5, w60 = feats["rv_5m"], window_ticks(60, tick_ms)
        self._accumulate("vol", {"rv5": rv5, "rv5_sq": rv5**2})
        count60 = self._count(k, w60)
        mean = self._sum("rv5", w60) / count60
        feats["vol_of_vol_60m"] = np.sqrt(
            np.maximum(self._sum("rv5_sq", w60) / count60 - mean**2, 0)
        )
        for w in FLOW_WINDOWS:
            wt = window_ticks(w, tick_ms)
            b, s = self._sum("buy", wt), self._sum("sell", wt)
            feats[f"flow_imbalance_{w}m"] = _ratio(b - s, b + s)
        for w in (1, 15):
            wt = window_ticks(w, tick_ms)
            feats[f"trade_rate_{w}m"] = self._sum("orders", wt) / (wt * tick_min)
        depth = arrays["bid_depth"] + arrays["ask_depth"]
        feats["half_spread"] = np.asarray(arrays["half_spread"], np.float64)
        feats["log_depth_usd"] = np.log1p(depth)
        depth_full = self._extend("depth", depth)
        feats["depth_vs_max_60m"] = _ratio(depth, self._extreme(depth_full, k, w60, np.max))
        oi = arrays["oi_notional"]
        for w in (5, 15):
            wt = window_ticks(w, tick_ms)
            feats[f"liq_count_{w}m"] = self._sum("liqs", wt)
            feats[f"liq_share_{w}m"] = _ratio(self._sum("liq_usd", wt), oi)
        log_oi_full = self._extend("log_oi", np.log1p(oi))
        for w in (5, 60):
            lagged = self._lag(log_oi_full, k, window_ticks(w, tick_ms))
            feats[f"oi_change_{w}m"] = log_oi_full[-k:] - lagged
        feats["funding_rate"] = np.asarray(arrays["funding_rate"], np.float64)
        feats["basis"] = mark / arrays["index_price"] - 1.0
        feats["oracle_gap"] = mark / arrays["oracle_price"] - 1.0
        feats["oracle_age_s"] = arrays["oracle_age"] * tick_ms / 1000.0
        feats["congestion"] = np.asarray(arrays["congestion"], np.float64)
        feats["insurance_cover"] = _ratio(arrays["insurance_fund"], oi)
        feats["cross_corr_60m"] = self._cross_correlation(k, m, w60)
        self._beyond_first_passage(arrays, feats, depth_full, k, m)
        self._commit_sums()
        self.n += k
        return np.stack([feats[f] for f in MARKET_FEATURES], axis=-1)

    def _beyond_first_passage(
        self,
        arrays: Mapping[str, np.ndarray],
        feats: dict[str, np.ndarray],
        depth_full: np.ndarray,
        k: int,
        m: int,
    ) -> None:
        """Add crowding, keeper backlog, depth dynamics and contagion to ``feats``."""
        tick_ms = self.tick_ms
        for side, book in (("long", "bid_depth"), ("short", "ask_depth")):
            depth = np.asarray(arrays[book], np.float64)
            for d in MAP_RUNGS:
                crowded = arrays[f"crowded_{side}_{_rung(d)}"]
                feats[f"crowding_{side}_{_rung(d)}"] = _ratio(crowded, depth * (d / 0.01) ** 2)
        crowded_5 = arrays["crowded_long_5pct"] + arrays["crowded_short_5pct"]
        feats["insurance_vs_crowded"] = _ratio(arrays["insurance_fund"], crowded_5)
        feats["keeper_backlog"] = _ratio(arrays["breached"], arrays["keeper_capacity"])
        log_depth = np.log1p(depth_full)  # the kept tail plus the new rows
        base = max(0, self.n - self.keep)
        now = log_depth[self._rows(k, 0, base)]
        feats["depth_change_5m"] = now - log_depth[self._rows(k, window_ticks(5, tick_ms), base)]
        low = self._extreme(depth_full, k, window_ticks(15, tick_ms), np.min)
        feats["depth_refill_15m"] = _ratio(depth_full[self._rows(k, 0, base)], low) - 1.0
        if m < 2:
            feats["others_ret_5m"] = np.full((k, m), np.nan)
            feats["others_liq_share_5m"] = np.full((k, m), np.nan)
            return
        ret = feats["ret_5m"]
        feats["others_ret_5m"] = (ret.sum(axis=1, keepdims=True) - ret) / (m - 1)
        liq = self._sum("liq_usd", window_ticks(5, tick_ms))
        oi = np.asarray(arrays["oi_notional"], np.float64)
        feats["others_liq_share_5m"] = _ratio(
            liq.sum(axis=1, keepdims=True) - liq, oi.sum(axis=1, keepdims=True) - oi
        )

    def _cross_correlation(self, k: int, m: int, w: int) -> np.ndarray:
        """Return the trailing correlation of each market's returns with the mean return of the
        other markets (NaN with a single market or a flat window)."""
        if m < 2:
            return np.full((k, m), np.nan)
        c = self._count(k, w)
        mx, my = self._sum("lr", w) / c, self._sum("others", w) / c
        cov = self._sum("lr_others", w) / c - mx * my
        vx = self._sum("lr2", w) / c - mx * mx
        vy = self._sum("others_sq", w) / c - my * my
        den = np.sqrt(np.maximum(vx * vy, 0.0))
        out = np.full((k, m), np.nan)
        np.divide(cov, den, out=out, where=den > 1e-30)
        return np.clip(out, -1.0, 1.0)


def _crowding_at(own: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Return crowding read at distance ``band`` from the map's rungs (rows, rungs): the
    crowded notional interpolated linearly in distance (0 at 0, flat past the last rung), over
    the depth within ``band``."""
    rungs = np.asarray(MAP_RUNGS)
    # crowding_d = crowded_d / (depth x (d / 1%)^2): back to crowded notional per unit of depth.
    crowded = own * (rungs / 0.01) ** 2
    xs = np.concatenate([[0.0], rungs])
    b = np.clip(np.asarray(band, np.float64), 0.0, rungs[-1])
    j = np.clip(np.searchsorted(rungs, b, side="left"), 0, rungs.size - 1)
    lo = np.where(j > 0, crowded[np.arange(len(b)), np.maximum(j - 1, 0)], 0.0)
    hi = crowded[np.arange(len(b)), j]
    w = (b - xs[j]) / (xs[j + 1] - xs[j])
    at = lo + w * (hi - lo)
    return _ratio(at, (np.maximum(b, 1e-4) / 0.01) ** 2)


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


def market_features(arrays: Mapping[str, np.ndarray], tick_ms: int) -> np.ndarray:
    """Return MARKET_FEATURES for every (tick, market) of a whole history: float64 (ticks,
    markets, features)."""
    return MarketFeatureStream(tick_ms).update(arrays)


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
    log_mr_all = log_margin_ratio(accounts["margin_ratio"].to_numpy())
    tick_all = accounts["tick"].to_numpy()
    if rows is not None:
        accounts = accounts.iloc[rows]
        prev = prev[rows]
    has_prev = prev >= 0
    n_markets = market.shape[1]
    # One gather of the dominant market's row per account row, float32 like the output.
    flat = market.reshape(-1, market.shape[2]).astype(np.float32, copy=False)
    columns = ROW_INPUTS + tuple(f"notional_{name}" for name in names)
    return features_of_rows(
        {c: accounts[c].to_numpy() for c in columns},
        names,
        lambda tick, dominant: np.take(flat, tick * n_markets + dominant, axis=0),
        np.where(has_prev, log_mr_all[np.maximum(prev, 0)], np.nan),
        np.where(has_prev, tick_all[np.maximum(prev, 0)], -1),
        tick_ms,
        horizon_minutes,
    )


ROW_INPUTS = (
    "tick",
    "margin_ratio",
    "leverage",
    "notional",
    "distance_to_liquidation",
    "unrealized_pnl",
    "cross",
    "ticks_since_topup",
    "ticks_since_order",
)
"""Columns of a sampled account row that its features read (besides ``notional_<market>``)."""


def log_margin_ratio(margin_ratio: np.ndarray) -> np.ndarray:
    """Return log(margin ratio), clipped to [1e-3, 1e3] (no position: NaN stays NaN)."""
    return np.log(np.clip(margin_ratio, 1e-3, 1e3))


def features_of_rows(
    accounts: Mapping[str, np.ndarray],
    names: list[str],
    market_rows,
    previous_log_mr: np.ndarray,
    previous_tick: np.ndarray,
    tick_ms: int,
    horizon_minutes: float,
) -> np.ndarray:
    """Return FEATURES of account rows: float32 (rows, features).

    The one implementation behind the dataset builder (:func:`account_features`) and serving
    (:class:`predictor.serving.OnlineFeatures`). ``accounts`` maps ROW_INPUTS and
    ``notional_<market>`` to arrays of the rows; ``market_rows(tick, dominant)`` returns the
    float32 MARKET_FEATURES of each row's dominant market at its tick; ``previous_log_mr`` and
    ``previous_tick`` describe each account's previous sample (NaN and -1 for none).
    """
    per_market = np.column_stack([np.asarray(accounts[f"notional_{name}"]) for name in names])
    n = per_market.shape[0]
    dominant = np.abs(per_market).argmax(axis=1)
    signed = per_market[np.arange(n), dominant]
    direction = np.sign(signed)
    tick = np.asarray(accounts["tick"])
    mkt = market_rows(tick, dominant)  # (rows, market features) float32
    col = {f: j for j, f in enumerate(MARKET_FEATURES)}

    log_mr = log_margin_ratio(np.asarray(accounts["margin_ratio"]))
    dt_min = (tick - previous_tick) * tick_ms / 60_000.0
    slope = np.full(n, np.nan)
    ok = (previous_tick >= 0) & (dt_min > 0)
    slope[ok] = (log_mr[ok] - previous_log_mr[ok]) / dt_min[ok]

    notional = np.asarray(accounts["notional"])
    dist = np.asarray(accounts["distance_to_liquidation"])
    depth = np.expm1(mkt[:, col["log_depth_usd"]])
    topup = np.asarray(accounts["ticks_since_topup"])
    minute = tick_ms / 60_000.0
    gross = np.abs(per_market).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        feats = {
            "log_margin_ratio": log_mr,
            "log_margin_ratio_slope": slope,
            "leverage": np.clip(np.asarray(accounts["leverage"]), 0.0, 1e3),
            "distance_to_liquidation": dist,
            "upnl_ratio": _ratio(np.asarray(accounts["unrealized_pnl"]), notional),
            "own_impact": _ratio(notional, depth),
            "cross": np.asarray(accounts["cross"], np.float64),
            "minutes_since_topup": np.where(topup >= 0, topup * minute, np.nan),
            "minutes_since_order": np.asarray(accounts["ticks_since_order"]) * minute,
            "positions": (per_market != 0).sum(axis=1).astype(np.float64),
            "dominant_share": _ratio(np.abs(signed), gross),
            "direction": direction,
            "adverse_flow_5m": -direction * mkt[:, col["flow_imbalance_5m"]],
            "adverse_basis": -direction * mkt[:, col["basis"]],
            "adverse_flow_1m": -direction * mkt[:, col["flow_imbalance_1m"]],
            "adverse_flow_15m": -direction * mkt[:, col["flow_imbalance_15m"]],
            "adverse_others_ret_5m": -direction * mkt[:, col["others_ret_5m"]],
        }
        # Own side's crowding: longs are liquidated into the bids, shorts into the asks.
        long = direction >= 0
        own = np.column_stack(
            [
                np.where(
                    long,
                    mkt[:, col[f"crowding_long_{_rung(d)}"]],
                    mkt[:, col[f"crowding_short_{_rung(d)}"]],
                )
                for d in MAP_RUNGS
            ]
        )
        for j, d in enumerate(MAP_RUNGS):
            feats[f"crowding_own_{_rung(d)}"] = own[:, j]
        band = CROWDING_BAND_SIGMAS * mkt[:, col["ewma_sigma_30m"]] * np.sqrt(horizon_minutes)
        feats["crowding_own_band"] = _crowding_at(own, band)
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
