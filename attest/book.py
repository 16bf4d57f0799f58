"""The book to attest: every account's amounts at one block, read from the engine's outputs.

A simulated partition records every trader's equity, maintenance and initial requirement and
signed notional per market every ``history.sample_every_ticks`` blocks (``accounts.parquet``,
quote units); ``predliq attest`` reads one of those blocks. A venue's own export with the same
columns (Parquet or CSV, one row per account) is read the same way. Amounts become integer
quote quantums (1e-6 of the quote currency, the ledger's unit); equity is split into collateral
(its positive part) and deficit (its negative part, the bad debt the account would leave), so
that no negative balance can hide inside a sum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from attest.toolchain import AMOUNT_BITS, ID_BITS, MAX_MARKETS
from engine.errors import PredliqError

QUANTUMS_PER_UNIT = 1_000_000
REQUIRED = ("account", "equity", "maintenance_margin", "initial_margin")
NOTIONAL_PREFIX = "notional_"


class BookError(PredliqError, ValueError):
    """An accounts table that cannot be attested (message names the file and the value)."""


@dataclass(frozen=True)
class Book:
    """Accounts sorted by id; amounts in quote quantums, all in [0, 2^AMOUNT_BITS)."""

    ids: np.ndarray
    """Has shape (n,), int64, strictly increasing."""
    collateral: np.ndarray
    """Has shape (n,): max(equity, 0)."""
    deficit: np.ndarray
    """Has shape (n,): max(-equity, 0)."""
    maintenance: np.ndarray
    initial: np.ndarray
    notional: np.ndarray
    """Has shape (n, markets): absolute notional per market."""
    markets: tuple[str, ...]
    source: dict[str, object] = field(default_factory=dict)
    """Where the book came from: file, block, scenario, seed, config hash."""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def values(self, row: int) -> dict[str, object]:
        """Return one account's committed values (what its opening holds)."""
        return {
            "account": int(self.ids[row]),
            "collateral": int(self.collateral[row]),
            "deficit": int(self.deficit[row]),
            "maintenance": int(self.maintenance[row]),
            "initial": int(self.initial[row]),
            "notional": [int(x) for x in self.notional[row]],
        }


def from_partition(folder: Path, at: int | str | None = None) -> Book:
    """Return the book of a simulated partition at block ``at``: a block number, ``"worst"``
    (the sampled block where the accounts below maintenance lack the most margin; ties go to
    the earliest) or None (the last sampled block)."""
    accounts = folder / "accounts.parquet"
    manifest = folder / "manifest.json"
    if not accounts.is_file() or not manifest.is_file():
        raise BookError(
            f"{str(folder)!r} is not a simulated partition (no accounts.parquet and "
            "manifest.json; pass scenario=NAME/seed=SEED of a simulate output)"
        )
    try:
        meta = json.loads(manifest.read_text())
        table = pd.read_parquet(accounts)
    except (OSError, ValueError) as exc:
        raise BookError(f"{str(folder)!r}: unreadable ({str(exc).splitlines()[0]})") from None
    source = {
        "partition": str(folder),
        "scenario": meta.get("scenario"),
        "seed": meta.get("seed"),
        "config_hash": meta.get("config_hash"),
        "venue": (meta.get("config") or {}).get("venue"),
    }
    return from_samples(table, str(accounts), source, at)


def from_samples(
    table: pd.DataFrame, name: str, source: dict[str, object], at: int | str | None = None
) -> Book:
    """Return the book at block ``at`` of sampled account rows (``accounts.parquet``'s columns,
    named ``name`` in errors): a block number, ``"worst"`` or None (the last sampled block), as
    in :func:`from_partition`; ``source`` gains the block."""
    if "tick" not in table.columns:
        raise BookError(f"{name!r} has no tick column")
    blocks = np.unique(table["tick"].to_numpy())
    if blocks.size == 0:
        raise BookError(f"{name!r} has no sampled accounts (history.sample_every_ticks = 0)")
    if at == "worst":
        block = _worst_block(table, blocks)
    else:
        block = int(blocks[-1]) if at is None else int(at)
    if block not in blocks:
        near = blocks[np.argsort(np.abs(blocks - block))[:2]]
        where = source.get("partition", name)
        raise BookError(
            f"block {block} of {str(where)!r} was not sampled; accounts are recorded every "
            f"history.sample_every_ticks blocks (nearest: {', '.join(map(str, sorted(near)))})"
        )
    rows = table[table["tick"] == block]
    return _book(rows, name, {**source, "block": block})


def _worst_block(table: pd.DataFrame, blocks: np.ndarray) -> int:
    """Return the sampled block with the largest total gap to maintenance of the accounts
    below it (the first sampled block when no account is ever below)."""
    gap = (table["maintenance_margin"] - table["equity"]).clip(lower=0)
    per_block = gap.groupby(table["tick"]).sum()
    if not (per_block > 0).any():
        return int(blocks[0])
    return int(per_block.idxmax())


def from_file(path: Path) -> Book:
    """Return the book in a venue's accounts file (Parquet or CSV, one row per account)."""
    if not path.is_file():
        raise BookError(f"accounts file {str(path)!r} does not exist")
    try:
        if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
            table = pd.read_csv(path)
        else:
            table = pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BookError(f"accounts file {str(path)!r} is unreadable ({_first(exc)})") from None
    return _book(table, str(path), {"file": str(path)})


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _book(table: pd.DataFrame, name: str, source: dict[str, object]) -> Book:
    missing = [c for c in REQUIRED if c not in table.columns]
    markets = tuple(
        c[len(NOTIONAL_PREFIX) :] for c in table.columns if c.startswith(NOTIONAL_PREFIX)
    )
    if missing:
        raise BookError(f"{name!r} lacks the column(s) {', '.join(missing)}")
    if not markets:
        raise BookError(f"{name!r} has no notional_<market> column")
    if len(markets) > MAX_MARKETS:
        raise BookError(
            f"{name!r} has {len(markets)} markets; an attestation holds at most {MAX_MARKETS}"
        )
    if table.empty:
        raise BookError(f"{name!r} holds no account")
    cols = [*REQUIRED, *(NOTIONAL_PREFIX + m for m in markets)]
    for col in cols:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise BookError(
                f"{name!r}: {col} of row {int(bad[0])} is {table[col].iloc[bad[0]]}, "
                "not a finite number"
            )
    ids_raw = table["account"].to_numpy(np.float64)
    if np.any(ids_raw != np.floor(ids_raw)) or np.any(ids_raw < 0) or np.any(ids_raw >= 2**ID_BITS):
        row = int(
            np.flatnonzero(
                (ids_raw != np.floor(ids_raw)) | (ids_raw < 0) | (ids_raw >= 2**ID_BITS)
            )[0]
        )
        raise BookError(
            f"{name!r}: account id {ids_raw[row]!r} (row {row}) is not an integer in "
            f"[0, 2^{ID_BITS})"
        )
    order = np.argsort(ids_raw, kind="stable")
    ids = ids_raw[order].astype(np.int64)
    dup = np.flatnonzero(np.diff(ids) == 0)
    if dup.size:
        raise BookError(f"{name!r}: account {int(ids[dup[0]])} appears more than once")
    equity = _quantums(table["equity"], order)
    maintenance = _quantums(table["maintenance_margin"], order)
    initial = _quantums(table["initial_margin"], order)
    notional = np.stack(
        [np.abs(_quantums(table[NOTIONAL_PREFIX + m], order)) for m in markets], axis=1
    )
    for col, values in (("maintenance_margin", maintenance), ("initial_margin", initial)):
        if np.any(values < 0):
            row = int(order[np.flatnonzero(values < 0)[0]])
            raise BookError(f"{name!r}: {col} of row {row} is negative, was {table[col].iloc[row]}")
    collateral = np.maximum(equity, 0)
    deficit = np.maximum(-equity, 0)
    limit = 2**AMOUNT_BITS
    for col, values in (
        ("equity", np.maximum(collateral, deficit)),
        ("maintenance_margin", maintenance),
        ("initial_margin", initial),
        ("notional", notional.max(axis=1)),
    ):
        over = np.flatnonzero(values >= limit)
        if over.size:
            raise BookError(
                f"{name!r}: {col} of account {int(ids[over[0]])} is out of the attested range "
                f"(|amount| < 2^{AMOUNT_BITS} quote quantums = {limit / QUANTUMS_PER_UNIT:,.0f})"
            )
    return Book(ids, collateral, deficit, maintenance, initial, notional, markets, source)


def _quantums(column: pd.Series, order: np.ndarray) -> np.ndarray:
    """Quote units -> int64 quote quantums, to the nearest (the engine's amounts are quantums
    written as units, so this recovers them). Values past 2^62 are clipped and then refused by
    the range check."""
    units = pd.to_numeric(column).to_numpy(np.float64)[order]
    return np.rint(np.clip(units * QUANTUMS_PER_UNIT, -(2.0**62), 2.0**62)).astype(np.int64)
