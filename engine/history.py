"""Writing runs: Parquet tables plus a manifest, one partition per (scenario, seed), atomically.

Layout under an output root::

    scenario=<name>/seed=<seed>/markets.parquet   per-tick market state, one row per (tick, market)
                               /events.parquet    every transfer, trade, liquidation, ADL, ...
                               /accounts.parquet  sampled account rows with breach labels
                               /breaches.parquet  every breach onset (tick, account)
                               /final_accounts.parquet  final balances and positions
                               /summary.json      headline totals
                               /manifest.json     resolved config, its hash, seed, row counts

A partition is written into a temporary folder beside it and renamed into place, so an interrupted
run leaves no half-written partition. A partition whose manifest already records the same config
hash is complete and is skipped (a rerun resumes where it stopped); one with another hash is an
error unless ``overwrite`` is set.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import SimConfig

SCHEMA_VERSION = 1


class OutputExistsError(FileExistsError):
    """The partition exists and holds a different run."""


class OutputPathError(ValueError):
    """The output root cannot be created or written."""


def check_writable_root(root: str | Path) -> None:
    """Raise :class:`OutputPathError` unless ``root`` exists as a writable folder or could be
    created as one (checked before a run, so a bad path fails before any work is done)."""
    path = Path(root).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"output folder {str(root)!r} cannot be created: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {str(root)!r} is not writable ({probe})")


def _version() -> str:
    try:
        return importlib.metadata.version("predliq")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def partition_dir(root: str | Path, cfg: SimConfig) -> Path:
    """Return the folder of a run's partition under ``root``."""
    return Path(root) / f"scenario={cfg.name}" / f"seed={cfg.seed}"


def existing_manifest(path: Path) -> dict[str, Any] | None:
    """Return the manifest of a complete partition, or None when there is none."""
    try:
        return json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_partition(root: str | Path, cfg: SimConfig, overwrite: bool) -> bool:
    """Return True when the partition is already complete for this exact config.

    Raises :class:`OutputExistsError` when it exists for another config and ``overwrite`` is off.
    """
    check_writable_root(root)
    path = partition_dir(root, cfg)
    if not path.exists():
        return False
    manifest = existing_manifest(path)
    if manifest is not None and manifest.get("config_hash") == cfg.hash() and not overwrite:
        return True
    if not overwrite:
        raise OutputExistsError(
            f"{path} already holds a different run (config hash "
            f"{(manifest or {}).get('config_hash', 'unknown')[:12]}); "
            "pass --overwrite to replace it"
        )
    return False


def _write_table(frame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def write_run(sim, root: str | Path) -> Path:
    """Write a finished simulation's partition atomically and return its folder."""
    cfg: SimConfig = sim.cfg
    final = partition_dir(root, cfg)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A run of this seed killed mid-write (even by SIGKILL) left its temporary folder behind.
    for stale in final.parent.glob(f".tmp-seed={cfg.seed}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-seed={cfg.seed}-", dir=final.parent))
    try:
        markets = sim.market_frame()
        events = sim.events.to_frame()
        accounts = (
            sim.labelled_accounts(events) if cfg.history.sample_every_ticks else pd.DataFrame()
        )
        onset_tick, onset_account = sim.onsets()
        breaches = pd.DataFrame({"tick": onset_tick, "account": onset_account})
        final_accounts = sim.account_frame()
        policy = sim.policy_frame()
        _write_table(markets, tmp / "markets.parquet")
        _write_table(policy, tmp / "policy.parquet")
        _write_table(events, tmp / "events.parquet")
        _write_table(accounts, tmp / "accounts.parquet")
        _write_table(breaches, tmp / "breaches.parquet")
        _write_table(final_accounts, tmp / "final_accounts.parquet")
        summary = sim.summary()
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "scenario": cfg.name,
            "seed": cfg.seed,
            "config_hash": cfg.hash(),
            "config": cfg.to_dict(),
            "rows": {
                "markets": len(markets),
                "events": len(events),
                "accounts": len(accounts),
                "breaches": len(breaches),
                "final_accounts": len(final_accounts),
                "policy": len(policy),
            },
            "steps": int(sim.t),
            "predliq_version": _version(),
            "label_horizons_minutes": list(cfg.history.horizons_minutes),
            "positive_labels": {
                c: int((accounts[c] == 1).sum()) for c in accounts.columns if c.startswith("label_")
            },
            "replay_segments": [list(x) for x in sim.index.segments],
        }
        # The manifest is written last: its presence marks the partition complete.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
