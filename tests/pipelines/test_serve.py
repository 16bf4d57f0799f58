"""`predliq serve` and the REST forecaster: same forecasts as in-process, fail-safe when slow."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import psutil
import pytest
from click.testing import CliRunner

from engine.config import load_config
from engine.forecast import Fallback
from engine.sim import Simulation
from pipelines.cli import main
from predictor import pyfunc as pyfunc_module
from predictor.features import FEATURES
from predictor.model import BreachForecaster
from predictor.serving import RemoteForecaster

CASCADE = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "cascade.toml"
SMALL = ["--set", "accounts.count=800", "--set", "steps=200"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    predliq = Path(sys.executable).parent / "predliq"
    proc = subprocess.Popen(
        [str(predliq), "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"predliq serve did not come up:\n{proc.stdout.read().decode()[-2000:]}")


@pytest.fixture(scope="module")
def server(trained_model):
    uri, _ = trained_model
    proc, url = _start_serve(["--tracking-uri", uri])
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


def _port_is_free(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])  # SIGHUP: the same handler
def test_a_signal_stops_the_server_and_frees_its_port(trained_model, sig):
    uri, _ = trained_model
    proc, url = _start_serve(["--tracking-uri", uri])
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    out = proc.stdout.read().decode()
    assert f"stopped ({sig.name})" in out, out
    assert _port_is_free(url)
    assert not [c for c in children if c.is_running()]


def _post(url: str, body: bytes, kind: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": kind}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_refuses_malformed_requests_and_keeps_serving(server):
    features = list(FEATURES)
    row = [0.0] * len(features)
    cases = [
        (b"not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (
            json.dumps({"dataframe_split": {"columns": features[1:], "data": [row[1:]]}}),
            400,
            "do not match the model's features",
        ),
        (
            json.dumps({"dataframe_split": {"columns": features, "data": [row[1:]]}}),
            400,
            f"row 0 must be a list of {len(features)} values",
        ),
        (
            json.dumps({"dataframe_split": {"columns": features, "data": [["x"] * len(row)]}}),
            400,
            "not a number or null",
        ),
        (json.dumps({"inputs": [row]}), 400, "'dataframe_split' or 'dataframe_records'"),
    ]
    for body, status, text in cases:
        body = body.encode() if isinstance(body, str) else body
        code, doc = _post(server, body)
        assert code == status and text in doc["message"], (body[:80], code, doc)
    assert _post(server, b"{}", kind="text/csv")[0] == 415
    records = [dict(zip(features, row, strict=True))]
    code, doc = _post(server, json.dumps({"dataframe_records": records}).encode())
    assert code == 200 and len(doc["predictions"]) == 1


class _RunsCodeWhenUnpickled(mlflow.pyfunc.PythonModel):
    """A registered payload that writes a file the moment anything unpickles it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))

    def predict(self, context, model_input, params=None):  # never reached
        return model_input


def _register(uri: str, name: str, python_model, forecaster: Path | None = None) -> None:
    """Log ``python_model`` (with a forecaster's files as artifacts, if given) to the store at
    ``uri`` and register it as version 1 of ``name``."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(name)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=None if forecaster is None else {"forecaster": str(forecaster)},
            pip_requirements=[],  # no requirement inference: it loads the model to infer
            registered_model_name=name,
        )


def test_serve_never_loads_a_registered_pickle(trained_model, tmp_path):
    _, export = trained_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "the-pickle-ran"
    _register(uri, "pickle-only", _RunsCodeWhenUnpickled(marker))
    # The genuine forecaster's files with a pickle beside them.
    _register(uri, "pickle-and-forecaster", _RunsCodeWhenUnpickled(marker), export)
    marker.unlink(missing_ok=True)  # MLflow may load a model while it logs it
    refused = CliRunner().invoke(
        main, ["serve", "--model", "models:/pickle-only/1", "--tracking-uri", uri]
    )
    assert refused.exit_code == 2
    assert "holds no model.json, not one saved forecaster" in refused.output
    proc, url = _start_serve(["--model", "models:/pickle-and-forecaster/1", "--tracking-uri", uri])
    try:
        X = np.zeros((3, len(FEATURES)), np.float32)
        served = RemoteForecaster(url, horizon_minutes=5.0, timeout_s=30).score(X)
        np.testing.assert_allclose(served, BreachForecaster.load(export).predict_proba(X))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not marker.exists()
    try:  # the control: MLflow's own loader runs the payload (which then is not a model)
        mlflow.pyfunc.load_model("models:/pickle-and-forecaster/1")
    except AttributeError:  # None has no load_context: the payload ran, then failed
        pass
    assert marker.exists()


def test_serve_refuses_a_registered_forecaster_whose_files_changed(trained_model, tmp_path):
    _, export = trained_model
    changed = tmp_path / "forecaster"
    shutil.copytree(export, changed)
    text = (changed / "model.txt").read_text()
    (changed / "model.txt").write_text(text.replace("Tree=0", "Tree=0\n", 1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register(uri, "changed", str(Path(pyfunc_module.__file__)), changed)
    result = CliRunner().invoke(
        main, ["serve", "--model", "models:/changed/1", "--tracking-uri", uri]
    )
    assert result.exit_code == 2
    assert "model.txt: SHA-256" in result.output and "differs" in result.output
