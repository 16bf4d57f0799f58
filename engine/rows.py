"""Reductions across the few market columns of per-account tables, as column operations.

A reduction along the short last axis of an (accounts, markets) table (``a.sum(axis=1)``) runs
numpy's inner loop once per row and costs about eight times as much as adding the columns
one after another. For fewer than eight columns numpy adds a row's terms left to right, so the
column sums below are the same numbers bit for bit (a test pins this); from eight columns on
numpy sums in another order, and the functions fall back to it.
"""

from __future__ import annotations

import numpy as np

_SEQUENTIAL_BELOW = 8
"""numpy adds fewer than this many terms of a row left to right."""


def row_sum(a: np.ndarray) -> np.ndarray:
    """Return ``a.sum(axis=1)`` of a numeric (r, m) table, the same numbers. Has shape (r,)."""
    m = a.shape[1]
    if m == 0 or m >= _SEQUENTIAL_BELOW or a.dtype == np.bool_:
        return a.sum(axis=1)
    # numpy starts from its identity 0: 0 + (-0.0) is +0.0, every other first term unchanged.
    out = a[:, 0] + a.dtype.type(0)
    for k in range(1, m):
        out += a[:, k]
    return out


def row_any(a: np.ndarray) -> np.ndarray:
    """Return ``a.any(axis=1)`` of a boolean (r, m) table. Has shape (r,)."""
    m = a.shape[1]
    if m == 0:
        return np.zeros(a.shape[0], bool)
    out = a[:, 0].copy()
    for k in range(1, m):
        out |= a[:, k]
    return out


def row_min(a: np.ndarray) -> np.ndarray:
    """Return ``a.min(axis=1)`` of a float (r, m) table without NaN. Has shape (r,)."""
    m = a.shape[1]
    if m == 0 or m >= _SEQUENTIAL_BELOW:
        return a.min(axis=1)
    out = a[:, 0].copy()
    for k in range(1, m):
        np.minimum(out, a[:, k], out=out)
    return out


def row_argmax(a: np.ndarray) -> np.ndarray:
    """Return ``a.argmax(axis=1)`` of a float (r, m) table without NaN (the first column of a
    row's maximum). Has shape (r,), int64.

    Unlike the sums, numpy's own argmax along the short axis is already fast (several times
    faster than comparing column by column), so it is used as is.
    """
    return a.argmax(axis=1).astype(np.int64, copy=False)
