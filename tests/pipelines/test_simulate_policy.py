"""`predliq simulate --policy`: each policy runs from the command line; bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main

CASCADE = str(Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "cascade.toml")
SMALL = ["--set", "accounts.count=800", "--set", "steps=300"]


def _simulate(out: Path, *args: str):
    return CliRunner().invoke(
        main, ["simulate", "--config", CASCADE, *SMALL, "--out", str(out), *args]
    )


def _summary(out: Path) -> dict:
    return json.loads((out / "scenario=cascade" / "seed=0" / "summary.json").read_text())


@pytest.mark.parametrize(
    ("policy", "knob"),
    [
        ("static", "1.5"),
        ("vol_scaled", "3"),
        ("oi_scaled", "2"),
        ("analytic", "2"),
        ("oracle", "1"),
    ],
)
def test_every_policy_runs_and_conserves_value(tmp_path, policy, knob):
    result = _simulate(tmp_path, "--policy", policy, "--knob", knob)
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["conservation_error"] == 0
    table = pd.read_parquet(tmp_path / "scenario=cascade" / "seed=0" / "policy.parquet")
    assert len(table) == 301
    manifest = json.loads((tmp_path / "scenario=cascade" / "seed=0" / "manifest.json").read_text())
    engine_name = "predictive" if policy in ("analytic", "oracle") else policy
    assert manifest["config"]["policy"]["name"] == engine_name
    if engine_name == "predictive":
        assert s["policy_scored_rows"] > 0 and s["policy_fallbacks"] == 0


def test_predictive_policy_serves_the_registered_champion(tmp_path, trained_model):
    uri, export = trained_model
    by_alias = _simulate(
        tmp_path / "alias",
        "--policy",
        "predictive",
        "--model",
        "models:/breach-forecaster@champion",
        "--tracking-uri",
        uri,
    )
    assert by_alias.exit_code == 0, by_alias.output
    by_folder = _simulate(tmp_path / "folder", "--policy", "predictive", "--model", str(export))
    assert by_folder.exit_code == 0, by_folder.output
    # The registry's champion and its export are the same model: the same run, to the byte.
    for name in ("markets", "events", "policy"):
        a = (tmp_path / "alias" / "scenario=cascade" / "seed=0" / f"{name}.parquet").read_bytes()
        b = (tmp_path / "folder" / "scenario=cascade" / "seed=0" / f"{name}.parquet").read_bytes()
        assert a == b, name
    assert _summary(tmp_path / "alias")["policy_scored_rows"] > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--policy", "predictive"], "needs --model"),
        (["--policy", "predictive", "--model", "nowhere"], "no model.json"),
        (["--policy", "static", "--model", "nowhere"], "only used by --policy predictive"),
        (["--policy", "static", "--knob", "0.5"], "policy.knob must be >= 1"),
        (
            ["--policy", "analytic", "--knob", "2.5", "--set", "policy.allocation=budget"],
            "must be a whole number of actions",
        ),
        (
            ["--policy", "predictive", "--forecaster-url", "http://127.0.0.1:9", "--knob", "5"]
            + ["--set", "policy.allocation=budget"],
            "needs a forecaster of losses",
        ),
        (["--set", "policy.allocation=greedy"], "policy.allocation must be"),
    ],
)
def test_bad_policy_input_is_refused(tmp_path, args, fragment):
    result = _simulate(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "scenario=cascade").exists()


@pytest.mark.parametrize("policy", ["analytic", "oracle"])
def test_the_budget_allocation_runs_from_the_command_line(tmp_path, policy):
    result = _simulate(
        tmp_path, "--policy", policy, "--knob", "20", "--set", "policy.allocation=budget"
    )
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["conservation_error"] == 0 and s["policy_fallbacks"] == 0
    table = pd.read_parquet(tmp_path / "scenario=cascade" / "seed=0" / "policy.parquet")
    forecasts = table[table["scored"] > 0]
    # At most 20 actions a forecast: calls plus de-risked accounts (one de-risk per action).
    assert (forecasts.groupby("tick")["warned"].first() <= 20).all()
    assert s["policy_warnings"] + s["policy_derisked_notional"] > 0


def test_unresolvable_registry_uri_is_refused(tmp_path, trained_model):
    uri, _ = trained_model
    result = _simulate(
        tmp_path,
        "--policy",
        "predictive",
        "--model",
        "models:/no-such-model@champion",
        "--tracking-uri",
        uri,
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no-such-model" in lines[0]


def test_a_forecaster_loads_by_alias_version_run_and_export_alike(trained_model):
    from mlflow.tracking import MlflowClient

    from predictor.serving import load_forecaster

    uri, export = trained_model
    version = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(
        "breach-forecaster", "champion"
    )
    sources = [
        "models:/breach-forecaster@champion",
        f"models:/breach-forecaster/{version.version}",
        f"runs:/{version.run_id}/model",
    ]
    texts = {load_forecaster(s, tracking_uri=uri).booster_.model_to_string() for s in sources}
    texts.add(load_forecaster(str(export)).booster_.model_to_string())
    assert len(texts) == 1
