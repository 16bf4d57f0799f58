"""Throughput of the full-realism step: Hawkes traders, order book, keepers with congestion,
oracle delay, funding, GARCH index, labelled-history sampling.

    python tests/perf/bench_full_step.py --accounts 100000 --steps 200 [--venue dydx_v4]
        [--opening-margin initial]

prints account-market-ticks per second (goal: 20M on this 2-core machine), and the same for
the bare reference step of bench_engine.py as a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import time

from bench_engine import four_markets, reference_config

from engine.config import resolve
from engine.sim import Simulation


def full_config(
    accounts: int, steps: int, seed: int, venue: str = "generic", opening_margin: str = "drawn"
):
    # Each preset resolves losses beyond the fund its own way (Drift socializes them; the
    # reference step's markets deleverage).
    markets = [
        {**{k: v for k, v in mk.items() if k != "loss_resolution"}, "funding_interval_ticks": 240}
        for mk in four_markets(3e6, 100_000.0, 20_000.0)
    ]
    return resolve(
        {
            "name": "bench-full",
            "venue": venue,
            "seed": seed,
            "steps": steps,
            "tick_ms": 15_000,
            "markets": markets,
            "accounts": {
                "count": accounts,
                "cross_fraction": 0.7,
                "opening_margin": opening_margin,
            },
            "traders": {"model": "hawkes", "base_rate_per_minute": 0.01, "topup_probability": 0.3},
            "keepers": {"count": 3, "latency_ticks": 1, "capacity_per_block": 60},
            "oracle": {"delay_ticks": 1, "stale_probability": 0.01},
            "congestion": {"enabled": True},
            "index": {"model": "garch", "correlation": 0.6},
            "history": {"sample_every_ticks": 20},
            "shocks": [{"market": "M0", "tick": steps // 2, "log_return": -0.08, "over_ticks": 8}],
        }
    )


def timed(sim: Simulation) -> float:
    t0 = time.perf_counter()
    sim.run()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--venue", default="generic", help="venue preset of every market")
    ap.add_argument(
        "--opening-margin",
        default="drawn",
        choices=["drawn", "initial"],
        help="the snapshot's collateral: as drawn, or at least the venue's initial margin",
    )
    args = ap.parse_args()
    cfg = full_config(args.accounts, args.steps, args.seed, args.venue, args.opening_margin)
    sim = Simulation(cfg)
    seconds = timed(sim)
    work = args.accounts * len(cfg.markets) * args.steps
    ref = Simulation(reference_config(args.accounts * 4, args.steps, args.seed))
    ref_seconds = timed(ref)
    s = sim.summary()
    print(
        f"full step, {args.venue} ({args.opening_margin} opening margin): {args.accounts:,} "
        f"accounts x 4 markets x {args.steps} steps; {sim.opening_below_maintenance:,} start "
        "below maintenance margin"
    )
    print(
        f"  {work / seconds / 1e6:8.1f} M account-market-ticks/s ({seconds:.2f} s; "
        f"{1000 * seconds / args.steps:.1f} ms per step; {s['liquidations']:,} liquidations, "
        f"{int(sim.records['orders_accepted'].sum()):,} orders)  goal >= 20"
    )
    print(f"reference step, {args.accounts * 4:,} accounts x 1 market (baseline, same run):")
    print(f"  {work / ref_seconds / 1e6:8.1f} M account-market-ticks/s ({ref_seconds:.2f} s)")
    print(f"  full / reference: {ref_seconds / seconds:.2f}")


if __name__ == "__main__":
    main()
