"""Feature building and training time of the breach forecaster for about 1M rows.

    python tests/perf/bench_train.py [--data data/histories] [--rows 1000000]

Without --data it simulates the cascade scenario (seeds 0-1, full size) into a temporary folder.
Prints feature-building throughput (rows/s) against reading the same Parquet columns (the I/O
floor, same run), and the forecaster's training time (early stopping and isotonic calibration
included) against a plain 100-round ``lgb.train`` on the same matrix. Goal: under 60 s for 1M
rows including features.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from engine.config import load_config
from engine.history import write_run
from engine.sim import Simulation
from predictor.data import ACCOUNT_COLUMNS, MARKET_COLUMNS, discover
from predictor.dataset import Rows, build_path
from predictor.features import FEATURES
from predictor.model import DEFAULT_PARAMS, BreachForecaster

ROOT = Path(__file__).resolve().parents[2]


def simulate(out: Path) -> None:
    for seed in (0, 1):
        cfg = load_config(ROOT / "configs" / "scenarios" / "cascade.toml", [f"seed={seed}"])
        sim = Simulation(cfg)
        sim.run()
        write_run(sim, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            print("simulating cascade seeds 0-1 ...")
            simulate(data)
        parts = discover(data)
        label = "label_5m"

        t0 = time.perf_counter()
        built, read_rows = [], 0
        for i, part in enumerate(parts):
            built.append(build_path(part, i, 5.0, label))
            read_rows += part.manifest["rows"]["accounts"]
            if sum(len(b) for b in built) >= args.rows:
                break
        rows = Rows.concat(built)
        feature_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for part in parts[: len(built)]:
            part.read("markets", [*MARKET_COLUMNS, "sigma_annual"])
            part.read("accounts", [*ACCOUNT_COLUMNS, label])
        read_s = time.perf_counter() - t0

        n = min(args.rows, len(rows))
        X, y = rows.X[:n], rows.y[:n]
        stop = np.arange(n) % 5 == 0  # every fifth row stops early and calibrates
        t0 = time.perf_counter()
        model = BreachForecaster(horizon_minutes=5.0).fit(
            X[~stop], y[~stop], X[stop], y[stop], X[stop], y[stop]
        )
        train_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        lgb.train({**DEFAULT_PARAMS, "seed": 0}, lgb.Dataset(X, y), num_boost_round=100)
        plain_s = time.perf_counter() - t0

    print(f"{n:,} rows x {len(FEATURES)} features ({int(y.sum()):,} positive)")
    print(
        f"  features: {feature_s:6.2f} s, {len(rows) / feature_s:,.0f} feature rows/s "
        f"({read_rows / feature_s:,.0f} history rows/s); reading the Parquet alone "
        f"{read_s:.2f} s: features / read = {feature_s / read_s:.1f}"
    )
    print(
        f"  training: {train_s:6.2f} s ({model.best_iteration_} trees, early stopping and "
        f"calibration included); plain lgb.train 100 rounds {plain_s:.2f} s: "
        f"ratio {train_s / plain_s:.2f}"
    )
    total = feature_s * n / len(rows) + train_s
    print(f"  features + training for {n:,} rows: {total:.1f} s (goal < 60 s)")


if __name__ == "__main__":
    main()
