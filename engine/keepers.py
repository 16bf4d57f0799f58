"""Which breached units keepers reach in a block.

A unit is a cross pool (an account and the market of its largest position) or an isolated
position (an account and its market). The step loop lists the units in breach and those that
stay in liquidation (Drift); keepers take the most under-margined first, up to the block's
capacity.
"""

from __future__ import annotations

import numpy as np


def keeper_order(acct: np.ndarray, mkt: np.ndarray, ratio: np.ndarray, capacity: int) -> np.ndarray:
    """Return the positions of the units keepers reach this block: most under-margined first
    (ties by account, then market), at most ``capacity``. Has shape (<= capacity,), int64.

    When breaches outnumber the capacity only the units at or above the capacity-th ratio are
    sorted; ties at that ratio are all kept, so the order is that of sorting every unit.
    """
    if capacity <= 0:
        return np.empty(0, np.int64)
    if acct.size > capacity:
        neg = -ratio
        kth = np.partition(neg, capacity - 1)[capacity - 1]
        cand = np.flatnonzero(neg <= kth)
        return cand[np.lexsort((mkt[cand], acct[cand], neg[cand]))][:capacity]
    return np.lexsort((mkt, acct, -ratio))


def among_units(
    acct: np.ndarray,
    mkt: np.ndarray,
    unit_acct: np.ndarray,
    unit_mkt: np.ndarray,
    shape: tuple[int, ...],
) -> np.ndarray:
    """Return which (account, market) pairs are among the units (``unit_acct``,
    ``unit_mkt``); a market of -1 is never among them. ``shape`` is the ledger's (n, m)."""
    if unit_acct.size == 0:
        return np.zeros(acct.size, bool)
    marked = np.zeros(shape, bool)
    marked[unit_acct, unit_mkt] = True
    return marked[acct, np.maximum(mkt, 0)] & (mkt >= 0)
