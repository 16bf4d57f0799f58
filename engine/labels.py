"""Breach labels for sampled account rows: does the account breach within (t, t + H]?

A *breach onset* is a block at which an account enters breach (equity < maintenance margin)
after not being in breach at its previous evaluation; the step loop records every onset. For a
row sampled at block t, the label for horizon H is 1 when the account's next onset after t falls
in (t, t + H], and ``ticks_to_breach`` is the number of blocks to that onset (-1 when none
follows within the run). Rows from the last H of a run are right-censored for that horizon: their
label is -1 (unknown), not 0.
"""

from __future__ import annotations

import numpy as np


def next_onset(
    row_tick: np.ndarray,
    row_account: np.ndarray,
    onset_tick: np.ndarray,
    onset_account: np.ndarray,
    n_ticks: int,
) -> np.ndarray:
    """Return, per row, the tick of the account's first onset after the row's tick (-1: none).

    All arrays int64; ``n_ticks`` bounds every tick (keys are account x n_ticks + tick).
    """
    keys = onset_account * n_ticks + onset_tick
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ticks = onset_tick[order]
    accounts = onset_account[order]
    idx = np.searchsorted(keys, row_account * n_ticks + row_tick, side="right")
    found = idx < keys.size
    idx = np.minimum(idx, max(keys.size - 1, 0))
    if keys.size == 0:
        return np.full(row_tick.shape, -1, np.int64)
    same = found & (accounts[idx] == row_account)
    return np.where(same, ticks[idx], -1)


def breach_labels(
    row_tick: np.ndarray,
    next_tick: np.ndarray,
    horizon_ticks: list[int],
    last_tick: int,
) -> np.ndarray:
    """Return int8 labels (rows, horizons): 1 breach in (t, t+H], 0 none, -1 censored."""
    out = np.empty((row_tick.size, len(horizon_ticks)), np.int8)
    ahead = np.where(next_tick >= 0, next_tick - row_tick, np.iinfo(np.int64).max)
    for j, h in enumerate(horizon_ticks):
        hit = ahead <= h
        censored = ~hit & (row_tick + h > last_tick)
        out[:, j] = np.where(hit, 1, np.where(censored, -1, 0))
    return out


def episode_sums(
    row_tick: np.ndarray,
    row_account: np.ndarray,
    start: np.ndarray,
    stop: np.ndarray,
    event_tick: np.ndarray,
    event_account: np.ndarray,
    event_amount: np.ndarray,
    n_ticks: int,
) -> np.ndarray:
    """Return, per row, the sum of the account's event amounts with start <= tick < stop.

    Used for loss labels: ``start`` is the first breach onset after the row's tick and ``stop``
    the first onset after t + H, so the sum covers the breach episodes that begin within the
    horizon however long their liquidation takes. Rows with start >= stop get 0. Ticks are
    int64 below ``n_ticks``; amounts float64.
    """
    out = np.zeros(row_tick.shape, np.float64)
    if event_tick.size == 0:
        return out
    keys = event_account * n_ticks + event_tick
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    total = np.concatenate([[0.0], np.cumsum(event_amount[order])])
    lo = np.searchsorted(keys, row_account * n_ticks + start, side="left")
    hi = np.searchsorted(keys, row_account * n_ticks + stop, side="left")
    live = stop > start
    out[live] = total[hi[live]] - total[lo[live]]
    return out
