"""Benchmark of predliq recommend's search: trials per minute on 1 and 2 workers (not collected
by pytest).

    python tests/perf/bench_recommend.py --accounts 3000 --trials 12 --seeds 0-3

Runs the same search (the cascade scenario at ``--accounts`` traders, bracket-0 maintenance
margin and the insurance fund searched, ``es99_bad_debt`` budgeted) once per ``--workers``
value, each into a fresh study, and times the search phase alone (from the first trial asked
to the last told; confirmation excluded). Prints trials per minute, paths per minute and the
ratio against the first ``--workers`` value measured in the same run, and checks that every
worker count made the same study (same trials, same figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipelines.cluster import map_tasks  # noqa: E402
from pipelines.evaluate import scenario_configs  # noqa: E402
from pipelines.recommend import (  # noqa: E402
    OUTCOMES,
    Setting,
    parse_budget,
    parse_space,
    run_recommend,
)
from pipelines.shipped import scenarios_place  # noqa: E402
from pipelines.simulate import parse_seeds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seeds", default="0-3")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget", default="es99_bad_debt<=20000")
    args = ap.parse_args()
    setting = Setting(
        tuple(scenario_configs([scenarios_place("cascade")])),
        (f"accounts.count={args.accounts}",),
        None,
    )
    dims = [
        parse_space("markets.BTC-PERP.margin.brackets.0.maintenance_margin=0.005:0.019"),
        parse_space("markets.BTC-PERP.insurance_fund_usd=1e4:1e6:log"),
    ]
    budgets = [parse_budget(args.budget, OUTCOMES)]
    seeds = parse_seeds(args.seeds)
    timings, studies = {}, {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="predliq-bench-recommend-") as tmp:
            marks: dict[str, float] = {}

            def progress(message: str, marks=marks) -> None:
                now = time.perf_counter()
                if message.startswith("trial ") and "first" not in marks:
                    marks["first"] = now
                if message.startswith("confirming"):
                    marks["searched"] = now

            started = time.perf_counter()

            def mapper(fn, items, workers=workers):
                return map_tasks(fn, items, workers, None)

            evidence = run_recommend(
                setting,
                dims,
                budgets,
                "all_in",
                seeds,
                [1000, 1001],
                Path(tmp) / "out",
                trials=args.trials,
                top=1,
                batch=2,
                mapper=mapper,
                tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                sweep=False,
                progress=progress,
            )
            search_s = marks["searched"] - started
            timings[workers] = search_s
            studies[workers] = [(p["params"], p["objective"]) for p in evidence["pareto"]]
            paths = args.trials * len(seeds)
            print(
                f"workers {workers}: {args.trials} trials x {len(seeds)} paths in {search_s:.1f} s"
                f" (cluster start included): {60 * args.trials / search_s:.2f} trials/min, "
                f"{60 * paths / search_s:.1f} paths/min; recommended "
                + ", ".join(f"{k}={v:.4g}" for k, v in evidence["recommendation"]["params"].items())
                + f" (feasible: {evidence['feasible']})"
            )
    base = args.workers[0]
    for workers in args.workers[1:]:
        print(f"speed-up {workers} vs {base} workers: {timings[base] / timings[workers]:.2f} x")
        print(f"same study on {workers} and {base} workers: {studies[workers] == studies[base]}")


if __name__ == "__main__":
    main()
