"""predliq recommend on a scenario whose answer is known in advance.

A one-market book with no book impact, no fees, no penalty, no oracle or keeper delay and a
nearly still index, hit by a crash of -2% (log) per block for 10 blocks: an account in breach is
closed at the mark in the block it breaches, having lost at most one block's move since it last
held maintenance margin, so it leaves bad debt only when its maintenance margin is below that
move. The smallest maintenance margin without bad debt is therefore 1 - exp(-0.02) = 1.980%,
and margin held grows with it: with the cost of capital as the objective, the recommendation
must be that threshold (within the search's tolerance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main

GAP = """
name = "gap"
steps = 30
tick_ms = 60_000
[accounts]
count = 120
order_rate = 0.0
leverage_min = 2.0
leverage_max = 40.0
[keepers]
latency_ticks = 0
capacity_per_block = 10_000
[oracle]
delay_ticks = 0
[circuit_breaker]
enabled = false
[[markets]]
name = "BTC-PERP"
initial_price = 30000.0
sigma_annual = 0.01
position_sigma_base = 0.5
depth_usd = 1e15
half_spread = 0.0
taker_fee = 0.0
funding_interval_ticks = 0
insurance_fund_usd = 100_000.0
insurance_cap_per_block_usd = 0.0
[markets.margin]
model = "tiered"
brackets = [{ floor_usd = 0, initial_margin = 0.5, maintenance_margin = 0.03 }]
[markets.liquidation]
penalty = 0.0
partial = false
[[shocks]]
market = "BTC-PERP"
tick = 5
log_return = -0.2
over_ticks = 10
"""
MM = "markets.BTC-PERP.margin.brackets.0.maintenance_margin"
THRESHOLD = 1 - math.exp(-0.02)
TOLERANCE = 0.003
"""How far above the threshold a recommendation may land after 16 trials on [0.5%, 6%]."""


@pytest.fixture
def gap(tmp_path: Path) -> Path:
    path = tmp_path / "gap.toml"
    path.write_text(GAP)
    return path


def _recommend(gap: Path, out: Path, *extra: str, budget: str = "max_bad_debt<=0"):
    args = [
        "recommend",
        *("--scenarios", str(gap), "--seeds", "0-2", "--confirm-seeds", "10-13"),
        *("--budget", budget, "--objective", "capital"),
        *("--out", str(out), "--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}"),
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def _bad_debt(gap: Path, mm: float, seed: int, *overlay: str) -> float:
    from engine.config import load_config
    from engine.outcomes import run_outcomes
    from engine.sim import Simulation

    cfg = load_config(gap, (*overlay, f"{MM}={mm!r}", f"seed={seed}"))
    sim = Simulation(cfg)
    sim.run()
    return run_outcomes(sim)["bad_debt"]


def test_the_smallest_maintenance_margin_without_bad_debt_is_found(gap: Path, tmp_path: Path):
    # The answer, checked on the engine first: a little below the threshold leaves bad debt on
    # some search seed, the threshold itself on none.
    assert max(_bad_debt(gap, THRESHOLD - 0.001, s) for s in range(3)) > 0
    assert max(_bad_debt(gap, THRESHOLD + 1e-5, s) for s in range(3)) == 0
    out = tmp_path / "rec"
    code, text = _recommend(gap, out, "--space", f"{MM}=0.005:0.06", "--trials", "16")
    assert code == 0, text
    evidence = json.loads((out / "recommendation.json").read_text())
    best = evidence["recommendation"]
    assert evidence["feasible"] is True
    assert THRESHOLD <= best["params"][MM] <= THRESHOLD + TOLERANCE, best["params"]
    confirmed = best["confirmed"]
    assert confirmed["paths"] == 4 and confirmed["holds"]
    assert confirmed["metrics"]["max_bad_debt"]["ci95"] == [0.0, 0.0]
    # Every trial is on the Pareto chart; the cheapest feasible one is on the front.
    points = evidence["pareto"]
    assert len(points) == 16
    assert any(p["front"] and p["feasible"] for p in points)
    assert any(not p["feasible"] for p in points)  # the search explored below the threshold
    # The sweep moves the key a tenth of its range either way: down crosses the threshold.
    sweep = {round(s["value"], 6): s for s in evidence["sensitivity"]}
    below = min(sweep)
    assert below < THRESHOLD and sweep[below]["metrics"]["max_bad_debt"] > 0
    assert "Pareto front" in (out / "report.html").read_text()
    # The overlay is a config a simulation takes; on a fresh seed it leaves no bad debt.
    overlay = (out / "recommendation.toml").read_text()
    assert "[set]" in overlay and MM in overlay
    runs = tmp_path / "runs"
    r = CliRunner().invoke(
        main,
        ["simulate", "--config", str(gap), "--config", str(out / "recommendation.toml")]
        + ["--seed", "40", "--out", str(runs)],
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads(next(runs.glob("scenario=gap/seed=40/manifest.json")).read_text())
    bracket = manifest["config"]["markets"][0]["margin"]["brackets"][0]
    assert bracket["maintenance_margin"] == best["params"][MM]
    # Each trial is an MLflow child run of the command's run.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = text.split("logged recommend run ")[1].split()[0]
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(children) == 16
    # A rerun with more trials resumes the study: only the new trials run.
    code, text = _recommend(gap, out, "--space", f"{MM}=0.005:0.06", "--trials", "18")
    assert code == 0, text
    assert "(16 already in the study)" in text and text.count("trial 1") >= 1
    assert "trial 17:" in text and "trial 3:" not in text


def test_an_infeasible_budget_is_reported_with_the_closest_candidate(gap: Path, tmp_path: Path):
    out = tmp_path / "rec"
    code, text = _recommend(
        gap, out, "--space", f"{MM}=0.005:0.015", "--trials", "6", "--no-sensitivity"
    )
    assert code == 3, text
    assert "infeasible: no candidate keeps every budget" in text
    evidence = json.loads((out / "recommendation.json").read_text())
    assert evidence["feasible"] is False
    closest = evidence["recommendation"]
    # The closest is the confirmed candidate with the least bad debt at its interval's far end.
    far = {
        c["trial"]: c["confirmed"]["metrics"]["max_bad_debt"]["ci95"][1]
        for c in evidence["candidates"]
    }
    assert far[closest["trial"]] == min(far.values())
    assert "INFEASIBLE" in (out / "recommendation.toml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "markets.BTC-PERP.margin.nosuch=0:1"], "--space markets.BTC-PERP.margin"),
        (["--space", f"{MM}=0.05:0.01"], "the range needs LOW < HIGH"),
        (["--space", "policy=static,nosuch"], "unknown policy 'nosuch'"),
        (["--space", f"{MM}=0.01:0.05", "--budget", "es99_bad_debt<250000"], "--budget must"),
        (["--space", f"{MM}=0.01:0.05", "--budget", "es99_nosuch<=1"], "unknown outcome"),
        (["--space", f"{MM}=0.01:0.05", "--confirm-seeds", "2-4"], "must be fresh: 2"),
        (["--space", "policy=static,predictive"], "a predictive policy needs --model"),
    ],
)
def test_a_malformed_space_or_budget_is_one_line_exit_2(gap, tmp_path, args, message):
    base = [
        "recommend",
        *("--scenarios", str(gap), "--seeds", "0-2", "--confirm-seeds", "10-13"),
        *("--out", str(tmp_path / "rec"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"),
    ]
    if "--budget" not in args:
        base += ["--budget", "max_bad_debt<=0"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "rec").exists()


def test_the_study_depends_on_its_seed_not_on_the_workers(gap: Path, tmp_path: Path):
    """Trials are asked in batches and told in the order asked: one local process and a
    two-worker Dask cluster make the same study."""
    studies = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}" / "rec"
        out.parent.mkdir()
        code, text = _recommend(
            gap,
            out,
            *("--space", f"{MM}=0.005:0.06", "--trials", "4", "--top", "1"),
            *("--workers", workers, "--no-sensitivity"),
        )
        assert code == 0, text
        evidence = json.loads((out / "recommendation.json").read_text())
        studies[workers] = [(p["params"], p["objective"]) for p in evidence["pareto"]]
    assert studies["1"] == studies["2"]


def test_the_policy_can_be_one_of_the_choices(gap: Path, tmp_path: Path):
    """policy=A,B searches the policy with its knob; the overlay sets the engine's policy."""
    out = tmp_path / "rec"
    code, text = _recommend(
        gap,
        out,
        *("--space", "policy=static,vol_scaled", "--space", "policy.knob=1:3"),
        *("--trials", "4", "--top", "2", "--no-sensitivity"),
    )
    assert code == 0, text
    evidence = json.loads((out / "recommendation.json").read_text())
    best = evidence["recommendation"]["params"]
    assert best["policy"] in ("static", "vol_scaled") and 1 <= best["policy.knob"] <= 3
    assert evidence["overlay"] == {
        "policy.name": best["policy"],
        "policy.knob": best["policy.knob"],
    }
    tried = {p["params"]["policy"] for p in evidence["pareto"]}
    assert tried <= {"static", "vol_scaled"}


def test_a_probability_gets_an_exact_interval_not_a_bootstrap_of_no_events():
    """The fund never ran dry on 8 paths: the bootstrap would say [0, 0]; the exact binomial
    interval reaches 36.9%, so a 25% budget is not yet shown to hold (16 paths: 20.6%)."""
    from pipelines.recommend import OUTCOMES, intervals, parse_budget

    budget = parse_budget("mean_if_exhausted<=0.25", OUTCOMES)
    for paths, holds, high in ((8, False, 0.3694), (16, True, 0.2059)):
        rows = [{"if_exhausted": 0.0, "all_in_cost": 0.01, "capital_cost": 0.01, "fund_cost": 0.0}]
        rows = rows * paths
        figures = intervals(rows, [budget], "all_in")
        m = figures["metrics"]["mean_if_exhausted"]
        assert m["ci95"][0] == 0.0 and m["ci95"][1] == pytest.approx(high, abs=1e-4)
        assert m["holds"] is holds and figures["holds"] is holds
        assert m["interval"].startswith("exact binomial")


def test_a_budget_can_bound_what_paths_leave_unliquidated():
    """``max_deficit_at_end<=0`` (no path ends with negative equity still unliquidated) is a
    budget like any other: one path that leaves some breaks it."""
    from pipelines.recommend import OUTCOMES, parse_budget, summarize

    budget = parse_budget("max_deficit_at_end<=0", OUTCOMES)
    path = {"deficit_at_end": 0.0, "all_in_cost": 0.01, "capital_cost": 0.01, "fund_cost": 0.0}
    clean = summarize([path, path], [budget], "all_in")
    assert clean["metrics"]["max_deficit_at_end"] == 0.0 and clean["violations"] == [0.0]
    left = summarize([path, {**path, "deficit_at_end": 5_000.0}], [budget], "all_in")
    assert left["metrics"]["max_deficit_at_end"] == 5_000.0
    assert left["violations"][0] > 0
