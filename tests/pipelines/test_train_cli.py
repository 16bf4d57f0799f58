"""`predliq train` against a real MLflow SQLite store: register, promote, export, refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from pipelines.cli import main
from predictor.features import FEATURES
from predictor.model import BreachForecaster


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _registered(uri: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    return [m.name for m in MlflowClient(uri, registry_uri=uri).search_registered_models()]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_train_registers_promotes_and_exports(small_histories, tmp_path):
    uri = _uri(tmp_path)
    models = tmp_path / "models"
    args = ["train", "--data", str(small_histories), "--tracking-uri", uri]
    first = _run([*args, "--export-dir", str(models)])
    assert first.exit_code == 0, first.output
    assert "held-out seeds [3]" in first.output and "regime shift" in first.output
    assert "registered breach-forecaster v1 as champion" in first.output
    export = models / "breach-forecaster"
    doc = json.loads((export / "model.json").read_text())
    assert doc["features"] == list(FEATURES) and doc["registry"]["version"] == 1
    assert doc["seeds"]["test"] == [3] and len(doc["data_hash"]) == 64
    card = (export / "MODEL_CARD.md").read_text()
    assert "Where it should not be trusted" in card and "analytic" in card
    model_txt = (export / "model.txt").read_bytes()

    # The same data and seed: an identical model, which cannot beat the champion.
    second = _run([*args, "--export-dir", str(models)])
    assert second.exit_code == 0, second.output
    assert "v2 as challenger" in second.output
    assert (export / "model.txt").read_bytes() == model_txt

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    v1 = client.get_model_version("breach-forecaster", "1")
    v2 = client.get_model_version("breach-forecaster", "2")
    assert "champion" in v1.aliases and "challenger" in v2.aliases
    run = client.get_run(v1.run_id)
    assert run.data.params["config_hash"] and run.data.params["test_seeds"] == "3"
    for name in ("model", "analytic", "logistic", "margin_ratio"):
        assert f"seed_split.{name}.pr_auc" in run.data.metrics
        assert f"regime_shift.{name}.ece" in run.data.metrics
    inputs = run.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"histories-training", "histories-test"}
    assert all(doc["data_hash"] in json.loads(i.dataset.source)["uri"] for i in inputs)
    artifacts = {f.path for f in client.list_artifacts(v1.run_id, "figures")}
    assert {
        "figures/pr_curve.png",
        "figures/reliability.png",
        "figures/feature_importance.png",
        "figures/lead_time.png",
    } <= artifacts
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/breach-forecaster@champion")
    X = np.random.default_rng(0).normal(size=(64, len(FEATURES))).astype(np.float32)
    p = served.predict(pd.DataFrame(X, columns=list(FEATURES)))
    assert p.shape == (64,) and np.all((p >= 0) & (p <= 1))
    # The registry's pyfunc and the export are the same model.
    exported = BreachForecaster.load(export).predict_proba(X)
    np.testing.assert_allclose(np.asarray(p), exported, rtol=0, atol=1e-12)


def _assert_refused(result, uri: str, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output
    if Path(uri.removeprefix("sqlite:///")).exists():
        assert _registered(uri) == []


def _partition(root: Path) -> Path:
    return root / "scenario=cascade" / "seed=1"


def test_missing_manifest_is_refused(small_histories, tmp_path):
    data = _copy(small_histories, tmp_path / "data")
    (_partition(data) / "manifest.json").unlink()
    uri = _uri(tmp_path)
    _assert_refused(
        _run(["train", "--data", str(data), "--tracking-uri", uri]), uri, "no manifest.json"
    )


def test_config_hash_mismatch_is_refused(small_histories, tmp_path):
    data = _copy(small_histories, tmp_path / "data")
    file = _partition(data) / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest["config"]["accounts"]["count"] += 1
    file.write_text(json.dumps(manifest))
    uri = _uri(tmp_path)
    _assert_refused(
        _run(["train", "--data", str(data), "--tracking-uri", uri]), uri, "does not match"
    )


def _restamp(file: Path) -> None:
    """Record ``file``'s new checksum in its manifest, as a writer that keeps its manifest
    consistent would: the checks behind the checksum are what is tested."""
    from engine.history import file_sha256

    manifest_file = file.parent / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][file.name] = {"sha256": file_sha256(file), "bytes": file.stat().st_size}
    manifest_file.write_text(json.dumps(manifest))


def test_missing_column_is_refused(small_histories, tmp_path):
    data = _copy(small_histories, tmp_path / "data")
    file = _partition(data) / "accounts.parquet"
    table = pq.read_table(file)
    pq.write_table(table.drop(["margin_ratio"]), file)
    _restamp(file)
    uri = _uri(tmp_path)
    _assert_refused(
        _run(["train", "--data", str(data), "--tracking-uri", uri]), uri, "margin_ratio"
    )


def test_no_positive_labels_is_refused(small_histories, tmp_path):
    data = _copy(small_histories, tmp_path / "data")
    for file in data.glob("scenario=*/seed=3/accounts.parquet"):
        table = pq.read_table(file)
        i = table.schema.get_field_index("label_5m")
        zeros = pa.array(np.zeros(table.num_rows, np.int8))
        pq.write_table(table.set_column(i, "label_5m", zeros), file)
        _restamp(file)
    uri = _uri(tmp_path)
    _assert_refused(
        _run(["train", "--data", str(data), "--tracking-uri", uri]), uri, "no positive labels"
    )


def test_horizon_not_in_labels_is_refused(small_histories, tmp_path):
    uri = _uri(tmp_path)
    result = _run(
        ["train", "--data", str(small_histories), "--tracking-uri", uri, "--horizon", "7m"]
    )
    _assert_refused(result, uri, "horizon 7m is not in the labels")


def test_unreachable_tracking_uri_is_refused(small_histories, tmp_path):
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens
    result = _run(["train", "--data", str(small_histories), "--tracking-uri", uri])
    _assert_refused(result, uri, "unreachable")
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'mlflow.db'}"
    _assert_refused(
        _run(["train", "--data", str(small_histories), "--tracking-uri", missing]),
        missing,
        "does not exist",
    )


def test_empty_data_folder_is_refused(tmp_path):
    uri = _uri(tmp_path)
    (tmp_path / "empty").mkdir()
    result = _run(["train", "--data", str(tmp_path / "empty"), "--tracking-uri", uri])
    _assert_refused(result, uri, "holds no partitions")
