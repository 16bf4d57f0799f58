"""Engine throughput against a bare numpy loop of the same rules, measured in the same run.

Reference scenario (issue 2): N accounts on one market; sizes ~ N(0, 1) base units, entry 100,
collateral so that leverage ~ U(2, 20); GBM price, sigma 80%/year, 1-minute steps; each step
liquidate accounts with equity < 5% x notional in full, 1% penalty to the insurance fund, the
fund pays negative equity.

    python tests/perf/bench_engine.py --accounts 100000 --steps 1000

prints both throughputs (account-steps/s) and their ratio, then ms per step for N accounts x 4
markets in cross margin with keepers, insurance fund and ADL active. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engine.config import resolve
from engine.sim import Simulation


def reference_config(accounts: int, steps: int, seed: int):
    return resolve(
        {
            "name": "bench-reference",
            "seed": seed,
            "steps": steps,
            "markets": [
                {
                    "name": "REF",
                    "initial_price": 100.0,
                    "sigma_annual": 0.8,
                    "tick_size": 1e-6,
                    "base_quantum_exponent": -9,
                    "position_sigma_base": 1.0,
                    "margin": {
                        "model": "tiered",
                        "brackets": [
                            {"floor_usd": 0, "initial_margin": 0.1, "maintenance_margin": 0.05}
                        ],
                    },
                    "depth_usd": 1e20,
                    "min_depth_fraction": 1.0,
                    "half_spread": 0.0,
                    "funding_interval_ticks": 0,
                    "insurance_fund_usd": 1e9,
                    "insurance_cap_per_block_usd": 0.0,
                    "liquidation": {
                        "penalty": 0.01,
                        "keeper_share": 0.0,
                        "partial": False,
                        "min_notional_usd": 0.0,
                        "max_portion": 1.0,
                    },
                }
            ],
            "accounts": {
                "count": accounts,
                "cross_fraction": 1.0,
                "leverage_min": 2.0,
                "leverage_max": 20.0,
            },
            "keepers": {"count": 1, "latency_ticks": 0, "capacity_per_block": accounts},
            "oracle": {"delay_ticks": 0},
            "circuit_breaker": {"enabled": False},
            # The margin engine alone: no labelled-history sampling (bench_full_step.py has it).
            "history": {"sample_every_ticks": 0},
        }
    )


def bare_loop(path: np.ndarray, size: np.ndarray, collateral: np.ndarray) -> tuple[float, int]:
    """The same rules as plain numpy over float arrays; return (seconds, liquidations)."""
    size = size.copy()
    entry = 100.0
    fund = 1e9
    liquidations = 0
    t0 = time.perf_counter()
    for t in range(1, path.shape[0]):
        price = path[t]
        notional = np.abs(size) * price
        equity = collateral + size * (price - entry)
        liq = np.nonzero(equity < 0.05 * notional)[0]
        if liq.size:
            penalty = 0.01 * notional[liq]
            left = equity[liq] - penalty
            fund += penalty.sum() - np.minimum(left, 0.0).sum()
            size[liq] = 0.0
            liquidations += liq.size
    return time.perf_counter() - t0, liquidations


def engine_run(cfg) -> tuple[float, int, Simulation]:
    sim = Simulation(cfg)
    t0 = time.perf_counter()
    sim.run()
    seconds = time.perf_counter() - t0
    return seconds, int(sim.records["liquidations"].sum()), sim


def four_markets(depth_usd: float, fund_usd: float, fund_cap_usd: float) -> list[dict]:
    """BTC-, ETH-, SOL- and DOGE-like markets, positions of about $2,000 each."""
    return [
        {
            "name": f"M{k}",
            "initial_price": price,
            "sigma_annual": sigma,
            "position_sigma_base": 2_000.0 / price,
            "depth_usd": depth_usd,
            "insurance_fund_usd": fund_usd,
            "insurance_cap_per_block_usd": fund_cap_usd,
            "loss_resolution": "adl",
        }
        for k, (price, sigma) in enumerate(
            [(60_000.0, 0.8), (3_000.0, 1.0), (150.0, 1.3), (0.5, 1.6)]
        )
    ]


def multi_market_config(accounts: int, steps: int, seed: int):
    markets = four_markets(2e6, 50_000.0, 5_000.0)
    return resolve(
        {
            "name": "bench-4-markets",
            "seed": seed,
            "steps": steps,
            "markets": markets,
            "accounts": {
                "count": accounts,
                "cross_fraction": 1.0,
                "leverage_min": 2.0,
                "leverage_max": 20.0,
            },
            "keepers": {"count": 3, "latency_ticks": 1, "capacity_per_block": 50},
            "history": {"sample_every_ticks": 0},
            "shocks": [{"market": "M0", "tick": steps // 2, "log_return": -0.12, "over_ticks": 10}],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each side; the fastest counts (the machine is noisy)",
    )
    ap.add_argument(
        "--multi-steps",
        type=int,
        default=200,
        help="steps of the 4-market run (ms per step is reported)",
    )
    args = ap.parse_args()

    cfg = reference_config(args.accounts, args.steps, args.seed)
    runs = [engine_run(cfg) for _ in range(args.repeat)]
    eng_s = min(r[0] for r in runs)
    _, eng_liq, sim = runs[0]
    # The bare loop replays the engine's own starting snapshot and price path.
    led = sim.ledger
    init = Simulation(cfg)
    size = init.ledger.size[1:, 0] * 1e-9
    collateral = (init.ledger.quote[1:] + init.ledger.size[1:, 0] * init.market.mark_q[0]) / 1e6
    bare = [bare_loop(sim.index_path[:, 0], size, collateral) for _ in range(args.repeat)]
    bare_s = min(b[0] for b in bare)
    bare_liq = bare[0][1]
    work = args.accounts * args.steps
    print(
        f"reference: {args.accounts:,} accounts x {args.steps:,} steps, 1 market "
        f"(fastest of {args.repeat} runs each)"
    )
    print(
        f"  bare numpy loop : {work / bare_s:14,.0f} account-steps/s  ({bare_s:.2f} s, "
        f"{bare_liq:,} liquidations)"
    )
    print(
        f"  engine          : {work / eng_s:14,.0f} account-steps/s  ({eng_s:.2f} s, "
        f"{eng_liq:,} liquidations)"
    )
    print(f"  engine / bare   : {bare_s / eng_s:.2f}  (goal >= 0.5)")
    assert led.conservation_error() == 0

    mcfg = multi_market_config(args.accounts, args.multi_steps, args.seed)
    m_s, m_liq, msim = engine_run(mcfg)
    print(
        f"cross margin: {args.accounts:,} accounts x 4 markets, keepers (latency 1, 50/block), "
        f"capped insurance funds, ADL"
    )
    print(
        f"  {1000 * m_s / args.multi_steps:.1f} ms per step over {args.multi_steps} steps "
        f"({m_liq:,} liquidations, ADL notional "
        f"{msim.records['adl_notional'].sum():,.0f})"
    )


if __name__ == "__main__":
    main()
