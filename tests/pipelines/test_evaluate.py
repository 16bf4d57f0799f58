"""`predliq evaluate`: paired runs, frontiers, matched-cost headline, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.evaluate import (
    DEFAULT_KNOBS,
    FORECAST_ACCOUNT_FRACTION,
    FORECAST_FULL_SHARE_PATHS,
    forecast_fraction,
    frontier,
    headline,
    kupiec,
    tail_mean,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "accounts.count=400", "--set", "steps=160"]
REPLAY = ROOT.parent / "shared" / "data" / "market" / "BTCUSDT-PERP_1m_2020-03-12.csv.gz"


def _synthetic(n_paths: int = 30, seed: int = 0) -> pd.DataFrame:
    """Results where predictive's bad debt falls linearly with capital cost (an efficient
    frontier already) and static sits above that line by 10 per path."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_paths):
        noise = rng.normal(0, 1)
        for knob, cost in zip((0.0, 1.0, 2.0), (1.0, 2.0, 3.0), strict=True):
            rows.append(("predictive", knob, cost, 100 - 10 * cost + noise, p))
        rows.append(("static", 1.0, 1.5, 95 + noise, p))  # 10 above the line (85 at 1.5)
        rows.append(("vol_scaled", 3.0, 9.0, 50 + noise, p))  # dearer than every predictive knob
        rows.append(("oi_scaled", 1.0, 0.5, 90 + noise, p))  # cheaper than any predictive knob
    frame = pd.DataFrame(rows, columns=["policy", "knob", "capital_cost", "bad_debt", "seed"])
    frame["scenario"] = "s"
    frame["coverage_exceedances"] = 0.0
    for m in ("liquidations", "liquidated_notional", "cascade_size", "if_drawdown_max"):
        frame[m] = 0.0
    for m in ("if_exhausted", "adl_notional", "liquidation_slippage", "trader_cost"):
        frame[m] = 0.0
    for m in ("derisked_notional", "derisked_needless", "fallbacks", "coverage_windows"):
        frame[m] = 0.0
    return frame


def test_headline_matches_costs_on_both_efficient_frontiers():
    h = headline(_synthetic(), n_boot=300)
    # Static's setting costs 1.5, predictive's reference knob (1) costs 2: they meet at 2, where
    # predictive's frontier reads 80 and static's best at that cost or less is its 95.
    mean = h["static"]["mean"]
    assert h["static"]["capital_cost"] == pytest.approx(2.0)
    assert mean["reduction"] == pytest.approx(15.0)
    lo, hi = mean["ci95"]
    assert lo <= 15.0 <= hi and hi - lo < 1e-9  # paired: the noise cancels path by path
    # Dearer than every predictive knob: predictive offers its best (70) against 50.
    assert h["vol_scaled"]["capital_cost"] == pytest.approx(9.0)
    assert h["vol_scaled"]["mean"]["reduction"] == pytest.approx(-20.0)
    # Cheaper than predictive can be: compared at predictive's cost, 90 against 80.
    assert h["oi_scaled"]["mean"]["reduction"] == pytest.approx(10.0)
    assert "analytic" not in h


def test_frontier_reports_tail_statistics_per_knob():
    f = frontier(_synthetic())
    assert [p["knob"] for p in f["predictive"]] == [0.0, 1.0, 2.0]
    point = f["predictive"][0]
    assert point["paths"] == 30 and point["bad_debt_es99"] >= point["bad_debt_var95"]
    assert tail_mean(np.arange(100.0), 0.99) == 99.0


def test_forecast_scoring_share_keeps_large_evaluations_within_the_drivers_memory():
    # Up to the threshold every path scores the usual share; beyond, paths x share stays put.
    assert forecast_fraction(20) == forecast_fraction(FORECAST_FULL_SHARE_PATHS)
    assert forecast_fraction(20) == FORECAST_ACCOUNT_FRACTION
    for paths in (101, 1_000, 10_000):
        assert forecast_fraction(paths) < FORECAST_ACCOUNT_FRACTION
        budget = FORECAST_FULL_SHARE_PATHS * FORECAST_ACCOUNT_FRACTION
        assert paths * forecast_fraction(paths) == pytest.approx(budget)


def test_kupiec_accepts_the_promised_rate_and_rejects_a_worse_one():
    assert kupiec(1000, 10)["p_value"] == pytest.approx(1.0)  # exactly 1%
    assert kupiec(1000, 30)["p_value"] < 1e-5  # 3% of periods broke a 99% margin
    assert 0.01 < kupiec(1000, 15)["p_value"] < 0.2
    none = kupiec(500, 0)
    assert none["rate"] == 0 and 0 < none["p_value"] < 0.05  # too few breaks is evidence too


@pytest.fixture(scope="module")
def evaluation(trained_model, tmp_path_factory):
    uri, _ = trained_model
    out = tmp_path_factory.mktemp("eval") / "report"
    args = [
        "evaluate",
        *("--model", "models:/breach-forecaster@champion", "--tracking-uri", uri),
        *("--scenarios", str(ROOT / "configs" / "eval")),
        *("--scenarios", str(ROOT / "configs" / "scenarios" / "cascade.toml")),
        *("--seeds", "10-11", "--out", str(out), "--bootstrap", "200", *SMALL),
        *("--replays", str(REPLAY)),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.output, uri


def test_evaluation_writes_a_complete_summary(evaluation):
    out, output, _ = evaluation
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"headline", "frontier", "lineage"}
    assert set(summary["frontier"]) == set(DEFAULT_KNOBS)
    for policy, knobs in DEFAULT_KNOBS.items():
        assert [p["knob"] for p in summary["frontier"][policy]] == list(knobs)
        point = summary["frontier"][policy][0]
        for key in ("capital_cost", "bad_debt_mean", "bad_debt_es99", "liquidated_notional"):
            assert np.isfinite(point[key])
        assert point["paths"] == 4
    lineage = summary["lineage"]
    assert lineage["evaluation_seeds"] == [10, 11] and lineage["training_seeds"] == [0, 1, 2, 3]
    assert lineage["model_version"] == 1
    assert set(lineage["scenarios"]) == {"short_squeeze", "cascade"}
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 4 * sum(len(k) for k in DEFAULT_KNOBS.values())
    assert "vs baseline" in output
    cover = summary["coverage"]["static"]["1"]
    assert cover["windows"] > 0 and 0 <= cover["rate"] <= 1 and 0 <= cover["p_value"] <= 1
    forecast = summary["forecast"]
    assert forecast["rows"] > 0 and 0 <= forecast["prevalence"] <= 1
    for name in ("model", "analytic"):
        assert 0 <= forecast[name]["brier"] <= 1 and 0 <= forecast[name]["ece"] <= 1
        assert forecast[name]["pr_auc"] is None or 0 <= forecast[name]["pr_auc"] <= 1
    replay = summary["replays"]["BTCUSDT-PERP_1m_2020-03-12"]
    assert set(replay) == {"static", "vol_scaled", "oi_scaled", "analytic", "predictive"}
    assert all(np.isfinite(v["bad_debt"]) and v["liquidations"] >= 0 for v in replay.values())


def test_every_policy_faces_the_same_paths(evaluation):
    out, _, _ = evaluation
    runs = pd.read_parquet(out / "runs.parquet").set_index(["scenario", "seed"])
    static = runs[(runs["policy"] == "static") & (runs["knob"] == 1.0)]
    quiet = runs[(runs["policy"] == "predictive") & (runs["knob"] == 0.0)]
    # Forecasting without acting is the reactive venue on the same path: same outcomes.
    for col in ("bad_debt", "liquidations", "liquidated_notional", "capital_cost"):
        assert (static[col] == quiet[col].reindex(static.index)).all(), col


def test_the_evaluation_is_logged_as_its_own_run(evaluation):
    from mlflow.tracking import MlflowClient

    out, output, uri = evaluation
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("breach-forecaster-evaluation")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id in output
    assert run.data.params["evaluation_seeds"] == "10-11 (2)"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "runs.parquet", "replays.parquet"} <= artifacts


def test_an_unreachable_tracking_uri_is_refused_before_any_run(tmp_path):
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    _refused(
        ["--tracking-uri", missing, "--scenarios", str(ROOT / "configs" / "eval")]
        + ["--seeds", "10"],
        "unreachable",
        tmp_path,
    )


def _refused(args: list[str], fragment: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["evaluate", *args, "--out", str(out), *SMALL])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()


def test_training_seeds_are_refused(trained_model, tmp_path):
    uri, _ = trained_model
    _refused(
        ["--tracking-uri", uri, "--scenarios", str(ROOT / "configs" / "eval"), "--seeds", "3-5"],
        "were used to train the model",
        tmp_path,
    )


def test_only_seen_families_are_refused(trained_model, tmp_path):
    uri, _ = trained_model
    cascade = str(ROOT / "configs" / "scenarios" / "cascade.toml")
    _refused(
        ["--tracking-uri", uri, "--scenarios", cascade, "--seeds", "10"],
        "add at least one family",
        tmp_path,
    )


def test_an_empty_scenario_folder_is_refused(trained_model, tmp_path):
    uri, _ = trained_model
    (tmp_path / "empty").mkdir()
    _refused(
        ["--tracking-uri", uri, "--scenarios", str(tmp_path / "empty"), "--seeds", "10"],
        "holds no scenario configs",
        tmp_path,
    )


def test_a_model_uri_that_does_not_resolve_is_refused(trained_model, tmp_path):
    uri, _ = trained_model
    _refused(
        ["--tracking-uri", uri, "--model", "models:/missing@champion"]
        + ["--scenarios", str(ROOT / "configs" / "eval"), "--seeds", "10"],
        "missing",
        tmp_path,
    )


def test_a_malformed_replay_file_is_refused(trained_model, tmp_path):
    import gzip

    uri, _ = trained_model
    lines = gzip.open(REPLAY, "rt").read().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("high")] = "-1"  # a negative high on line 6
    bad = tmp_path / "BTCUSDT-PERP_1m_broken.csv"
    bad.write_text("\n".join([*lines[:5], ",".join(row), *lines[6:]]) + "\n")
    _refused(
        ["--tracking-uri", uri, "--scenarios", str(ROOT / "configs" / "eval"), "--seeds", "10"]
        + ["--replays", str(bad)],
        "line 6",
        tmp_path,
    )


def _chromium() -> str | None:
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI"):
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
    return found


def test_the_report_opens_in_a_browser_with_every_figure(evaluation):
    import re
    import subprocess

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed here")
    out, _, _ = evaluation
    page = (out / "report.html").resolve()
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    loaded = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    assert loaded is not None, dom[-500:]
    shown, total = int(loaded.group(1)), int(loaded.group(2))
    assert total == 4 and shown == total  # frontiers, distributions, one replay, reliability
    assert 'id="headline"' in dom and "static" in dom and "Caveats" in dom
