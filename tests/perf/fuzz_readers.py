"""Fuzz the readers of untrusted files: replay bars, history manifests, model.json.

    python tests/perf/fuzz_readers.py --minutes 3

Feeds each reader byte strings derived from a valid file (random edits, truncations, splices of
random bytes) and from scratch, for the given time, and counts crashes: any exception other
than the reader's own one-line refusal (ReplayError, DataError, ModelError). Prints the inputs
tried and the crashes per reader; a crash's input is saved under --out for replay. Not part of
the default test run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def mutate(seed: bytes, rng: np.random.Generator) -> bytes:
    """One random edit of ``seed``: flip bytes, cut, splice random bytes, duplicate a span."""
    data = bytearray(seed)
    for _ in range(int(rng.integers(1, 6))):
        what = int(rng.integers(0, 5))
        at = int(rng.integers(0, max(len(data), 1)))
        if what == 0 and data:
            data[at % len(data)] = int(rng.integers(0, 256))
        elif what == 1:
            data = data[:at]
        elif what == 2:
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif what == 3 and data:
            span = data[at : at + int(rng.integers(1, 200))]
            data[at:at] = span
        else:
            token = [b"inf", b"-inf", b"nan", b"1e308", b"-1", b"", b'"', b"\xff", b"9" * 30]
            data[at:at] = token[int(rng.integers(0, len(token)))]
    return bytes(data)


def fuzz(name, seed: bytes, read, refusal, deadline: float, rng, out: Path) -> tuple[int, int]:
    tried = crashes = 0
    while time.monotonic() < deadline:
        payload = mutate(seed, rng) if rng.random() < 0.9 else rng.bytes(int(rng.integers(0, 400)))
        tried += 1
        try:
            read(payload)
        except refusal:
            pass
        except Exception:
            crashes += 1
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}-{crashes}.bin").write_bytes(payload)
            (out / f"{name}-{crashes}.txt").write_text(traceback.format_exc())
    return tried, crashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="Time per reader.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-crashes"))
    args = parser.parse_args()

    from engine.config import load_config
    from engine.history import write_run
    from engine.prices import ReplayError, load_bars
    from engine.sim import Simulation
    from pipelines.shipped import CONFIGS, real_crash_files
    from predictor.data import DataError, discover
    from predictor.model import ModelError, read_model_doc

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="predliq-fuzz-"))
    try:
        # Replay bars: the first 300 lines of a real file.
        text = gzip.open(real_crash_files()[0], "rt").read().splitlines()[:300]
        bars_seed = ("\n".join(text) + "\n").encode()
        bars = work / "BTCUSDT-PERP_1m_fuzz.csv"

        def read_bars(payload: bytes) -> None:
            bars.write_bytes(payload)
            load_bars(bars)

        # A manifest: one small partition's.
        cfg = load_config(
            CONFIGS / "scenarios" / "cascade.toml", ["accounts.count=200", "steps=40"]
        )
        sim = Simulation(cfg)
        sim.run()
        part = write_run(sim, work / "histories")
        manifest_seed = (part / "manifest.json").read_bytes()

        def read_manifest(payload: bytes) -> None:
            (part / "manifest.json").write_bytes(payload)
            discover(work / "histories")

        # model.json: a document of the shape save() writes.
        model_dir = work / "model"
        model_dir.mkdir()
        (model_dir / "model.txt").write_text("tree\n")
        model_seed = json.dumps(
            {
                "features": ["a"],
                "schema_version": 2,
                "horizon_minutes": 5.0,
                "best_iteration": 3,
                "calibration": {"method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0]},
                "band_calibration": None,
                "heads": {},
                "files": {"model.txt": "0" * 64},
            }
        ).encode()

        def read_model(payload: bytes) -> None:
            (model_dir / "model.json").write_bytes(payload)
            read_model_doc(model_dir)

        deadline_each = args.minutes * 60.0
        print(f"{'reader':<14} {'inputs':>9} {'crashes':>8}")
        total = 0
        for name, seed, read, refusal in (
            ("replay bars", bars_seed, read_bars, ReplayError),
            ("manifest", manifest_seed, read_manifest, DataError),
            ("model.json", model_seed, read_model, ModelError),
        ):
            tried, crashes = fuzz(
                name.replace(" ", "-"),
                seed,
                read,
                refusal,
                time.monotonic() + deadline_each,
                rng,
                args.out,
            )
            total += crashes
            print(f"{name:<14} {tried:>9,} {crashes:>8}")
        print(f"crashes in all: {total}" + (f" (inputs saved in {args.out})" if total else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
