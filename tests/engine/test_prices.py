"""Index processes and real-data replay."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import resolve
from engine.prices import ReplayError, bar_segments, bridge_ticks, load_bars, simulate_index

DATA = Path(__file__).resolve().parents[2] / "pipelines" / "data" / "market"
CRASH_2020 = DATA / "BTCUSDT-PERP_1m_2020-03-12.csv.gz"
GAPPY_2022 = DATA / "BTCUSDT-PERP_1m_2022-06-13.csv.gz"


def config(model: str, steps: int = 20_000, m: int = 2, **index):
    markets = [{"name": f"M{k}", "initial_price": 100.0, "sigma_annual": 0.8} for k in range(m)]
    return resolve(
        {"steps": steps, "seed": 4, "markets": markets, "index": {"model": model, **index}}
    )


def log_returns(cfg) -> np.ndarray:
    path = simulate_index(cfg, np.random.default_rng(cfg.seed))
    assert path.prices.shape == (cfg.steps + 1, len(cfg.markets))
    assert (path.prices > 0).all()
    return np.diff(np.log(path.prices), axis=0)


def excess_kurtosis(r: np.ndarray) -> float:
    z = (r - r.mean()) / r.std()
    return float((z**4).mean() - 3.0)


def acf_abs(r: np.ndarray, lag: int = 1) -> float:
    a = np.abs(r) - np.abs(r).mean()
    return float((a[lag:] * a[:-lag]).mean() / (a * a).mean())


def test_gbm_is_gaussian_and_correlated_as_configured():
    r = log_returns(config("gbm", correlation=0.7))
    assert abs(excess_kurtosis(r[:, 0])) < 0.2
    assert abs(acf_abs(r[:, 0])) < 0.05
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(0.7, abs=0.03)
    # Annualized volatility matches sigma_annual.
    per_year = 365 * 24 * 60
    assert r[:, 0].std() * np.sqrt(per_year) == pytest.approx(0.8, rel=0.05)


def test_garch_clusters_volatility_and_has_fat_tails():
    r = log_returns(config("garch", garch_alpha=0.1, garch_beta=0.85))[:, 0]
    assert excess_kurtosis(r) > 0.5
    assert acf_abs(r, 1) > 0.05 and acf_abs(r, 5) > 0.03
    per_year = 365 * 24 * 60
    assert r.std() * np.sqrt(per_year) == pytest.approx(0.8, rel=0.15)


def test_jumps_fatten_tails():
    r = log_returns(config("jump", jump_intensity_per_day=20.0, jump_std=0.01))[:, 0]
    assert excess_kurtosis(r) > 3.0


def test_regime_switch_raises_volatility_and_correlation_in_stress():
    cfg = config(
        "regime",
        steps=40_000,
        correlation=0.2,
        stress_correlation=0.9,
        regime_enter_per_day=2.0,
        regime_exit_per_day=10.0,
    )
    path = simulate_index(cfg, np.random.default_rng(1))
    r = np.diff(np.log(path.prices), axis=0)
    stress = path.regime[1:].astype(bool)
    assert 0.05 < stress.mean() < 0.35  # stationary share 2 / (2 + 10) ~ 0.17
    assert r[stress, 0].std() > 2.5 * r[~stress, 0].std()
    assert np.corrcoef(r[stress].T)[0, 1] > np.corrcoef(r[~stress].T)[0, 1] + 0.3
    assert excess_kurtosis(r[:, 0]) > 1.0 and acf_abs(r[:, 0]) > 0.1


def test_same_seed_same_path_and_invalid_correlation_is_refused():
    a = simulate_index(config("jump"), np.random.default_rng(9)).prices
    b = simulate_index(config("jump"), np.random.default_rng(9)).prices
    assert (a == b).all()
    with pytest.raises(ValueError, match=r"index.correlation must be above -0.5"):
        config("gbm", m=3, correlation=-0.6)


# ---- replay ----------------------------------------------------------------------------------


def test_bridge_ticks_pass_through_every_bars_open_high_low_close():
    bars = load_bars(CRASH_2020)
    k = 6
    prices, flow = bridge_ticks(bars, k, np.random.default_rng(0))
    assert len(prices) == len(bars) * k + 1
    for b in range(len(bars)):
        inside = prices[b * k : (b + 1) * k + 1]  # from the bar's open tick to its close tick
        row = bars.iloc[b]
        if b == 0:
            assert inside[0] == row["open"]
        assert inside[-1] == pytest.approx(row["close"])
        assert inside[1:].max() == pytest.approx(row["high"])
        assert inside[1:].min() == pytest.approx(row["low"])
    signed = 2 * bars["taker_buy_volume"] - bars["volume"]
    assert flow[1:].reshape(-1, k).sum(axis=1) == pytest.approx(signed.to_numpy())


def test_replay_drives_its_market_and_the_other_follows():
    cfg = resolve(
        {
            "steps": 0,
            "tick_ms": 15_000,
            "seed": 2,
            "markets": [
                {"name": "BTC", "initial_price": 5_000.0, "sigma_annual": 0.8},
                {"name": "ETH", "initial_price": 150.0, "sigma_annual": 1.0},
            ],
            "index": {
                "model": "replay",
                "replay_file": str(CRASH_2020),
                "replay_market": "BTC",
                "correlation": 0.8,
            },
        }
    )
    path = simulate_index(cfg, np.random.default_rng(0))
    bars = load_bars(CRASH_2020)
    assert path.prices.shape == (len(bars) * 4 + 1, 2)
    assert path.prices[0, 0] == bars["open"].iloc[0]
    assert path.prices[-1, 0] == pytest.approx(bars["close"].iloc[-1])
    assert path.time_ms[0] == bars["open_time_ms"].iloc[0]
    r = np.diff(np.log(path.prices), axis=0)
    assert np.corrcoef(r.T)[0, 1] > 0.6


def test_gaps_are_refused_or_split_by_option():
    base = {
        "steps": 0,
        "markets": [{"name": "BTC", "initial_price": 1.0, "sigma_annual": 0.5}],
        "index": {"model": "replay", "replay_file": str(GAPPY_2022), "replay_market": "BTC"},
    }
    with pytest.raises(ReplayError, match=r"1 gap\(s\); the first is after line \d+: 691 minutes"):
        simulate_index(resolve(base), np.random.default_rng(0))
    segments = bar_segments(load_bars(GAPPY_2022))
    assert len(segments) == 2
    split = resolve(base, ["index.replay_gaps=split"])
    path = simulate_index(split, np.random.default_rng(0))
    assert len(path.prices) == max(rows for _, rows in segments) + 1
    second = resolve(base, ["index.replay_gaps=split", "index.replay_segment=1"])
    assert len(simulate_index(second, np.random.default_rng(0)).prices) == segments[1][1] + 1
    with pytest.raises(ReplayError, match="replay_segment must be below 2"):
        simulate_index(
            resolve(base, ["index.replay_gaps=split", "index.replay_segment=2"]),
            np.random.default_rng(0),
        )


GOOD = [
    "2020-03-12T21:45:00Z,1584049500000,100,101,99,100.5,10,5,6",
    "2020-03-12T21:46:00Z,1584049560000,100.5,102,100,101,12,6,5",
    "2020-03-12T21:47:00Z,1584049620000,101,101.5,100.2,100.4,8,4,4",
]
HEADER = "timestamp,open_time_ms,open,high,low,close,volume,trades,taker_buy_volume"


def _write(tmp_path: Path, rows: list[str], gz: bool = True) -> Path:
    text = "\n".join([HEADER, *rows]) + "\n"
    p = tmp_path / ("bars.csv.gz" if gz else "bars.csv")
    if gz:
        with gzip.open(p, "wt") as f:
            f.write(text)
    else:
        p.write_text(text)
    return p


def _with(i: int, column: str, value: str) -> list[str]:
    rows = [r.split(",") for r in GOOD]
    idx = HEADER.split(",").index(column)
    rows[i][idx] = value
    return [",".join(r) for r in rows]


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (_with(1, "low", "0"), "line 3 (open_time_ms 1584049560000): a price is not positive"),
        (_with(1, "high", "99.5"), "line 3 (open_time_ms 1584049560000): high is below low"),
        (_with(2, "high", "100.9"), "line 4 (open_time_ms 1584049620000): high/low do not enclose"),
        (_with(0, "close", "nan"), "line 2: close is not a number, was 'nan'"),
        (_with(2, "open", ""), "line 4: open is not a number, was ''"),
        (
            [GOOD[1], GOOD[0], GOOD[2]],
            "line 3 (open_time_ms 1584049500000): timestamp is not after",
        ),
        (
            [GOOD[0], GOOD[0], GOOD[2]],
            "line 3 (open_time_ms 1584049500000): timestamp is not after",
        ),
        (
            _with(0, "taker_buy_volume", "11"),
            "line 2 (open_time_ms 1584049500000): taker_buy_volume",
        ),
        (
            _with(1, "open_time_ms", "1584049560001"),
            "line 3 (open_time_ms 1584049560001): open_time_ms is not on a whole minute",
        ),
    ],
)
def test_malformed_rows_are_refused_with_their_line(tmp_path, rows, needle):
    with pytest.raises(ReplayError) as err:
        load_bars(_write(tmp_path, rows))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_column_empty_or_missing_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("open_time_ms,open,high,low,close\n1584049500000,1,1,1,1\n")
    with pytest.raises(ReplayError, match="missing column"):
        load_bars(p)
    with pytest.raises(ReplayError, match="does not exist"):
        load_bars(tmp_path / "nope.csv")
    assert len(load_bars(_write(tmp_path, GOOD, gz=False))) == 3
    assert list(pd.Series(load_bars(_write(tmp_path, GOOD))["line"])) == [2, 3, 4]


SHIPPED = {
    # file: (rows, first bar, last bar, gaps) as PROVENANCE.md states them
    "BTCUSDT-PERP_1m_2020-03-12.csv.gz": (287, "2020-03-12 21:45", "2020-03-13 02:31", 0),
    "BTCUSDT-PERP_1m_2021-05-19.csv.gz": (270, "2021-05-19 10:20", "2021-05-19 14:49", 0),
    "BTCUSDT-PERP_1m_2022-06-13.csv.gz": (409, "2022-06-12 21:08", "2022-06-13 15:27", 1),
    "BTCUSDT-PERP_1m_2024-08-05.csv.gz": (492, "2024-08-04 23:29", "2024-08-05 07:40", 0),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_crash_files_are_what_their_provenance_says(name):
    import pandas as pd

    rows, first, last, gaps = SHIPPED[name]
    bars = pd.read_csv(DATA / name)
    assert len(bars) == rows
    t = pd.to_datetime(bars["open_time_ms"], unit="ms")
    assert t.iloc[0] == pd.Timestamp(first) and t.iloc[-1] == pd.Timestamp(last)
    steps = bars["open_time_ms"].diff().dropna()
    assert int((steps != 60_000).sum()) == gaps and (steps > 0).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert ((bars["taker_buy_volume"] >= 0) & (bars["taker_buy_volume"] <= bars["volume"])).all()
    assert (DATA / "PROVENANCE.md").read_text().count(name) >= 2  # listed, with its source
