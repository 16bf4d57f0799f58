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

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.atomic import atomic_dir
from engine.config import SimConfig
from engine.errors import PredliqError

if TYPE_CHECKING:
    from engine.sim import Simulation

SCHEMA_VERSION = 1


class OutputExistsError(PredliqError, FileExistsError):
    """The partition exists and holds a different run."""


class OutputPathError(PredliqError, ValueError):
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
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return None
    return manifest if isinstance(manifest, dict) else None


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def partition_problem(path: Path, manifest: dict[str, Any]) -> str | None:
    """Return why the files of the partition at ``path`` do not match its manifest (a missing,
    resized or changed file, or a manifest without checksums), or None when they all do."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return f"{path / 'manifest.json'} records no file checksums (an older or foreign partition)"
    for name, expected in files.items():
        file = path / str(name)
        if Path(str(name)).name != name or not isinstance(expected, dict):
            return f"{path / 'manifest.json'}: malformed files entry {name!r}"
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != expected.get("bytes"):
            return (
                f"{file} has {file.stat().st_size:,} bytes, the manifest recorded "
                f"{expected.get('bytes')!r} (a truncated or replaced file)"
            )
        if file_sha256(file) != expected.get("sha256"):
            return f"{file} differs from the SHA-256 its manifest recorded (a changed file)"
    return None


def check_partition(root: str | Path, cfg: SimConfig, overwrite: bool) -> bool:
    """Return True when the partition is already complete for this exact config and its files
    verify against the manifest (a partition whose files do not is simulated again).

    Raises :class:`OutputExistsError` when it exists for another config and ``overwrite`` is off.
    """
    check_writable_root(root)
    path = partition_dir(root, cfg)
    if not path.exists():
        return False
    manifest = existing_manifest(path)
    if manifest is not None and manifest.get("config_hash") == cfg.hash() and not overwrite:
        return partition_problem(path, manifest) is None
    if not overwrite:
        raise OutputExistsError(
            f"{path} already holds a different run (config hash "
            f"{(manifest or {}).get('config_hash', 'unknown')[:12]}); "
            "pass --overwrite to replace it"
        )
    return False


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def write_run(sim: Simulation, root: str | Path) -> Path:
    """Write a finished simulation's partition atomically and return its folder."""
    cfg: SimConfig = sim.cfg
    final = partition_dir(root, cfg)
    # A run of this seed killed mid-write (even by SIGKILL) left its staging folder behind:
    # atomic_dir removes it, and puts back a partition a crash left renamed aside.
    with atomic_dir(final) as tmp:
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
        files = {
            f.name: {"sha256": file_sha256(f), "bytes": f.stat().st_size}
            for f in sorted(tmp.iterdir())
        }
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
            # Every file's checksum and size: a reader (train, a resume) verifies them, so a
            # truncated, edited or swapped file is found, not learned from.
            "files": files,
        }
        # The manifest is written last: its presence marks the partition complete.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return final
