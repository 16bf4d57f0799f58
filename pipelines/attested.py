"""The evaluation's attested health: each policy's book at its worst block, proved and verified.

A committee reads, per policy, how many accounts sat below maintenance margin and how much
collateral fell short at the worst moment of a crash. ``predliq evaluate --attest`` makes those
figures checkable by anyone: it re-runs one evaluation path (the one where the reactive venue
left the most bad debt) under each attested policy at its tuned knob, reading every trader's
margin state after every block; keeps each policy's worst block (where the accounts below
maintenance lack the most margin); attests that book with zero-knowledge proofs
(:mod:`attest`); verifies the attestation; and reports the verified totals — not the
simulator's own — beside the public folder a reader passes to ``predliq verify``.

The re-run is the same path with the same keyed draws, so its outcomes equal the evaluation's
(reading the book draws nothing and changes nothing). The static policy is attested at knob 1, the
reactive venue itself, as on the replays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.methodology import DEFAULT_KNOBS, EvaluationError, PathRun

DEFAULT_POLICIES = ("static", "predictive")
"""Attested unless --attest names others: the reactive venue and the anticipatory policy."""
PUBLIC = "attestations"
PRIVATE = "attestations-private"
"""Sub-folders of the evaluation's output: the public attestations (one per policy) and the
salts and per-account openings only the venue keeps."""


class WorstBlock:
    """Watch a run block by block and keep every trader's margin state (the sampled-account
    columns of ``accounts.parquet``) at its worst block: where the accounts below maintenance
    lack the most margin in all, the first such block; the first block when none ever is."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.traders = np.flatnonzero(~sim.ledger.is_maker)
        self.gap = -1.0
        self.rows: dict[str, np.ndarray] | None = None

    def watch(self, t: int) -> None:
        """Read the book after block ``t`` (Simulation.run's progress callback); reads only."""
        rows = self.sim.account_rows(self.traders)
        gap = float(np.clip(rows["maintenance_margin"] - rows["equity"], 0.0, None).sum())
        if gap > self.gap:
            self.gap, self.rows = gap, rows

    def frame(self) -> pd.DataFrame:
        if self.rows is None:
            raise EvaluationError("the attested run had no block to read")
        return pd.DataFrame(self.rows)


@dataclass(frozen=True)
class AttestOptions:
    """What ``--attest`` asked for, checked before the evaluation's first run."""

    policies: tuple[str, ...]
    ptau: Any  # attest.toolchain.Ptau
    batch_size: int
    arity: int


def parse_policies(text: str) -> tuple[str, ...]:
    """Return the policies of ``--attest`` (comma-separated; empty = DEFAULT_POLICIES)."""
    names = tuple(p.strip() for p in text.split(",") if p.strip()) or DEFAULT_POLICIES
    unknown = [p for p in names if p not in DEFAULT_KNOBS]
    if unknown:
        raise EvaluationError(
            f"--attest names unknown policy {unknown[0]!r} (one of {', '.join(DEFAULT_KNOBS)})"
        )
    if len(set(names)) != len(names):
        raise EvaluationError("--attest names a policy more than once")
    return names


def prepare(
    policies: str,
    market_counts: set[int],
    ptau_file: Path | None,
    batch_size: int,
    arity: int,
    log: Callable[[str], object],
) -> AttestOptions:
    """Check ``--attest``'s options and set up the circuits for every market count of the
    evaluated scenarios (compiled and keyed once, cached), so that a missing toolchain or a
    powers-of-tau file too small fails before the runs, not after them."""
    from attest import toolchain
    from attest.build import keys

    names = parse_policies(policies)
    ptau = toolchain.supplied_ptau(ptau_file) if ptau_file else toolchain.largest_local_ptau()
    for markets in sorted(market_counts):
        log(f"setting up the attestation circuits ({markets} markets, batches of {batch_size})")
        keys(markets, batch_size, arity, ptau)
    return AttestOptions(names, ptau, batch_size, arity)


def attested_path(results: pd.DataFrame) -> tuple[str, int]:
    """Return the evaluation path (scenario, seed) where the reactive venue (static, knob 1)
    left the most bad debt; ties go to the first scenario and seed."""
    reactive = results[
        (results["role"] == "eval") & (results["policy"] == "static") & (results["knob"] == 1.0)
    ]
    if reactive.empty:
        raise EvaluationError("no evaluation run of the reactive venue to pick a path from")
    worst = reactive.sort_values(["bad_debt", "scenario", "seed"], ascending=[False, True, True])
    return str(worst["scenario"].iloc[0]), int(worst["seed"].iloc[0])


def path_runs(
    runs: list[PathRun],
    path: tuple[str, int],
    knobs: dict[str, float | None],
    policies: tuple[str, ...],
) -> tuple[list[PathRun], dict[str, str]]:
    """Return the path's runs of ``policies`` at ``knobs`` (static at 1; the reactive run is
    kept when the oracle needs it), and the policies that cannot be attested, with why."""
    wanted: dict[str, float | None] = {p: knobs.get(p) for p in policies}
    if "static" in policies or "oracle" in policies:
        wanted["static"] = 1.0
    chosen = [
        r
        for r in runs
        if r.role == "eval"
        and (r.scenario, r.seed) == path
        and r.policy in wanted
        and r.knob == wanted[r.policy]
    ]
    found = {r.policy for r in chosen}
    skipped = {
        p: "no tuned knob (its frontier did not reach the matched cost)"
        for p in policies
        if p not in found
    }
    return chosen, skipped


def attest_books(
    out: Path,
    path: tuple[str, int],
    runs: list[PathRun],
    books: dict[str, pd.DataFrame],
    options: AttestOptions,
    workers: int = 1,
    scheduler: str | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Attest each asked policy's book at its worst block (``books``: its sampled accounts on
    ``path``, from the ``runs`` of :func:`path_runs`; a policy without a run is skipped) into
    ``out/attestations/<policy>`` (openings into ``out/attestations-private/<policy>``), verify
    each, and return the section of summary.json: the path and, per policy, the verified
    figures with the attestation's root and folder."""
    from attest.book import from_samples
    from attest.build import attest
    from attest.verify import verify
    from pipelines.cluster import map_tasks

    def mapper(fn, items):
        return map_tasks(fn, items, workers, scheduler)

    section: dict[str, Any] = {"scenario": path[0], "seed": path[1], "policies": {}}
    for policy in options.policies:
        run = next((r for r in runs if r.policy == policy), None)
        if run is None:
            continue  # not tuned: reported as not attested
        source = {
            "scenario": path[0],
            "seed": path[1],
            "policy": policy,
            "knob": run.knob,
            "config_hash": run.cfg.hash(),
            "venue": run.cfg.venue,
        }
        book = from_samples(books[policy], f"{policy}'s sampled accounts", source, "worst")
        public = out / PUBLIC / policy
        log(f"attesting {policy} at block {book.source['block']} ({len(book):,} accounts)")
        attest(
            book,
            public,
            out / PRIVATE / policy,
            options.ptau,
            batch_size=options.batch_size,
            arity=options.arity,
            mapper=mapper,
            workers=workers if scheduler is None else max(workers, 2),
            log=log,
        )
        manifest = verify(public).manifest  # the report's figures are the verified ones
        totals = {k: int(v) for k, v in manifest["totals"].items()}
        section["policies"][policy] = {
            "knob": run.knob,
            "block": int(book.source["block"]),
            "verified": True,
            "root": manifest["root"],
            "folder": f"{PUBLIC}/{policy}",
            "accounts": totals["accounts"],
            "below_maintenance": totals["below_maintenance"],
            "notional_below_maintenance": totals["below_notional"] / 1e6,
            "gap_below_maintenance": totals["below_gap"] / 1e6,
            "collateral": totals["collateral"] / 1e6,
            "maintenance": totals["maintenance"] / 1e6,
            "shortfall": int(manifest["health"]["shortfall"]) / 1e6,
            "bad_debt": totals["deficit"] / 1e6,
            "setup": manifest["setup"]["ptau"],
        }
    return section
