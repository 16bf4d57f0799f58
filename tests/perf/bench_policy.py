"""What acting on forecasts costs in simulation, and how fast each forecaster path scores.

    python tests/perf/bench_policy.py [--model models/breach-forecaster] [--scenario cascade]
        [--accounts N] [--registry models:/breach-forecaster@champion] [--no-rest]

Prints, on the same scenario and seed (each run 3 times, the fastest counts):

1. wall time of the ``predictive`` policy (the model, compiled) against ``static``
   (goal <= 1.5x), and of ``predictive`` with ``Booster.predict``;
2. scoring throughput of the compiled trees against ``Booster.predict`` on the feature rows
   the predictive run scored (goal >= 3x, identical outputs);
3. the latency of one REST call for a 1,000-account batch against ``predliq serve`` (median and
   95th percentile of 50 calls), started here on a free port.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from engine.config import load_config
from engine.sim import Simulation
from predictor.compiled import compile_booster
from predictor.model import BreachForecaster
from predictor.serving import ModelForecaster, RemoteForecaster

ROOT = Path(__file__).resolve().parents[2]


class Keeping(ModelForecaster):
    """A model forecaster that keeps the feature rows it scored (for the throughput test)."""

    def __init__(self, model, **kw):
        super().__init__(model, **kw)
        self.rows: list[np.ndarray] = []

    def predict_raw(self, X):
        self.rows.append(X)
        return super().predict_raw(X)


def timed_run(cfg, forecaster=None) -> tuple[float, Simulation]:
    t0 = time.perf_counter()
    sim = Simulation(cfg, forecaster=forecaster)
    sim.run()
    return time.perf_counter() - t0, sim


def best_of(n, fn):
    results = [fn() for _ in range(n)]
    return min(results, key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "breach-forecaster"))
    ap.add_argument("--registry", default="models:/breach-forecaster@champion")
    ap.add_argument("--scenario", default="cascade")
    ap.add_argument("--accounts", type=int, default=0, help="override the scenario's count")
    ap.add_argument("--no-rest", action="store_true")
    args = ap.parse_args()
    model = BreachForecaster.load(args.model)
    config = ROOT / "configs" / "scenarios" / f"{args.scenario}.toml"
    base = ["seed=0", f"policy.horizon_minutes={model.horizon_minutes}"]
    if args.accounts:
        base.append(f"accounts.count={args.accounts}")
    static_cfg = load_config(config, base)
    pred_cfg = load_config(config, [*base, 'policy.name="predictive"'])
    compile_booster(model.booster_)  # build the library once, outside the timings

    t_static, s_static = best_of(3, lambda: timed_run(static_cfg))
    t_pred, s_pred = best_of(3, lambda: timed_run(pred_cfg, ModelForecaster(model)))
    t_slow, _ = best_of(3, lambda: timed_run(pred_cfg, ModelForecaster(model, compiled=False)))
    # Knob 0: the same forecasts, no action — the cost of forecasting alone (the path is the
    # static run's, so the difference is not the policy's extra orders and liquidations).
    quiet_cfg = load_config(config, [*base, 'policy.name="predictive"', "policy.knob=0"])
    t_quiet, _ = best_of(3, lambda: timed_run(quiet_cfg, ModelForecaster(model)))
    # The budget allocation at the evaluation's reference (30 actions a forecast): breach and
    # loss heads scored for every account of the band.
    budget_cfg = load_config(
        config, [*base, 'policy.name="predictive"', 'policy.allocation="budget"', "policy.knob=30"]
    )
    t_budget, s_budget = best_of(3, lambda: timed_run(budget_cfg, ModelForecaster(model)))
    n = s_static.ledger.size.shape[0] - 1
    print(f"{args.scenario}, {n:,} accounts x {s_static.t:,} blocks, seed 0")
    print(f"  static:                      {t_static:6.2f} s")
    scored = s_pred.summary()["policy_scored_rows"]
    print(
        f"  predictive (compiled):       {t_pred:6.2f} s  = {t_pred / t_static:.2f} x static "
        f"(goal <= 1.5); {scored:,} account forecasts"
    )
    print(f"  predictive (Booster.predict): {t_slow:5.2f} s  = {t_slow / t_static:.2f} x static")
    print(
        f"  forecasts only (knob 0):     {t_quiet:6.2f} s  = {t_quiet / t_static:.2f} x static "
        "(the same forecasting on the static run's path, no action)"
    )
    budget_scored = s_budget.summary()["policy_scored_rows"]
    print(
        f"  predictive, budget of 30:    {t_budget:6.2f} s  = {t_budget / t_static:.2f} x static "
        f"(goal <= 1.5); {budget_scored:,} breach and loss forecasts"
    )

    keeping = Keeping(model)
    timed_run(pred_cfg, keeping)
    calls = [x for x in keeping.rows if x.shape[0]]
    X = np.concatenate(calls)
    fast = compile_booster(model.booster_)
    assert fast is not None, "compiling is unavailable here"
    print(f"scoring the {X.shape[0]:,} feature rows of that run ({len(calls)} forecasts):")
    for label, batches in (("as the engine calls", calls), ("in one batch", [X])):
        t_fast, p_fast = best_of(3, lambda b=batches: _timed(fast.predict, b))
        t_slow, p_slow = best_of(3, lambda b=batches: _timed(model.booster_.predict, b))
        diff = float(np.abs(p_fast - p_slow).max())
        print(
            f"  {label:<20} compiled {X.shape[0] / t_fast:10,.0f} rows/s, Booster.predict "
            f"{X.shape[0] / t_slow:10,.0f} rows/s: {t_slow / t_fast:.2f} x (goal >= 3), "
            f"largest difference {diff:.1e}"
        )
    if not args.no_rest:
        rest_latency(args.registry, X)


def _timed(fn, batches):
    t0 = time.perf_counter()
    out = np.concatenate([fn(x) for x in batches])
    return time.perf_counter() - t0, out


def rest_latency(uri: str, X: np.ndarray) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    predliq = Path(sys.executable).parent / "predliq"
    server = subprocess.Popen(
        [str(predliq), "serve", "--model", uri, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(f"REST: predliq serve did not come up for {uri}")
                    return
                time.sleep(0.5)
        remote = RemoteForecaster(url, horizon_minutes=5.0, timeout_s=30)
        batch = X[:1000]
        remote.score(batch)  # warm up
        latencies = []
        for _ in range(50):
            t0 = time.perf_counter()
            remote.score(batch)
            latencies.append(time.perf_counter() - t0)
        ms = np.array(latencies) * 1000
        print(
            f"REST ({uri}): one call for 1,000 accounts takes {np.median(ms):.1f} ms median, "
            f"{np.percentile(ms, 95):.1f} ms p95 (50 calls)"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
