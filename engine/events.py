"""Event codes and a columnar event log: every transfer the engine makes is one row."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pandas as pd


class EventKind(IntEnum):
    """What a row of the event log records. ``amount`` is the quote quantums the account receives
    (negative = pays) from ``counterparty``; ``size`` the base quantums it receives."""

    TRADE = 0
    ORDER_REJECTED = 1
    LIQUIDATION = 2
    KEEPER_FEE = 3
    INSURANCE_FEE = 4
    INSURANCE_PAYOUT = 5
    BAD_DEBT = 6
    ADL = 7
    SOCIALIZED_LOSS = 8
    FUNDING = 9
    LIQUIDATION_UNFILLED = 10
    FEE = 11
    DEPOSIT = 12
    DERISK = 13
    """A pre-emptive reduction by the predictive policy (a market order, no penalty)."""
    BACKSTOP = 14
    """The liquidator vault takes over an account: its positions at the mark, then the margin
    it has left (or its deficit); ``counterparty`` is the vault's row."""
    VAULT_UNWIND = 15
    """The liquidator vault sells part of what it took over, as a market order on the book."""
    FEE_POOL_PAYOUT = 16
    """The market's fee pool pays part of a bankrupt account's loss for good (Drift)."""


# Ledger accounts that are not rows of the account table, as ``counterparty`` codes.
INSURANCE_FUND = -1
FEE_POOL = -2
NOBODY = -3
KEEPER_BASE = -10
"""Keeper ``k`` is ``KEEPER_BASE - k``."""

COLUMNS = ("tick", "kind", "account", "market", "counterparty", "size", "amount", "price")
_DTYPES = {
    "tick": np.int64,
    "kind": np.int8,
    "account": np.int64,
    "market": np.int16,
    "counterparty": np.int64,
    "size": np.int64,
    "amount": np.int64,
    "price": np.float64,
}
_RECORD = np.dtype([(c, _DTYPES[c]) for c in COLUMNS])
"""One event as a record: a batch is one allocation, filled column by column."""


class EventLog:
    """Append-only columns of events, stored as chunks and joined once at the end."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []  # record arrays (_RECORD), in order
        self._pending: list[tuple] = []  # single events, flushed in order before the next batch
        self.count = 0

    def add_one(
        self,
        tick: int,
        kind: EventKind,
        account: int,
        market: int,
        counterparty: int,
        size: int = 0,
        amount: int = 0,
        price: float = np.nan,
    ) -> None:
        """Append a single event (the fast path for per-liquidation rows)."""
        self._pending.append((tick, int(kind), account, market, counterparty, size, amount, price))
        self.count += 1

    def _flush(self) -> None:
        if not self._pending:
            return
        self._chunks.append(np.array(self._pending, dtype=_RECORD))
        self._pending = []

    def add(
        self,
        tick: int,
        kind: EventKind,
        account: np.ndarray | int,
        market: np.ndarray | int,
        counterparty: np.ndarray | int,
        size: np.ndarray | int = 0,
        amount: np.ndarray | int = 0,
        price: np.ndarray | float = np.nan,
    ) -> None:
        """Append one event or a batch (array arguments broadcast against each other; each is
        copied, so callers may reuse their arrays)."""
        args = (tick, int(kind), account, market, counterparty, size, amount, price)
        n = max((np.size(a) for a in args if isinstance(a, np.ndarray)), default=1)
        if n == 0:
            return
        self._flush()
        rec = np.empty(n, _RECORD)
        for c, a in zip(COLUMNS, args, strict=True):
            rec[c] = a.ravel() if isinstance(a, np.ndarray) and a.ndim > 1 else a
        self._chunks.append(rec)
        self.count += n

    def to_frame(self) -> pd.DataFrame:
        """Return all events as a DataFrame in the order they happened."""
        self._flush()
        rows = np.concatenate(self._chunks) if self._chunks else np.empty(0, _RECORD)
        return pd.DataFrame({c: np.ascontiguousarray(rows[c]) for c in COLUMNS})
