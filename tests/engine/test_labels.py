"""Breach labels: onsets, horizons, censoring, and rows that only know the past."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import resolve
from engine.events import EventKind
from engine.labels import breach_labels, episode_sums, next_onset
from engine.sim import LIQUIDATION_MAP_DISTANCES, Simulation


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


def test_episode_sums_by_hand():
    # account 1 loses 2 at tick 6 and 3 at tick 12; account 2 loses 5 at tick 4.
    ev_tick = np.array([6, 12, 4])
    ev_account = np.array([1, 1, 2])
    amount = np.array([2.0, 3.0, 5.0])
    row_tick = np.array([0, 0, 0, 0])
    row_account = np.array([1, 1, 2, 2])
    start = np.array([5, 5, 4, 9])
    stop = np.array([10, 13, 20, 9])  # the last row's episode is empty
    got = episode_sums(row_tick, row_account, start, stop, ev_tick, ev_account, amount, 100)
    assert got.tolist() == [2.0, 5.0, 5.0, 0.0]


def test_loss_labels_sum_the_episodes_that_begin_within_the_horizon():
    sim = Simulation(cascade())
    sim.run()
    events = sim.events.to_frame()
    frame = sim.labelled_accounts(events)
    bad = events[(events["kind"] == int(EventKind.BAD_DEBT)) & (events["account"] > 0)]
    assert len(bad) > 20
    onset_tick, onset_account = sim.onsets()
    h = 20  # 5 minutes of 15-second blocks
    # No breach within H, no loss; an unknown label, an unknown loss.
    y = frame["label_5m"].to_numpy()
    loss = frame["loss_5m"].to_numpy()
    assert (loss[y == 0] == 0).all() and np.isnan(loss[y == -1]).all()
    impact = frame["impact_5m"].to_numpy()
    assert (impact[y == 0] == 0).all() and (impact[y == 1] > 0).sum() > 50
    # Against a slow recount for the rows of accounts that left bad debt.
    rows = frame[frame["account"].isin(bad["account"]) & (y >= 0)].head(400)
    for _, r in rows.iterrows():
        a, t = int(r["account"]), int(r["tick"])
        mine = np.sort(onset_tick[onset_account == a])
        first = mine[mine > t]
        if first.size == 0 or first[0] > t + h:
            assert r["loss_5m"] == 0
            continue
        later = mine[mine > t + h]
        stop = later[0] if later.size else sim.steps + 1
        hits = bad[(bad["account"] == a) & (bad["tick"] >= first[0]) & (bad["tick"] < stop)]
        assert r["loss_5m"] == pytest.approx(-hits["amount"].sum() / 1e6, rel=1e-12, abs=1e-9)


def test_liquidation_map_counts_the_notional_near_its_liquidation_price():
    cfg = cascade()
    sim = Simulation(cfg)
    sim.run()
    markets = sim.market_frame()
    frame = sim.labelled_accounts()
    for tick in (0, 100, 124, 200):  # multiples of both the map's and the sampling's period
        rows = frame[frame["tick"] == tick]
        at = markets[markets["tick"] == tick].iloc[0]
        dist = rows["distance_to_liquidation"].to_numpy()
        held = rows["notional_BTC"].to_numpy()
        previous = 0.0
        for d in LIQUIDATION_MAP_DISTANCES:
            name = f"{d * 100:g}pct"
            near = dist <= d
            assert at[f"crowded_long_{name}"] == pytest.approx(held[near & (held > 0)].sum())
            assert at[f"crowded_short_{name}"] == pytest.approx(-held[near & (held < 0)].sum())
            assert at[f"crowded_long_{name}"] >= previous
            previous = at[f"crowded_long_{name}"]
        assert previous <= at["oi_notional"] + 1e-6
