"""Which venue rule moves a crash's outcome most: the built-in stress scenario under each venue
preset, then again with one of the preset's over-block rules turned off at a time.

    python tests/engine/venue_ablation.py [--out ablation.json] [--seed 7] [--workers 2]
        [--set accounts.opening_margin=initial ...]

prints one row per run (liquidations, bad debt, the negative equity of traders still below
maintenance margin at the end — loss not yet realized as bad debt —, insurance fund left, ADL
and socialized notional, the vault's PnL) and, per preset, the rule whose removal moved the
loss most: bad debt plus that deficit left at the end. A rule
is "turned off" by setting its keys to the generic preset's values on every market (the
overrides are in RULES; the open-interest scaling of dYdX's initial margin, a margin rule
rather than an over-block one, is off when the caps sit far above any open interest). Each
run is the demo's stress run (``predliq demo --stress-only --set venue=V --set KEY=VALUE
...``), one path: the table shows how the rules differ on this crash, not a distribution. Not
collected by pytest (about two minutes on two workers). ``--set KEY=VALUE`` (repeatable) is
applied to every run, e.g. ``accounts.opening_margin=initial`` for a book every account of which
could have opened on each venue.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MARKETS = (0, 1)
"""The stress scenario's markets (BTC-PERP, ETH-PERP): every override is set on both."""

RULES: dict[str, dict[str, dict[str, str]]] = {
    "dydx_v4": {
        "per-block liquidation limit ($100k)": {"liquidation.max_notional_per_block_usd": "0"},
        "per-block insurance limit ($1M)": {"liquidation.max_insurance_lost_per_block_usd": "0"},
        "10% position portion per liquidation": {"liquidation.max_portion": "1.0"},
        "initial margin scaled by open interest": {
            "margin.oi_lower_cap_usd": "1e11",
            "margin.oi_upper_cap_usd": "1e12",
        },
        "deleveraging walk": {"adl_order": "'ranked'", "adl_max_candidates": "0"},
        "funding on the 8-hour rate": {"funding_rate_hours": "0", "funding_clamp_on": "'payment'"},
    },
    "drift_v2": {
        "stays in liquidation to the buffer": {"liquidation.stay_until_buffer": "false"},
        "insurance capped by contract tier": {"contract_tier": "''"},
        "fee pool pays before socialization": {"fee_pool_absorbs": "false"},
    },
    "hyperliquid": {
        "liquidator vault below 2/3 MM": {"liquidation.backstop_ratio": "0"},
        "30 s cooldown between 20% orders": {"liquidation.cooldown_ms": "0"},
        "ADL ranked at the previous oracle": {"adl_rank_price": "'mark'"},
        "median-of-three mark": {"mark.model": "'book'"},
    },
    "binance_um": {
        "mark = index + basis average": {"mark.model": "'book'"},
    },
}
"""Per preset: rule -> the keys (under each market) that turn it off, as TOML values."""


def _jobs(seed: int, common: tuple[str, ...] = ()) -> list[tuple[str, str, tuple[str, ...]]]:
    jobs = [("generic", "all rules", (f"seed={seed}", *common))]
    for venue, rules in RULES.items():
        base = (f"seed={seed}", f"venue={venue}", *common)
        jobs.append((venue, "all rules", base))
        for rule, keys in rules.items():
            over = tuple(
                f"markets.{k}.{key}={value}" for k in MARKETS for key, value in keys.items()
            )
            jobs.append((venue, f"without: {rule}", base + over))
    return jobs


def _run(job: tuple[str, str, tuple[str, ...]]) -> dict[str, object]:
    from pipelines.demo import demo_config
    from pipelines.simulate import run

    venue, label, overrides = job
    sim = run(demo_config(overrides), show_progress=False)
    s = sim.summary()
    return {
        "venue": venue,
        "run": label,
        "liquidations": int(s["liquidations"]),
        "bad_debt": float(s["bad_debt"]),
        "deficit_at_end": float(s["deficit_at_end"]),
        "below_maintenance_at_end": int(s["below_maintenance_at_end"]),
        "insurance_fund_end": float(s["insurance_fund_end"]),
        "adl_notional": float(s["adl_notional"]),
        "socialized": float(s["socialized_loss"]),
        "vault_pnl": float(s.get("vault_pnl", 0.0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="the stress scenario's seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override applied to every run (repeatable)",
    )
    args = parser.parse_args()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_run, _jobs(args.seed, tuple(args.overrides))))
    head = f"{'preset':12} {'run':46} {'liqs':>7} {'bad debt':>12} {'left (accts)':>20} "
    print(head + f"{'IF end':>10} {'ADL':>12} {'socialized':>12} {'vault PnL':>12}")
    for r in rows:
        left = f"{r['deficit_at_end']:,.0f} ({r['below_maintenance_at_end']:,})"
        print(
            f"{r['venue']:12} {r['run']:46} {r['liquidations']:>7,} {r['bad_debt']:>12,.0f} "
            f"{left:>20} {r['insurance_fund_end']:>10,.0f} {r['adl_notional']:>12,.0f} "
            f"{r['socialized']:>12,.0f} {r['vault_pnl']:>12,.0f}"
        )
    print()

    def loss(r: dict[str, object]) -> float:
        return float(r["bad_debt"]) + float(r["deficit_at_end"])

    for venue in RULES:
        base = next(r for r in rows if r["venue"] == venue and r["run"] == "all rules")
        off = [r for r in rows if r["venue"] == venue and r["run"] != "all rules"]
        top = max(off, key=lambda r: abs(loss(r) - loss(base)))
        print(
            f"{venue}: bad debt + deficit left moves most {top['run']} "
            f"({loss(top) - loss(base):+,.0f})"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
