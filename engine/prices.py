"""The external index: stochastic processes and real-data replay.

Every model returns an :class:`IndexPath` of shape (steps + 1, m) drawn from its own generator:

* ``gbm`` — correlated geometric Brownian motions;
* ``garch`` — GARCH(1,1) variance per market (volatility clustering), unconditional variance at
  each market's ``sigma_annual``;
* ``jump`` — Merton jump-diffusion: GBM plus Poisson jumps with normal log sizes (fat tails);
* ``regime`` — a two-state (calm / stress) Markov switch common to all markets: in stress,
  volatility is multiplied, drift turns, jumps come more often and correlations rise;
* ``replay`` — a real 1-minute bar file drives one market; sub-minute ticks pass through each
  bar's open, high, low and close on a Brownian bridge, and the bar's real signed taker flow is
  spread over its ticks; other markets follow it with the configured correlation.

Bar files have the columns of ``shared/data/market`` (``open_time_ms, open, high, low, close,
volume, taker_buy_volume``, gzip or plain CSV). Malformed rows are refused with the line number;
gaps (missing minutes) either refuse the file or split it into gap-free segments, by option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import MAX_PRICE, IndexConfig, SimConfig
from engine.errors import PredliqError

BAR_MS = 60_000
REQUIRED_COLUMNS = ("open_time_ms", "open", "high", "low", "close", "volume", "taker_buy_volume")
MS_PER_DAY = 24 * 3600 * 1000


class ReplayError(PredliqError, ValueError):
    """A bar file that cannot be replayed: the message names the file, line and problem."""


@dataclass(frozen=True, slots=True)
class IndexPath:
    """An index path and what drove it. Arrays have steps + 1 rows."""

    prices: np.ndarray
    """float64 (steps + 1, m)."""
    regime: np.ndarray
    """int8 (steps + 1,): 0 calm, 1 stress (always 0 outside the regime model)."""
    taker_flow: np.ndarray
    """float64 (steps + 1, m): real signed taker flow in base units per tick (replay), else 0."""
    time_ms: np.ndarray | None = None
    """int64 (steps + 1,): wall-clock time of each tick for a replay, else None."""
    segments: tuple[tuple[int, int], ...] = ()
    """Gap-free segments of the replayed file as (first row, rows), for the manifest."""


def equicorrelation_cholesky(m: int, rho: float) -> np.ndarray:
    """Return the Cholesky factor of the m x m matrix with 1 on the diagonal and rho elsewhere."""
    corr = np.full((m, m), rho)
    np.fill_diagonal(corr, 1.0)
    return np.linalg.cholesky(corr)


def simulate_index(cfg: SimConfig, rng: np.random.Generator, steps: int | None = None) -> IndexPath:
    """Draw the index of every market for a run (replays read their file)."""
    ix = cfg.index
    if ix.model == "replay":
        return replay_index(cfg, rng)
    steps = cfg.steps if steps is None else steps
    m = len(cfg.markets)
    dt = cfg.tick_ms / (365.0 * MS_PER_DAY)
    s0 = np.array([mk.initial_price for mk in cfg.markets])
    sigma = np.array([mk.sigma_annual for mk in cfg.markets])
    mu = np.array([mk.drift_annual for mk in cfg.markets])
    regime = np.zeros(steps + 1, np.int8)
    if ix.model == "regime":
        regime = _markov_regime(rng, steps, ix, cfg.tick_ms)
    stress = regime[1:].astype(bool)
    chol_calm = equicorrelation_cholesky(m, ix.correlation)
    chol_stress = equicorrelation_cholesky(m, ix.stress_correlation)
    z = rng.standard_normal((steps, m))
    shocks = np.where(stress[:, None], z @ chol_stress.T, z @ chol_calm.T)

    if ix.model == "garch":
        log_ret = _garch(shocks, sigma**2 * dt, ix.garch_alpha, ix.garch_beta) + mu * dt
    else:
        vol = sigma * math.sqrt(dt) * np.where(stress[:, None], ix.stress_vol_multiplier, 1.0)
        drift = np.where(stress[:, None], ix.stress_drift_annual, mu) * dt
        log_ret = drift - 0.5 * vol**2 + vol * shocks
        if ix.model in ("jump", "regime"):
            log_ret += _jumps(rng, steps, m, ix, cfg.tick_ms, stress)
    prices = np.empty((steps + 1, m))
    prices[0] = s0
    prices[1:] = s0 * np.exp(np.cumsum(log_ret, axis=0))
    return IndexPath(prices, regime, np.zeros((steps + 1, m)))


def _garch(shocks: np.ndarray, target_var: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Return GARCH(1,1) log returns for standard-normal shocks (steps, m)."""
    omega = target_var * (1.0 - alpha - beta)
    var = target_var.copy()
    out = np.empty_like(shocks)
    for t in range(shocks.shape[0]):  # the recursion is inherently sequential; m is small
        eps = np.sqrt(var) * shocks[t]
        out[t] = eps
        var = omega + alpha * eps**2 + beta * var
    return out - 0.5 * target_var


def _jumps(
    rng: np.random.Generator,
    steps: int,
    m: int,
    ix: IndexConfig,
    tick_ms: int,
    stress: np.ndarray,
) -> np.ndarray:
    """Return the jump part of log returns (steps, m): Poisson counts of normal log jumps."""
    lam = ix.jump_intensity_per_day * tick_ms / MS_PER_DAY
    rate = np.where(stress, lam * ix.stress_jump_multiplier, lam)[:, None] * np.ones((1, m))
    counts = rng.poisson(rate)
    # The sum of n normal jumps is normal with n times the mean and variance.
    sizes = ix.jump_mean * counts + ix.jump_std * np.sqrt(counts) * rng.standard_normal(
        counts.shape
    )
    return np.where(counts > 0, sizes, 0.0)


def _markov_regime(
    rng: np.random.Generator, steps: int, ix: IndexConfig, tick_ms: int
) -> np.ndarray:
    """Return a calm (0) / stress (1) path with the configured switching rates."""
    per_tick = tick_ms / MS_PER_DAY
    p_enter = 1.0 - math.exp(-ix.regime_enter_per_day * per_tick)
    p_exit = 1.0 - math.exp(-ix.regime_exit_per_day * per_tick)
    u = rng.random(steps)
    state = np.zeros(steps + 1, np.int8)
    s = 0
    for t in range(steps):  # a two-state chain: sequential, cheap
        s = int(u[t] < p_enter) if s == 0 else int(u[t] >= p_exit)
        state[t + 1] = s
    return state


# ---------------------------------------------------------------------------------------------
# Replay of real 1-minute bars
# ---------------------------------------------------------------------------------------------


def load_bars(path: str | Path) -> pd.DataFrame:
    """Read and validate a 1-minute bar file; return its rows with a ``line`` column.

    Raises :class:`ReplayError` naming the line of the first malformed row: a missing column,
    a value that is not a number (or NaN), a non-positive price, high below low or not
    enclosing open and close, negative volume, taker buy volume above volume, or timestamps
    that are not strictly increasing or not on whole minutes.
    """
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ReplayError(f"replay file {str(p)!r} does not exist") from None
    except pd.errors.EmptyDataError:
        raise ReplayError(f"replay file {str(p)!r} is empty (no header, no rows)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReplayError(f"replay file {str(p)!r} cannot be read: {reason}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReplayError(f"replay file {p.name}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise ReplayError(f"replay file {p.name}: no rows")
    df = df.reset_index(drop=True)
    line = np.arange(len(df)) + 2  # line 1 is the header
    out = pd.DataFrame({"line": line})
    for c in REQUIRED_COLUMNS:
        values = pd.to_numeric(df[c].str.strip(), errors="coerce").astype(np.float64)
        bad = values.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise ReplayError(
                f"replay file {p.name} line {line[i]}: {c} is not a number, was {df[c].iloc[i]!r}"
            )
        # Finite and within what the ledger holds: a price above MAX_PRICE, or a volume or time
        # beyond 1e15, cannot be a real bar and would overflow the quote quantums.
        limit = MAX_PRICE if c in ("open", "high", "low", "close") else 1e15
        if c == "open_time_ms":
            limit = 2.0**53  # milliseconds, exact in float64
        bad = ~np.isfinite(values.to_numpy()) | (values.abs().to_numpy() > limit)
        if bad.any():
            i = int(np.argmax(bad))
            raise ReplayError(
                f"replay file {p.name} line {line[i]}: {c} must be finite and at most "
                f"{limit:.6g}, was {df[c].iloc[i]!r}"
            )
        out[c] = values.to_numpy(np.int64 if c == "open_time_ms" else np.float64)
    checks = [
        ((out[["open", "high", "low", "close"]] <= 0).any(axis=1), "a price is not positive"),
        (out["high"] < out["low"], "high is below low"),
        (
            (out["high"] < out[["open", "close"]].max(axis=1))
            | (out["low"] > out[["open", "close"]].min(axis=1)),
            "high/low do not enclose open and close",
        ),
        (out["volume"] < 0, "volume is negative"),
        (
            (out["taker_buy_volume"] < 0) | (out["taker_buy_volume"] > out["volume"] * (1 + 1e-9)),
            "taker_buy_volume is outside [0, volume]",
        ),
        (out["open_time_ms"] % BAR_MS != 0, "open_time_ms is not on a whole minute"),
    ]
    t = out["open_time_ms"].to_numpy()
    order = np.zeros(len(out), bool)
    order[1:] = t[1:] <= t[:-1]
    checks.append(
        (pd.Series(order), "timestamp is not after the previous row's (unsorted or duplicate)")
    )
    for mask, what in checks:
        bad = np.asarray(mask, bool)
        if bad.any():
            i = int(np.argmax(bad))
            row = out.iloc[i]
            raise ReplayError(
                f"replay file {p.name} line {int(row['line'])} (open_time_ms "
                f"{int(row['open_time_ms'])}): {what} (open {row['open']}, high {row['high']}, "
                f"low {row['low']}, close {row['close']})"
            )
    return out


def bar_segments(bars: pd.DataFrame) -> list[tuple[int, int]]:
    """Return gap-free runs of consecutive minutes as (first row, number of rows)."""
    t = bars["open_time_ms"].to_numpy()
    breaks = np.flatnonzero(np.diff(t) != BAR_MS) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(t)]])
    return [(int(a), int(b - a)) for a, b in zip(starts, ends, strict=True)]


def bridge_ticks(
    bars: pd.DataFrame, ticks_per_bar: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return (prices, taker flow) per tick for consecutive bars, (n_bars x ticks_per_bar + 1,).

    Tick 0 is the first open. Within each bar the ticks visit the bar's high and low (in a
    random order, at random interior ticks) and end on its close; the points in between follow
    a Brownian bridge in log price, kept inside [low, high]. The bar's signed taker flow
    (2 x taker buy - volume) is spread evenly over its ticks.
    """
    n = len(bars)
    k = ticks_per_bar
    o, h, lo, c = (bars[x].to_numpy() for x in ("open", "high", "low", "close"))
    flow = (2.0 * bars["taker_buy_volume"].to_numpy() - bars["volume"].to_numpy()) / k
    prices = np.empty(n * k + 1)
    prices[0] = o[0]
    if k == 1:
        prices[1:] = c
    else:
        for b in range(n):  # per bar, a handful of anchors; bars are minutes, so n is small
            anchors_t = [0, k]
            anchors_p = [math.log(o[b]), math.log(c[b])]
            if k >= 3:
                hi_t, lo_t = rng.choice(np.arange(1, k), size=2, replace=False)
                anchors_t += [int(hi_t), int(lo_t)]
                anchors_p += [math.log(h[b]), math.log(lo[b])]
            order = np.argsort(anchors_t)
            at = np.asarray(anchors_t)[order]
            ap = np.asarray(anchors_p)[order]
            grid = np.arange(k + 1)
            path = np.interp(grid, at, ap)
            # Brownian bridge noise between anchors, scaled to the bar's range.
            scale = (math.log(h[b]) - math.log(lo[b])) / 4.0
            noise = np.zeros(k + 1)
            for a0, a1 in zip(at[:-1], at[1:], strict=True):
                span = a1 - a0
                if span > 1:
                    w = np.cumsum(rng.standard_normal(span)) * scale / math.sqrt(span)
                    s = np.arange(1, span + 1) / span
                    noise[a0 + 1 : a1 + 1] = w - s * w[-1]
            seg = np.clip(np.exp(path + noise), lo[b], h[b])
            seg[at] = np.exp(ap)
            prices[b * k + 1 : (b + 1) * k + 1] = seg[1:]
    ticks_flow = np.zeros(n * k + 1)
    ticks_flow[1:] = np.repeat(flow, k)
    return prices, ticks_flow


def replay_index(cfg: SimConfig, rng: np.random.Generator) -> IndexPath:
    """Drive ``index.replay_market`` with the replay file; the others follow it, correlated."""
    ix = cfg.index
    bars = load_bars(ix.replay_file)
    segments = bar_segments(bars)
    name = Path(ix.replay_file).name
    if len(segments) > 1 and ix.replay_gaps == "refuse":
        first, rows = segments[1]
        prev = bars.iloc[first - 1]
        raise ReplayError(
            f"replay file {name} has {len(segments) - 1} gap(s); the first is after line "
            f"{int(prev['line'])}: "
            f"{(int(bars.iloc[first]['open_time_ms']) - int(prev['open_time_ms'])) // BAR_MS - 1}"
            ' minutes missing (set index.replay_gaps = "split" to replay one gap-free segment)'
        )
    if ix.replay_segment >= len(segments):
        raise ReplayError(
            f"index.replay_segment must be below {len(segments)} (the file's gap-free segments),"
            f" was {ix.replay_segment}"
        )
    seg = (
        max(range(len(segments)), key=lambda i: segments[i][1])
        if ix.replay_segment < 0
        else ix.replay_segment
    )
    first, rows = segments[seg]
    part = bars.iloc[first : first + rows]
    k = BAR_MS // cfg.tick_ms
    replay_prices, flow = bridge_ticks(part, k, rng)
    available = len(replay_prices) - 1
    steps = cfg.steps or available
    if steps > available:
        raise ReplayError(
            f"steps must be at most {available} for this replay ({rows} bars x {k} ticks), "
            f"was {steps}"
        )
    m = len(cfg.markets)
    names = [mk.name for mk in cfg.markets]
    j = names.index(ix.replay_market)
    prices = np.empty((steps + 1, m))
    taker_flow = np.zeros((steps + 1, m))
    prices[:, j] = replay_prices[: steps + 1]
    taker_flow[:, j] = flow[: steps + 1]
    r = np.diff(np.log(prices[:, j]))
    r_std = r.std() if r.size > 1 and r.std() > 0 else 1.0
    dt = cfg.tick_ms / (365.0 * MS_PER_DAY)
    rho = ix.correlation
    for i, mk in enumerate(cfg.markets):
        if i == j:
            continue
        # Same standardized move with weight rho, own noise for the rest; own volatility.
        own = mk.sigma_annual * math.sqrt(dt)
        z = rho * (r / r_std) + math.sqrt(1 - rho**2) * rng.standard_normal(steps)
        prices[0, i] = mk.initial_price
        prices[1:, i] = mk.initial_price * np.exp(np.cumsum(own * z - 0.5 * own**2))
    t0 = int(part["open_time_ms"].iloc[0])
    time_ms = t0 + np.arange(steps + 1, dtype=np.int64) * cfg.tick_ms
    return IndexPath(prices, np.zeros(steps + 1, np.int8), taker_flow, time_ms, tuple(segments))


def apply_shocks(paths: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Return paths with each configured shock's log return spread evenly over its ticks."""
    if not cfg.shocks:
        return paths
    names = [mk.name for mk in cfg.markets]
    log_paths = np.log(paths)
    for shock in cfg.shocks:
        k = names.index(shock.market)
        ramp = np.zeros(paths.shape[0])
        start = min(shock.tick, paths.shape[0] - 1)
        end = min(shock.tick + shock.over_ticks, paths.shape[0])
        ramp[start:end] = shock.log_return / shock.over_ticks
        log_paths[:, k] += np.cumsum(ramp)
    return np.exp(log_paths)
