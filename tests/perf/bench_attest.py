"""Benchmark of predliq attest / verify on a simulated book (not collected by pytest).

    python tests/perf/bench_attest.py --accounts 10000 --batch-size 64 --workers 1 2

Simulates the stress scenario with ``--accounts`` traders for a few blocks, then attests the
last block once per ``--workers`` value (a local Dask cluster above 1) and verifies the
attestation and one account's inclusion. Prints constraints per account, proving time per
batch, the whole attestation's time, verification time, proof and key sizes and peak memory of
the proving processes; the ratios are against the first ``--workers`` value, measured in the
same run. Needs a powers-of-tau file large enough for the batch circuit (`predliq attest setup
--power 16` for batches of 64) or ``--ptau``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from attest import toolchain  # noqa: E402
from attest.book import from_partition  # noqa: E402
from attest.build import attest  # noqa: E402
from attest.verify import verify, verify_account  # noqa: E402
from pipelines.cluster import map_tasks  # noqa: E402


def _size(path: Path) -> int:
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--arity", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ptau", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    ptau = toolchain.supplied_ptau(args.ptau) if args.ptau else toolchain.largest_local_ptau()
    work = Path(tempfile.mkdtemp(prefix="bench-attest-"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "simulate",
            "--config",
            "stress",
            "--set",
            f"accounts.count={args.accounts}",
            "--set",
            "steps=20",
            "--seed",
            str(args.seed),
            "--out",
            str(work / "runs"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    book = from_partition(next((work / "runs").glob("scenario=*/seed=*")))
    print(f"book: {len(book)} accounts, {len(book.markets)} markets; ptau 2^{ptau.power}")
    t = time.perf_counter()
    batch_keys = toolchain.circuit("batch", (args.batch_size, len(book.markets)), ptau)
    node_keys = toolchain.circuit("aggregate", (args.arity, len(book.markets)), ptau)
    print(f"circuits ready in {time.perf_counter() - t:.1f} s (cached after the first run)")
    print(
        f"batch circuit: {batch_keys.constraints} constraints = "
        f"{batch_keys.constraints / args.batch_size:.0f} per account; aggregate: "
        f"{node_keys.constraints} constraints"
    )
    print(
        f"proving key {(_size(batch_keys.zkey) / 1e6):.1f} MB (batch), "
        f"{_size(node_keys.zkey) / 1e6:.1f} MB (aggregate); verification keys "
        f"{_size(batch_keys.vkey) / 1e3:.1f} kB, {_size(node_keys.vkey) / 1e3:.1f} kB"
    )
    results = []
    for workers in args.workers:
        out = work / f"attestation-{workers}"
        times: list[float] = []

        def mapper(fn, items, workers=workers):
            return map_tasks(fn, items, workers, None)

        t = time.perf_counter()
        manifest = attest(
            book,
            out,
            work / f"private-{workers}",
            ptau,
            batch_size=args.batch_size,
            arity=args.arity,
            mapper=mapper,
            workers=workers,
            log=lambda line, times=times: times.append(time.perf_counter()),
        )
        wall = time.perf_counter() - t
        batches = len(manifest["levels"][0])
        per_batch = manifest["timing_s"]["batch_proofs"] / batches * workers
        t = time.perf_counter()
        verify(out)
        verify_s = time.perf_counter() - t
        opening = next((work / f"private-{workers}" / "openings").glob("*.json"))
        account = json.loads(opening.read_text())["values"]["account"]
        t = time.perf_counter()
        verify_account(out, account, opening)
        inclusion_s = time.perf_counter() - t
        proofs = sorted((out / "proofs").glob("*.json"))
        results.append((workers, wall))
        print(
            f"workers {workers}: {len(book)} accounts attested in {wall:.1f} s "
            f"({batches} batch proofs, {len(proofs) - batches} aggregate proofs; "
            f"{per_batch:.2f} s of proving per batch per worker); "
            f"verification {verify_s:.2f} s, one account's inclusion {inclusion_s:.2f} s"
        )
        folder_mb = sum(_size(p) for p in out.rglob("*") if p.is_file()) / 1e6
        print(
            f"  proof {statistics.median(_size(p) for p in proofs) / 1e3:.2f} kB each, "
            f"attestation folder {folder_mb:.2f} MB"
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3
    print(f"peak memory of a proving process: {peak:.0f} MB")
    base = results[0][1]
    for workers, wall in results:
        print(f"ratio workers {workers} / workers {results[0][0]}: {wall / base:.2f}")


if __name__ == "__main__":
    main()
