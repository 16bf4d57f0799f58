"""Stylized facts of 1-minute price series, for simulated venues and real bar files alike.

The definitions follow ``shared/reference/stylized_facts.md``: r = log(close_t / close_{t-1})
within gap-free segments; Parkinson sigma = sqrt(mean(ln(high/low)^2) / (4 ln 2)); taker
imbalance = (buy - sell) / (buy + sell); max 60-minute drawdown = the largest
1 - min(close over the next 60 minutes) / close_t.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.prices import bar_segments, load_bars

COLUMNS = (
    ("minutes", "minutes", "{:.0f}"),
    ("sigma_1m_pct", "sigma 1m %", "{:.3f}"),
    ("parkinson_1m_pct", "Parkinson sigma 1m %", "{:.3f}"),
    ("excess_kurtosis", "excess kurtosis", "{:.1f}"),
    ("acf_abs_1", "acf |r| lag 1", "{:.2f}"),
    ("acf_abs_5", "acf |r| lag 5", "{:.2f}"),
    ("corr_imbalance_return", "corr(taker imbalance, r)", "{:.2f}"),
    ("max_60m_drawdown_pct", "max 60-min drawdown %", "{:.1f}"),
    ("worst_1m_pct", "worst 1m %", "{:.2f}"),
    ("move_pct", "move over window %", "{:.1f}"),
)
"""(key, label, format) of the statistics, in table order."""
# sigma uses ddof=1, kurtosis the G2 estimator and acf the lagged Pearson correlation, so the
# real files' figures match shared/reference/stylized_facts.md; drawdowns are taken within
# gap-free segments (the reference's 11.8% for 2022-06-13 spans its 691-minute gap).


def _acf(x: np.ndarray, lag: int) -> float:
    """Autocorrelation as the Pearson correlation of the series with itself ``lag`` later."""
    if x.size <= lag + 2:
        return math.nan
    return _corr(x[lag:], x[:-lag])


def _excess_kurtosis(r: np.ndarray) -> float:
    """Sample excess kurtosis with the small-sample correction (G2, as pandas computes it)."""
    n = r.size
    if n < 4 or r.std() == 0:
        return math.nan
    d = r - r.mean()
    g2 = float((d**4).mean() / (d**2).mean() ** 2 - 3.0)
    return ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def max_forward_drawdown(close: np.ndarray, window: int) -> float:
    """Return max over t of 1 - min(close[t+1 : t+1+window]) / close[t]."""
    if close.size < 2:
        return 0.0
    # A sliding minimum via a strided view; bar series are minutes long, so this is small.
    padded = np.concatenate([close, np.full(window, np.inf)])
    view = np.lib.stride_tricks.sliding_window_view(padded[1:], window)[: close.size - 1]
    ahead = view.min(axis=1)
    return max(float(np.max(1.0 - ahead / close[:-1])), 0.0)


def bar_statistics(
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    buy: np.ndarray,
    sell: np.ndarray,
    segments: list[tuple[int, int]] | None = None,
    first_open: float | None = None,
) -> dict[str, float]:
    """Return the stylized facts of 1-minute bars (arrays of one length; ``segments`` are
    gap-free (first, rows) runs, the whole series when None; the move over the window runs from
    ``first_open``, or the first close when None)."""
    segments = segments or [(0, close.size)]
    returns, imbalance, drawdowns = [], [], []
    for first, rows in segments:
        c = close[first : first + rows]
        returns.append(np.diff(np.log(c)))
        total = buy[first + 1 : first + rows] + sell[first + 1 : first + rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            imb = (buy[first + 1 : first + rows] - sell[first + 1 : first + rows]) / total
        imbalance.append(np.where(total > 0, imb, 0.0))
        drawdowns.append(max_forward_drawdown(c, 60))
    r = np.concatenate(returns)
    imb = np.concatenate(imbalance)
    park = np.sqrt(np.mean(np.log(high / low) ** 2) / (4 * math.log(2)))
    return {
        "minutes": float(close.size),
        "sigma_1m_pct": float(100 * r.std(ddof=1)) if r.size > 1 else math.nan,
        "parkinson_1m_pct": float(100 * park),
        "excess_kurtosis": _excess_kurtosis(r),
        "acf_abs_1": _acf(np.abs(r), 1),
        "acf_abs_5": _acf(np.abs(r), 5),
        "corr_imbalance_return": _corr(imb, r),
        "max_60m_drawdown_pct": float(100 * max(drawdowns)),
        "worst_1m_pct": float(100 * r.min()) if r.size else math.nan,
        "move_pct": float(100 * (close[-1] / (first_open or close[0]) - 1.0)),
    }


def file_statistics(path: str | Path) -> dict[str, float]:
    """Return the stylized facts of a real 1-minute bar file (gaps split it into segments)."""
    bars = load_bars(path)
    volume = bars["volume"].to_numpy()
    buy = bars["taker_buy_volume"].to_numpy()
    return bar_statistics(
        bars["close"].to_numpy(),
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        buy,
        volume - buy,
        bar_segments(bars),
        first_open=float(bars["open"].iloc[0]),
    )


def minute_bars(
    price: np.ndarray, buy: np.ndarray, sell: np.ndarray, ticks_per_minute: int
) -> tuple[np.ndarray, ...]:
    """Aggregate tick series (tick 0 first) into 1-minute (close, high, low, buy, sell)."""
    k = ticks_per_minute
    n = (price.size - 1) // k
    body = price[1 : 1 + n * k].reshape(n, k)
    open_ = np.concatenate([[price[0]], body[:-1, -1]])
    close = np.concatenate([[price[0]], body[:, -1]])
    high = np.concatenate([[price[0]], np.maximum(body.max(axis=1), open_)])
    low = np.concatenate([[price[0]], np.minimum(body.min(axis=1), open_)])
    b = np.concatenate([[0.0], buy[1 : 1 + n * k].reshape(n, k).sum(axis=1)])
    s = np.concatenate([[0.0], sell[1 : 1 + n * k].reshape(n, k).sum(axis=1)])
    return close, high, low, b, s


def liquidation_clustering(counts: np.ndarray) -> float:
    """Return the index of dispersion (variance / mean) of liquidations per minute: 1 for
    liquidations that arrive independently (Poisson), above 1 when they cluster."""
    mean = counts.mean()
    return float(counts.var() / mean) if mean > 0 else math.nan


def max_drawdown(price: np.ndarray) -> float:
    """Return the largest peak-to-trough fall of a price series (a fraction)."""
    peak = np.maximum.accumulate(price)
    return float(np.max(1.0 - price / peak))
