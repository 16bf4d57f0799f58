"""`predliq serve` and the REST forecaster: same forecasts as in-process, fail-safe when slow."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.config import load_config
from engine.policy import Fallback
from engine.sim import Simulation
from pipelines.cli import main
from predictor.features import FEATURES
from predictor.model import BreachForecaster
from predictor.serving import RemoteForecaster

CASCADE = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "cascade.toml"
SMALL = ["--set", "accounts.count=800", "--set", "steps=200"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_model):
    uri, _ = trained_model
    port = _free_port()
    predliq = Path(sys.executable).parent / "predliq"
    proc = subprocess.Popen(
        [str(predliq), "serve", "--port", str(port), "--tracking-uri", uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"predliq serve did not come up:\n{out[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_served_forecasts_equal_the_in_process_model(server, trained_model):
    _, export = trained_model
    model = BreachForecaster.load(export)
    rng = np.random.default_rng(3)
    X = rng.normal(scale=2.0, size=(1_000, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    remote = RemoteForecaster(server, horizon_minutes=5.0, timeout_s=30)
    np.testing.assert_allclose(remote.score(X), model.predict_proba(X), rtol=0, atol=1e-12)


def test_a_run_against_the_server_equals_the_local_run(server, trained_model, tmp_path):
    uri, _ = trained_model
    common = ["simulate", "--config", str(CASCADE), *SMALL, "--policy", "predictive"]
    remote = CliRunner().invoke(
        main,
        [*common, "--forecaster-url", server, "--forecaster-timeout", "30"]
        + ["--out", str(tmp_path / "remote")],
    )
    assert remote.exit_code == 0, remote.output
    local = CliRunner().invoke(
        main,
        [*common, "--model", "models:/breach-forecaster@champion", "--tracking-uri", uri]
        + ["--no-compile", "--out", str(tmp_path / "local")],
    )
    assert local.exit_code == 0, local.output
    for name in ("markets", "events", "policy"):
        a = tmp_path / "remote" / "scenario=cascade" / "seed=0" / f"{name}.parquet"
        b = tmp_path / "local" / "scenario=cascade" / "seed=0" / f"{name}.parquet"
        assert a.read_bytes() == b.read_bytes(), name


def _run_with(forecaster) -> Simulation:
    cfg = load_config(
        CASCADE,
        ["accounts.count=400", "steps=40", 'policy.name="predictive"', "policy.risk_band_sigmas=0"],
    )
    sim = Simulation(cfg, forecaster=forecaster)
    sim.run()
    return sim


def test_a_server_that_does_not_answer_in_time_is_a_timeout_fallback():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sim = _run_with(RemoteForecaster(url, horizon_minutes=5.0, timeout_s=0.05))
    s = sim.summary()
    assert s["policy_fallbacks_timeout"] == s["policy_fallbacks"] == 11  # blocks 0, 4, ..., 40
    assert (sim.policy_frame()["fallback"] == int(Fallback.TIMEOUT)).sum() == 11


def test_an_unreachable_server_is_an_exception_fallback():
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    sim = _run_with(RemoteForecaster(url, horizon_minutes=5.0, timeout_s=1.0))
    assert sim.summary()["policy_fallbacks_exception"] == 11


def test_serve_refuses_a_model_it_cannot_resolve(trained_model):
    uri, _ = trained_model
    result = CliRunner().invoke(
        main, ["serve", "--model", "models:/nothing@champion", "--tracking-uri", uri]
    )
    assert result.exit_code == 2 and "nothing" in result.output
    folder = CliRunner().invoke(main, ["serve", "--model", "models/breach-forecaster"])
    assert folder.exit_code == 2 and "registry or run URI" in folder.output
