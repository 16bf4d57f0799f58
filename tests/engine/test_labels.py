"""Breach labels: onsets, horizons, censoring, and rows that only know the past."""

from __future__ import annotations

import numpy as np

from engine.config import resolve
from engine.labels import breach_labels, next_onset
from engine.sim import Simulation


def test_next_onset_and_labels_by_hand():
    onset_tick = np.array([5, 9, 3, 20])
    onset_account = np.array([1, 1, 2, 2])
    row_tick = np.array([0, 5, 5, 9, 0, 3, 18])
    row_account = np.array([1, 1, 2, 1, 3, 2, 2])
    nxt = next_onset(row_tick, row_account, onset_tick, onset_account, 100)
    assert nxt.tolist() == [5, 9, 20, -1, -1, 20, 20]
    labels = breach_labels(row_tick, nxt, [2, 5], last_tick=22)
    assert labels[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert labels[:, 1].tolist() == [1, 1, 0, 0, 1 * 0, 0, 1]
    # A row whose horizon reaches past the end and saw no onset is censored, not negative.
    late = breach_labels(np.array([20]), np.array([-1]), [5], last_tick=22)
    assert late.tolist() == [[-1]]
    assert (
        next_onset(
            row_tick, row_account, np.empty(0, np.int64), np.empty(0, np.int64), 100
        ).tolist()
        == [-1] * 7
    )


def cascade(steps=240, **index):
    return resolve(
        {
            "seed": 11,
            "steps": steps,
            "tick_ms": 15_000,
            "markets": [
                {
                    "name": "BTC",
                    "initial_price": 100.0,
                    "sigma_annual": 1.5,
                    "position_sigma_base": 300.0,
                    "depth_usd": 3e5,
                }
            ],
            "accounts": {
                "count": 2000,
                "leverage_min": 3.0,
                "leverage_max": 30.0,
                "order_rate": 0.01,
                "cross_fraction": 0.5,
            },
            "keepers": {"capacity_per_block": 30, "latency_ticks": 2},
            "history": {"sample_every_ticks": 4, "horizons_minutes": [1, 5, 15]},
            "shocks": [{"market": "BTC", "tick": 120, "log_return": -0.1, "over_ticks": 12}],
            "index": index or {"model": "garch"},
        }
    )


def test_labels_agree_with_the_recorded_onsets():
    sim = Simulation(cascade())
    sim.run()
    frame = sim.labelled_accounts()
    onset_tick, onset_account = sim.onsets()
    assert onset_tick.size > 100
    assert len(frame) == 2000 * (240 // 4 + 1)
    by_account: dict[int, np.ndarray] = {}
    for a in np.unique(onset_account):
        by_account[int(a)] = np.sort(onset_tick[onset_account == a])
    rng = np.random.default_rng(0)
    for i in rng.choice(len(frame), 3000, replace=False):
        row = frame.iloc[i]
        t, a = int(row["tick"]), int(row["account"])
        ticks = by_account.get(a, np.empty(0, np.int64))
        future = ticks[ticks > t]
        for h, col in ((4, "label_1m"), (20, "label_5m"), (60, "label_15m")):
            hit = future.size > 0 and future[0] - t <= h
            expected = 1 if hit else (-1 if t + h > sim.t else 0)
            assert row[col] == expected, (t, a, col)
        assert row["ticks_to_breach"] == (future[0] - t if future.size else -1)
    # Both classes occur, positives are the minority, and the end of the run is censored.
    known = frame[frame["label_5m"] >= 0]
    assert 0 < (known["label_5m"] == 1).mean() < 0.5
    assert (frame[frame["tick"] > 240 - 20]["label_5m"] != 0).all()
    # Each onset is an account that was not in breach at its previous evaluation.
    assert frame["breached_now"].any()


def test_rows_at_t_do_not_depend_on_anything_after_t():
    cfg = cascade(steps=200)
    a = Simulation(cfg)
    path = a.index_path.copy()
    altered = path.copy()
    altered[101:] *= np.exp(np.linspace(0.0, -0.3, 100))[:, None]  # a different future
    b = Simulation(cfg, index_path=altered)
    c = Simulation(cfg, index_path=path)
    b.run()
    c.run()
    fb = b.labelled_accounts()
    fc = c.labelled_accounts()
    feature_cols = [
        col for col in fb.columns if not col.startswith("label_") and col != "ticks_to_breach"
    ]
    past_b = fb[fb["tick"] <= 100][feature_cols].reset_index(drop=True)
    past_c = fc[fc["tick"] <= 100][feature_cols].reset_index(drop=True)
    assert past_b.equals(past_c)
    assert (
        not fb[fb["tick"] > 120][feature_cols]
        .reset_index(drop=True)
        .equals(fc[fc["tick"] > 120][feature_cols].reset_index(drop=True))
    )
