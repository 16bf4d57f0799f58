"""Reading labelled histories written by ``predliq simulate`` and checking them before use.

A history root holds one partition per (scenario, seed) — ``scenario=NAME/seed=N/`` with a
``manifest.json`` (see ``engine/history.py``). Training refuses data it cannot trust: a
partition without a manifest, a manifest whose config does not hash to its recorded hash, tables
whose row counts differ from the manifest, missing columns, a horizon not in the labels. Each is a
:class:`DataError` with a one-line message naming the partition and the problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from engine.errors import PredliqError
from engine.history import partition_problem

MARKET_COLUMNS = (
    "tick",
    "market",
    "index_price",
    "oracle_price",
    "oracle_age",
    "mark_price",
    "open_interest",
    "oi_notional",
    "insurance_fund",
    "funding_rate",
    "orders_accepted",
    "congestion",
    "half_spread",
    "bid_depth",
    "ask_depth",
    "taker_buy_usd",
    "taker_sell_usd",
    "liquidations",
    "liquidated_notional",
    "breached",
    "keeper_capacity",
    *(f"crowded_{side}_{d}pct" for side in ("long", "short") for d in ("1", "2.5", "5", "10")),
)
"""Columns of markets.parquet that features read."""

ACCOUNT_COLUMNS = (
    "tick",
    "account",
    "equity",
    "maintenance_margin",
    "margin_ratio",
    "leverage",
    "notional",
    "unrealized_pnl",
    "cross",
    "breached_now",
    "distance_to_liquidation",
    "ticks_since_order",
    "ticks_since_topup",
    "ticks_to_breach",
)
"""Columns of accounts.parquet that features read (plus notional_<market> and label_<H>m)."""


NEVER_MISSING = frozenset(
    {
        "tick",
        "account",
        "market",
        "equity",
        "maintenance_margin",
        "notional",
        "index_price",
        "oracle_price",
        "mark_price",
        "open_interest",
        "insurance_fund",
    }
)
"""Columns the engine always fills: a NaN there is damage, not a missing feature (margin ratio,
distance to liquidation and the time-since columns may legitimately be missing)."""


class DataError(PredliqError, ValueError):
    """The history data cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One simulated path: a (scenario, seed) partition and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def scenario(self) -> str:
        return str(self.manifest["scenario"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def tick_ms(self) -> int:
        return int(self.config["tick_ms"])

    @property
    def markets(self) -> list[str]:
        return [m["name"] for m in self.config["markets"]]

    @property
    def keeper_capacity(self) -> int:
        return int(self.config["keepers"]["capacity_per_block"])

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Return a table of this partition, checking its columns and row count."""
        file = self.path / f"{table}.parquet"
        try:
            schema = pq.read_schema(file)
        except (OSError, ValueError) as exc:
            raise DataError(f"{file}: not a readable Parquet file ({exc})") from None
        if columns is not None:
            missing = [c for c in columns if c not in schema.names]
            if missing:
                raise DataError(f"{file}: missing column(s) {', '.join(missing)}")
        try:
            frame = pq.read_table(file, columns=columns).to_pandas()
        except (OSError, ValueError) as exc:  # pyarrow's errors are both kinds
            raise DataError(f"{file}: not a readable Parquet file ({exc})") from None
        for column in NEVER_MISSING.intersection(frame.columns):
            missing = frame[column].isna().to_numpy()
            if missing.any():
                raise DataError(
                    f"{file}: column {column!r} has {int(missing.sum()):,} missing values "
                    f"(first at row {int(missing.argmax()):,}); the engine never leaves it empty"
                )
        expected = self.manifest["rows"].get(table)
        if expected is not None and len(frame) != expected:
            raise DataError(
                f"{file}: {len(frame):,} rows, the manifest records {expected:,} "
                "(the partition was changed after it was written)"
            )
        return frame


def config_hash(config: dict[str, Any]) -> str:
    """Return the hash ``SimConfig.hash`` gives the config whose ``to_dict()`` is ``config``."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_horizon(text: str) -> float:
    """Return a horizon in minutes from '5m', '5', '90s' or '1h'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*", str(text))
    if not m:
        raise DataError(f"horizon must look like 5m, 90s or 1h, was {text!r}")
    value = float(m.group(1))
    unit = m.group(2) or "m"
    minutes = {"s": value / 60.0, "m": value, "min": value, "h": value * 60.0}[unit]
    if minutes <= 0:
        raise DataError(f"horizon must be positive, was {text!r}")
    return minutes


def label_column(minutes: float) -> str:
    """Return the label column of a horizon, as history.py names it."""
    return f"label_{minutes:g}m"


def discover(root: str | Path) -> list[Partition]:
    """Return every partition under ``root``, sorted by (scenario, seed), each checked.

    Raises :class:`DataError` when the root holds no partition, a partition has no manifest (it
    was interrupted or is not a predliq history), or a manifest's config does not hash to its
    recorded ``config_hash``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist")
    folders = sorted(p for p in root.glob("scenario=*/seed=*") if p.is_dir())
    if not folders:
        raise DataError(
            f"{root} holds no partitions (expected scenario=NAME/seed=N/ folders written by "
            "predliq simulate)"
        )
    parts = []
    for folder in folders:
        file = folder / "manifest.json"
        if not file.is_file():
            raise DataError(f"{folder}: no manifest.json (an interrupted or foreign partition)")
        try:
            manifest = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"{file}: cannot be read ({exc.strerror})") from None
        except ValueError as exc:  # not UTF-8, or not JSON
            reason = str(exc).splitlines()[0]
            raise DataError(f"{file}: not readable JSON ({reason})") from None
        check_manifest(manifest, file, folder)
        problem = partition_problem(folder, manifest)
        if problem is not None:
            raise DataError(f"{problem}: simulate the partition again")
        if config_hash(manifest["config"]) != manifest["config_hash"]:
            raise DataError(
                f"{file}: config hash {manifest['config_hash'][:12]} does not match its config "
                f"(which hashes to {config_hash(manifest['config'])[:12]})"
            )
        parts.append(Partition(folder, manifest))
    parts.sort(key=lambda p: (p.scenario, p.seed))
    return parts


def check_manifest(manifest: Any, file: Path, folder: Path) -> None:
    """Refuse a manifest that is not what predliq simulate writes: entries of the wrong type,
    or a scenario and seed that disagree with its folder's name or with its own config (an
    edited seed would move a held-out path into training)."""
    if not isinstance(manifest, dict):
        raise DataError(f"{file}: must be a JSON object, was {type(manifest).__name__}")
    types = {"scenario": str, "seed": int, "config": dict, "config_hash": str, "rows": dict}
    for key, kind in types.items():
        if key not in manifest:
            raise DataError(f"{file}: no {key!r} entry")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{file}: {key!r} must be a {kind.__name__}, was {value!r}")
    rows = manifest["rows"]
    for table, n in rows.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DataError(f"{file}: rows[{table!r}] must be a whole number >= 0, was {n!r}")
    expected = (f"scenario={manifest['scenario']}", f"seed={manifest['seed']}")
    if (folder.parent.name, folder.name) != expected:
        raise DataError(
            f"{file}: scenario {manifest['scenario']!r} seed {manifest['seed']} disagree with "
            f"its folder {folder.parent.name}/{folder.name}"
        )
    config = manifest["config"]
    if config.get("name") != manifest["scenario"] or config.get("seed") != manifest["seed"]:
        raise DataError(
            f"{file}: scenario {manifest['scenario']!r} seed {manifest['seed']} disagree with "
            f"its config (name {config.get('name')!r}, seed {config.get('seed')!r})"
        )


def data_hash(parts: list[Partition]) -> str:
    """Return one hash of a data set: its partitions' (scenario, seed, config hash, rows)."""
    blob = json.dumps(
        [[p.scenario, p.seed, p.manifest["config_hash"], p.manifest["rows"]] for p in parts],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def check_horizon(parts: list[Partition], minutes: float) -> str:
    """Return the label column of ``minutes``; raise :class:`DataError` when a partition lacks
    it."""
    column = label_column(minutes)
    for p in parts:
        horizons = p.manifest.get("label_horizons_minutes", [])
        if not any(abs(float(h) - minutes) < 1e-9 for h in horizons):
            available = ", ".join(f"{float(h):g}m" for h in horizons) or "none"
            raise DataError(
                f"horizon {minutes:g}m is not in the labels of {p.path} (available: {available})"
            )
    return column
