"""Making an attestation: commit a book, prove every batch and aggregate, write two folders.

``attestation/`` is public: the proofs with their public signals, the verification keys, the
top node's opening (root and totals), the batches' id ranges and a short summary.
``<private>/`` holds what only the venue keeps: every salt, and one opening per account (its
values, salt and inclusion path) to hand to that account's owner. Both are written into a
staging folder and renamed into place, so a failure leaves neither half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from attest import toolchain
from attest.book import QUANTUMS_PER_UNIT, Book
from attest.toolchain import AGGREGATE_ARITY, ARITIES, BATCH_SIZES, CircuitKeys, Ptau
from attest.tree import (
    add_sums,
    aggregate_groups,
    aggregate_input,
    batch_input,
    batch_sums,
    batches,
    leaf_preimage,
    merkle_forest,
    path,
    salt,
    sum_names,
)
from engine.atomic import atomic_dir
from engine.errors import PredliqError

FORMAT = "predliq-attestation/1"
Mapper = Callable[[Callable[..., Any], Iterable[Any]], Iterator[Any]]
"""Runs a function over items (in this process, or as Dask tasks) and yields the results."""


class AttestError(PredliqError, ValueError):
    """An attestation that cannot be made as asked (message names the option)."""


def keys(
    markets: int, batch_size: int, arity: int, ptau: Ptau, make: bool = True
) -> tuple[CircuitKeys, CircuitKeys]:
    """Return the batch and aggregate circuits of this shape, set up if ``make``."""
    if batch_size not in BATCH_SIZES:
        raise AttestError(f"--batch-size must be one of {BATCH_SIZES}, was {batch_size}")
    if arity not in ARITIES:
        raise AttestError(f"--arity must be one of {ARITIES}, was {arity}")
    toolchain.node_modules()  # installed (if need be) once, before two threads ask for it
    # The two setups run side by side: snarkjs's key generation is mostly single-threaded.
    with ThreadPoolExecutor(max_workers=2) as pool:
        batch = pool.submit(toolchain.circuit, "batch", (batch_size, markets), ptau, make)
        aggregate = pool.submit(toolchain.circuit, "aggregate", (arity, markets), ptau, make)
        return batch.result(), aggregate.result()


def prove_jobs(jobs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Prove a list of jobs in one Node process (the proving key is read once); a Dask task."""
    return toolchain.node_call("prove", {"jobs": jobs}, "proving")


def _chunks(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def attest(
    book: Book,
    out: Path,
    private: Path,
    ptau: Ptau,
    batch_size: int = 16,
    arity: int = AGGREGATE_ARITY,
    mapper: Mapper | None = None,
    workers: int = 1,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Attest ``book``: write the public attestation to ``out`` and the salts and openings to
    ``private``; return the attestation's manifest."""
    started = time.perf_counter()
    batch_keys, node_keys = keys(len(book.markets), batch_size, arity, ptau)
    run = mapper or (lambda fn, items: (fn(item) for item in items))
    names = sum_names(book.markets)
    plan = batches(book, batch_size)
    leaf_salts = [salt() for _ in range(len(book))]
    work = Path(tempfile.mkdtemp(prefix="predliq-attest-"))
    try:
        with atomic_dir(out) as pub, atomic_dir(private) as priv:
            (pub / "proofs").mkdir()
            # Level 0: the batches.
            jobs = []
            nodes: list[dict[str, Any]] = []
            for b in plan:
                bsalt = salt()
                inp = work / f"batch_{b.index:05d}.json"
                inp.write_text(
                    json.dumps(batch_input(book, b, leaf_salts[b.start : b.stop], bsalt))
                )
                proof = pub / "proofs" / f"batch_{b.index:05d}.json"
                jobs.append(_job(batch_keys, inp, proof))
                nodes.append({"salt": bsalt, "sums": batch_sums(book, b), "proof": proof})
            prove_started = time.perf_counter()
            _prove(run, jobs, workers, log, "batch")
            batch_seconds = time.perf_counter() - prove_started
            for node in nodes:
                signals = _signals(node["proof"])
                node.update(root=signals[0], commitment=signals[1], ids=signals[2:4])
            levels = [nodes]
            # Aggregates, level by level, until one node is left.
            while len(levels[-1]) > 1 or len(levels) == 1:
                below = levels[-1]
                groups = aggregate_groups(len(below), arity)
                roots = toolchain.poseidon(
                    [[below[i]["commitment"] for i in g] + [0] * (arity - len(g)) for g in groups]
                )
                level: list[dict[str, Any]] = []
                jobs = []
                for j, g in enumerate(groups):
                    nsalt = salt()
                    children = [
                        (
                            below[i]["commitment"],
                            below[i]["salt"],
                            below[i]["root"],
                            below[i]["sums"],
                        )
                        for i in g
                    ]
                    inp = work / f"node_{len(levels)}_{j:05d}.json"
                    inp.write_text(json.dumps(aggregate_input(children, nsalt, len(names), arity)))
                    proof = pub / "proofs" / f"node_{len(levels)}_{j:05d}.json"
                    jobs.append(_job(node_keys, inp, proof))
                    level.append(
                        {
                            "salt": nsalt,
                            "root": roots[j],
                            "sums": add_sums([below[i]["sums"] for i in g]),
                            "proof": proof,
                        }
                    )
                _prove(run, jobs, workers, log, f"level-{len(levels)} aggregate")
                for node in level:
                    node["commitment"] = _signals(node["proof"])[0]
                levels.append(level)
            top = levels[-1][0]
            seconds = time.perf_counter() - started
            manifest = _manifest(book, levels, top, names, batch_size, ptau, batch_keys, node_keys)
            manifest["arity"] = arity
            manifest["timing_s"] = {
                "total": round(seconds, 3),
                "batch_proofs": round(batch_seconds, 3),
            }
            for circuit in (batch_keys, node_keys):
                (pub / f"verification_key_{circuit.kind}.json").write_bytes(
                    circuit.vkey.read_bytes()
                )
            (pub / "attestation.json").write_text(json.dumps(manifest, indent=2) + "\n")
            (pub / "summary.md").write_text(summary_text(manifest))
            _write_openings(book, plan, leaf_salts, levels, priv)
    finally:
        for f in work.glob("*"):
            f.unlink()
        os.rmdir(work)
    log(f"attested {len(book)} accounts in {seconds:.1f} s: {out} (private: {private})")
    return manifest


def _job(keys_: CircuitKeys, inp: Path, proof: Path) -> dict[str, str]:
    return {"wasm": str(keys_.wasm), "zkey": str(keys_.zkey), "input": str(inp), "out": str(proof)}


def _prove(run: Mapper, jobs: list[dict[str, str]], workers: int, log: Callable, what: str) -> None:
    done = 0
    for replies in run(prove_jobs, _chunks(jobs, workers)):
        done += len(replies)
        log(f"proved {done}/{len(jobs)} {what} proofs")


def _signals(proof: Path) -> list[int]:
    return [int(x) for x in json.loads(proof.read_text())["publicSignals"]]


def _manifest(
    book: Book,
    levels: list[list[dict[str, Any]]],
    top: dict[str, Any],
    names: tuple[str, ...],
    batch_size: int,
    ptau: Ptau,
    batch_keys: CircuitKeys,
    node_keys: CircuitKeys,
) -> dict[str, Any]:
    totals = dict(zip(names, top["sums"], strict=True))
    return {
        "format": FORMAT,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": book.source,
        "markets": list(book.markets),
        "units": "quote quantums (1e-6 of the quote currency)",
        "proof_system": toolchain.PROOF_SYSTEM,
        "curve": toolchain.CURVE,
        "setup": {
            "ptau": ptau.origin,
            "ptau_power": ptau.power,
            "note": (
                "powers of tau and circuit keys made locally with one random contribution each: "
                "whoever made them could forge proofs; a deployment uses a public multi-party "
                "ceremony (--ptau) and a public phase-2 contribution"
                if ptau.origin == "local"
                else "circuit keys made locally with one random contribution over the supplied "
                "powers of tau"
            ),
        },
        "circuits": {
            c.kind: {
                "params": list(c.params),
                "constraints": c.constraints,
                "verification_key": f"verification_key_{c.kind}.json",
                "verification_key_sha256": toolchain.fingerprint(c.vkey),
            }
            for c in (batch_keys, node_keys)
        },
        "batch_size": batch_size,
        "levels": [[node["proof"].name for node in level] for level in levels],
        "top": {
            "salt": str(top["salt"]),
            "root": str(top["root"]),
            "sums": [str(s) for s in top["sums"]],
        },
        "root": str(top["commitment"]),
        "totals": {k: str(v) for k, v in totals.items()},
        "health": health(totals),
    }


def health(totals: dict[str, int]) -> dict[str, Any]:
    """Return the health statement the totals prove: collateral against maintenance."""
    shortfall = max(0, totals["maintenance"] - totals["collateral"])
    return {
        "collateral_covers_maintenance": shortfall == 0,
        "shortfall": str(shortfall),
        "accounts_below_maintenance": str(totals["below_maintenance"]),
        "notional_below_maintenance": str(totals["below_notional"]),
        "gap_below_maintenance": str(totals["below_gap"]),
        "bad_debt": str(totals["deficit"]),
    }


def _units(quantums: str | int) -> str:
    return f"{int(quantums) / QUANTUMS_PER_UNIT:,.2f}"


def summary_text(manifest: dict[str, Any]) -> str:
    """Return the human summary of an attestation (the figures a committee reads)."""
    t = manifest["totals"]
    h = manifest["health"]
    src = manifest["source"]
    where = (
        f"scenario {src.get('scenario')}, seed {src.get('seed')}, block {src.get('block')}"
        if "block" in src
        else f"file {src.get('file')}"
    )
    verdict = (
        "covers the maintenance requirement"
        if h["collateral_covers_maintenance"]
        else f"falls short of the maintenance requirement by {_units(h['shortfall'])}"
    )
    lines = [
        "# Attestation of a venue's book",
        "",
        f"Book: {where}; {int(t['accounts']):,} accounts, "
        f"markets {', '.join(manifest['markets'])}.",
        f"Root: `{manifest['root']}`",
        "",
        f"- Total collateral {_units(t['collateral'])} {verdict}"
        f" (total maintenance {_units(t['maintenance'])}, initial {_units(t['initial'])}).",
        f"- Bad debt (accounts with negative equity): {_units(t['deficit'])}.",
        f"- Accounts below maintenance: {int(t['below_maintenance']):,}, holding notional "
        f"{_units(t['below_notional'])}; they lack {_units(t['below_gap'])} of margin.",
    ]
    lines += [f"- Notional in {m}: {_units(t[f'notional_{m}'])}." for m in manifest["markets"]]
    lines += [
        "",
        f"Proved with {manifest['proof_system']} on {manifest['curve']}: "
        f"{len(manifest['levels'][0])} batch proofs of {manifest['batch_size']} accounts and "
        f"{sum(len(lv) for lv in manifest['levels'][1:])} aggregate proofs. "
        "Amounts in quote units.",
        f"Setup: {manifest['setup']['note']}.",
        "",
        "Check it with `predliq verify DIR`; an account owner checks their own account with "
        "`predliq verify DIR --account ID --opening FILE`.",
        "",
    ]
    return "\n".join(lines)


def _write_openings(
    book: Book,
    plan: list,
    leaf_salts: list[int],
    levels: list[list[dict[str, Any]]],
    priv: Path,
) -> None:
    """Write one opening per account and the node salts into the private folder."""
    m = len(book.markets)
    trees = []
    for b in plan:
        leaves = []
        for row in range(b.start, b.start + b.size):
            if row < b.stop:
                v = book.values(row)
                amounts = [v["collateral"], v["deficit"], v["maintenance"], v["initial"]]
                leaves.append(
                    leaf_preimage(leaf_salts[row], v["account"], 1, amounts, v["notional"])
                )
            else:
                leaves.append(leaf_preimage(0, 0, 0, [0, 0, 0, 0], [0] * m))
        trees.append(leaves)
    hashes = toolchain.poseidon([leaf for tree in trees for leaf in tree])
    forest = merkle_forest([hashes[i * b.size : (i + 1) * b.size] for i, b in enumerate(plan)])
    for b, layers, node in zip(plan, forest, levels[0], strict=True):
        if layers[-1][0] != node["root"]:
            raise AttestError(f"batch {b.index}: its proof's root differs from the leaves' root")
    (priv / "openings").mkdir()
    for b, layers in zip(plan, forest, strict=True):
        for leaf, row in enumerate(range(b.start, b.stop)):
            opening = {
                "format": FORMAT,
                "values": book.values(row),
                "units": "quote quantums (1e-6 of the quote currency)",
                "salt": str(leaf_salts[row]),
                "batch": b.index,
                "leaf": leaf,
                "path": path(layers, leaf),
            }
            (priv / "openings" / f"account_{int(book.ids[row])}.json").write_text(
                json.dumps(opening)
            )
    salts = {
        "format": FORMAT,
        "nodes": [
            [
                {
                    "salt": str(n["salt"]),
                    "root": str(n["root"]),
                    "sums": [str(s) for s in n["sums"]],
                }
                for n in level
            ]
            for level in levels
        ],
    }
    (priv / "node_salts.json").write_text(json.dumps(salts))
