"""Record or check the bytes every shipped scenario writes, to prove a restructuring changed
no output.

    python tests/engine/output_hashes.py --record hashes.json   # before the change
    python tests/engine/output_hashes.py --check hashes.json    # after it: exit 1 on a change
    python tests/engine/output_hashes.py --check hashes.json --only cascade+   # some runs

Each shipped scenario runs at seeds 0 and 1 with its own policy, and the cascade scenario also
under every other policy the engine has (vol_scaled, oi_scaled, the predictive policy fed by
the first-passage forecaster, by perfect foresight, and the budget allocation), so the
reactive path and every policy's path are both covered; the stress, cascade and correlated
crash scenarios also run under every venue preset. The hashes are of the Parquet tables
and summary.json; the manifest is left out (it names the package version). Not collected by
pytest: it takes minutes, and Parquet bytes change with the pyarrow version, so the hashes are
compared within one environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from engine.venues import PRESETS

SEEDS = (0, 1)
POLICY_RUNS = {
    "vol_scaled": (["policy.name='vol_scaled'", "policy.knob=2.0"], "none"),
    "oi_scaled": (["policy.name='oi_scaled'", "policy.knob=1.0"], "none"),
    "analytic": (["policy.name='predictive'", "policy.knob=2.0"], "analytic"),
    "oracle": (["policy.name='predictive'", "policy.knob=2.0"], "oracle"),
    "budget": (
        ["policy.name='predictive'", "policy.allocation='budget'", "policy.knob=4"],
        "oracle",
    ),
}
"""Extra runs of the cascade scenario: name -> (config overrides, forecast source)."""
VENUES = tuple(name for name in PRESETS if name != "generic")
VENUE_SCENARIOS = ("stress", "cascade", "correlated_crash")
"""Scenarios also run under every venue preset (the shipped ones use the generic preset), so a
change to a venue's rules or kernels is checked too."""


def _jobs() -> list[tuple[str, str, tuple[str, ...], str, int]]:
    from pipelines.shipped import catalog

    jobs = []
    for item in catalog():
        if item.kind in ("training", "example"):
            continue
        for seed in SEEDS:
            jobs.append((item.name, str(item.path), (), "none", seed))
    cascade = next(i for i in catalog() if i.name == "cascade")
    for name, (overrides, source) in POLICY_RUNS.items():
        for seed in SEEDS:
            jobs.append((f"cascade+{name}", str(cascade.path), tuple(overrides), source, seed))
    for item in catalog():
        if item.name in VENUE_SCENARIOS:
            for venue in VENUES:
                for seed in SEEDS:
                    over = (f"venue='{venue}'",)
                    jobs.append((f"{item.name}+{venue}", str(item.path), over, "none", seed))
    return jobs


def _run(job: tuple[str, str, tuple[str, ...], str, int]) -> tuple[str, dict[str, str]]:
    from engine.config import load_config
    from engine.history import write_run
    from pipelines.simulate import ForecastSource, run

    label, path, overrides, source, seed = job
    cfg = dataclasses.replace(load_config(path, list(overrides)), seed=seed)
    sim = run(cfg, show_progress=False, source=ForecastSource(kind=source))
    with tempfile.TemporaryDirectory() as out:
        folder = write_run(sim, out)
        hashes = {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.iterdir())
            if f.name != "manifest.json"
        }
    return f"{label}/seed={seed}", hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the hashes to this file")
    mode.add_argument("--check", type=Path, help="compare against hashes recorded earlier")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--only", default="", help="run only the runs whose label contains this (with --check)"
    )
    args = parser.parse_args()
    if args.only and args.record:
        parser.error("--only is for --check: a record must hold every run")
    jobs = [job for job in _jobs() if args.only in job[0]]
    with ProcessPoolExecutor(args.workers) as pool:
        found = dict(pool.map(_run, jobs))
    if args.record:
        args.record.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        files = sum(len(v) for v in found.values())
        print(f"recorded {files} files of {len(found)} runs in {args.record}")
        return 0
    expected = json.loads(args.check.read_text())
    if args.only:
        expected = {run: files for run, files in expected.items() if args.only in run}
    changed = [
        f"{run}/{name}"
        for run in sorted(set(expected) | set(found))
        for name in sorted(set(expected.get(run, {})) | set(found.get(run, {})))
        if expected.get(run, {}).get(name) != found.get(run, {}).get(name)
    ]
    files = sum(len(v) for v in found.values())
    if changed:
        print(f"{len(changed)} of {files} files differ:", *changed, sep="\n  ")
        return 1
    print(f"all {files} files of {len(found)} runs are byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
