"""Training on a Dask cluster against single-machine training: held-out metrics and time.

    python tests/perf/bench_train_dask.py [--data data/histories] [--horizon 5m] [--workers 2]

Trains the forecaster three times on the same rows: on this machine with LightGBM's bagging and
feature-sampling seeds 0 and 1 (the spread between the two is the noise of training itself), and
with
``lightgbm.dask`` on a LocalCluster of ``--workers`` processes with seed 0. Prints each model's
held-out metrics (seed split and regime shift), the paired bootstrap 95% interval of the PR-AUC
difference dask − local over held-out snapshots, and the time of features and of training.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from pipelines.cluster import dask_client
from predictor.train import TrainResult, load_train_config, train

ROOT = Path(__file__).resolve().parents[2]


def paired_interval(y, p_a, p_b, groups, draws: int, seed: int = 0) -> tuple[float, float]:
    """Return the 95% interval of PR-AUC(p_a) − PR-AUC(p_b), resampling whole ``groups`` (rows
    close in time on one path share a market state, so they are not independent)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    members = np.split(order, bounds)
    diffs = []
    for _ in range(draws):
        pick = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if y[pick].any():
            diffs.append(
                average_precision_score(y[pick], p_a[pick])
                - average_precision_score(y[pick], p_b[pick])
            )
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def row(name: str, result: TrainResult, wall: float) -> str:
    seed = result.seed_split.metrics["model"]
    shift = result.regime_shift.metrics["model"] if result.regime_shift else {}
    return (
        f"{name:<16} {seed['pr_auc']:7.3f} {seed['roc_auc']:7.3f} {seed['ece']:7.4f}"
        f" {shift.get('pr_auc', float('nan')):9.3f} {result.model.best_iteration_:6d}"
        f" {result.timings['features_s']:9.1f} {result.timings['train_s']:8.1f} {wall:7.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "histories"))
    ap.add_argument("--horizon", default="5m")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=100)
    args = ap.parse_args()

    runs: dict[str, tuple[TrainResult, float]] = {}
    for seed in (0, 1):
        # The config's seed also samples the rows; these two seeds change only the trees.
        seeds = {"bagging_seed": seed, "feature_fraction_seed": seed} if seed else {}
        t0 = time.perf_counter()
        result = train(
            args.data, load_train_config(None, {"horizon": args.horizon, "params": seeds})
        )
        runs[f"local seed {seed}"] = (result, time.perf_counter() - t0)
    t0 = time.perf_counter()
    with dask_client(args.workers, None) as client:
        result = train(args.data, load_train_config(None, {"horizon": args.horizon}), client=client)
    runs[f"dask {args.workers} workers"] = (result, time.perf_counter() - t0)

    test = runs["local seed 0"][0].test_rows
    for name, (result, _) in runs.items():
        assert np.array_equal(result.test_rows.y, test.y), f"{name}: other held-out rows"
    # 15-minute blocks of each held-out path are the resampled unit.
    blocks = test.path.astype(np.int64) << 32 | (test.tick * test.minutes_per_tick // 15).astype(
        np.int64
    )
    print(f"{len(test):,} held-out rows, {int(test.y.sum()):,} positive ({args.horizon})")
    print(
        f"{'':<16} {'PR-AUC':>7} {'ROC-AUC':>7} {'ECE':>7} {'shift PR':>9} {'trees':>6}"
        f" {'features':>9} {'training':>8} {'all (s)':>7}"
    )
    for name, (result, wall) in runs.items():
        print(row(name, result, wall))
    p = {name: r.seed_split.probabilities["model"] for name, (r, _) in runs.items()}
    y = runs["local seed 0"][0].seed_split.y
    local, other, dask = p.values()
    for label, a, b in (("dask - local seed 0", dask, local), ("seed 1 - seed 0", other, local)):
        low, high = paired_interval(y, a, b, blocks, args.draws)
        diff = average_precision_score(y, a) - average_precision_score(y, b)
        print(f"PR-AUC {label}: {diff:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
