"""Recording a training run in MLflow, registering the model and promoting a champion.

A run logs the training config and its hash as params, the training and test rows as dataset
inputs whose source names the histories' manifest hash, every metric of the model and each
baseline, figures, and the model (a pyfunc with signature and input example) registered as
``breach-forecaster`` (``breach-forecaster-<H>m`` for horizons other than 5 minutes).

The alias ``champion`` moves to the new version only if it beats the current champion on
held-out PR-AUC at equal or better calibration (ECE no worse than the champion's plus
ECE_TOLERANCE); the current champion is re-scored on this run's held-out rows when its features
match. Otherwise the new version gets ``challenger``. The champion is exported to
``models/<registered name>/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.atomic import commit_dir, stage_dir
from engine.errors import PredliqError
from predictor import plots
from predictor.features import FEATURES, SCHEMA_VERSION
from predictor.metrics import expected_calibration_error
from predictor.model import BreachForecaster, ModelError
from predictor.train import MODELS, TrainResult

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_HORIZON_MINUTES = 5.0
ECE_TOLERANCE = 0.001
"""How much worse (absolute) a challenger's ECE may be and still count as equal calibration."""


class TrackingError(PredliqError, RuntimeError):
    """The tracking server or database cannot be reached or written."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a training run went."""

    run_id: str
    experiment: str
    name: str
    version: int
    alias: str
    reason: str
    exported_to: Path | None


def registered_name(horizon_minutes: float) -> str:
    """Return the registry name of a horizon's forecaster."""
    if math.isclose(horizon_minutes, DEFAULT_HORIZON_MINUTES):
        return "breach-forecaster"
    return f"breach-forecaster-{horizon_minutes:g}m"


def connect(uri: str):
    """Return an MlflowClient for ``uri`` after checking that it answers; raise
    :class:`TrackingError` with a one-line reason otherwise (no retries, short timeout)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if uri == DEFAULT_TRACKING_URI:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise TrackingError(f"tracking URI {uri} is unreachable: {folder} does not exist")
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many kinds here (HTTP, SQL, URI parsing)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"tracking URI {uri} is unreachable: {reason[:200]}") from None
    return client


def flat_metrics(result: TrainResult) -> dict[str, float]:
    """Return every metric as MLflow metric names: split.model.metric."""
    out: dict[str, float] = {}
    for split, ev in (("seed_split", result.seed_split), ("regime_shift", result.regime_shift)):
        if ev is None:
            continue
        for name, metrics in ev.metrics.items():
            for key, value in metrics.items():
                out[f"{split}.{name}.{key}"] = value
    for family, ev in result.family_holdouts.items():
        for name, metrics in ev.metrics.items():
            for key, value in metrics.items():
                out[f"leave_one_out.{family}.{name}.{key}"] = value
    for fold in result.walk_forward:
        for key, value in fold.items():
            if key.endswith(("_pr_auc", "_ece")) or key in ("rows", "positives"):
                out[f"walk_forward.fold{fold['fold']}.{key}"] = value
    for group, d in result.importance.get("groups", {}).items():
        for key, value in d.items():
            out[f"importance.{group}.{key}"] = value
    out["train_seconds"] = result.timings["train_s"]
    out["feature_seconds"] = result.timings["features_s"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def params(result: TrainResult) -> dict[str, Any]:
    """Return the run's params: the resolved training config, its hash, the data lineage."""
    cfg = result.config.to_dict()
    cfg["params"] = json.dumps(cfg["params"], sort_keys=True)
    split = result.split
    return {
        **cfg,
        "config_hash": result.config.hash(),
        "data_hash": result.data_hash,
        "label": result.label,
        "horizon_minutes": result.horizon_minutes,
        "fit_seeds": ",".join(map(str, split.fit)),
        "calibration_seeds": ",".join(map(str, split.calibration)),
        "test_seeds": ",".join(map(str, split.test)),
        "scenarios": ",".join(sorted({p.scenario for p in result.parts})),
        "regime_shift_tested_on": result.regime_shift_scenario or "none",
        "precision_k": result.keeper_k,
        "best_iteration": result.model.best_iteration_,
        "boosting": (
            f"lightgbm.dask on {result.dask_workers} workers"
            if result.dask_workers
            else "lightgbm, one machine"
        ),
        "feature_count": len(FEATURES),
        "feature_schema_version": SCHEMA_VERSION,
        "analytic_half_life_minutes": result.baselines["analytic"].half_life_,
        **{f"{name}_rows": s["rows"] for name, s in result.sizes.items()},
        **{f"{name}_positives": s["positives"] for name, s in result.sizes.items()},
    }


def model_meta(result: TrainResult) -> dict[str, Any]:
    """Return what model.json records besides features and calibration."""
    return {
        "data_hash": result.data_hash,
        "training_config": result.config.to_dict(),
        "training_config_hash": result.config.hash(),
        "label": result.label,
        "scenarios": sorted({p.scenario for p in result.parts}),
        "seeds": {
            "fit": list(result.split.fit),
            "calibration": list(result.split.calibration),
            "test": list(result.split.test),
        },
        "rows": result.sizes,
        "metrics": {
            "seed_split": result.seed_split.metrics,
            "regime_shift": result.regime_shift.metrics if result.regime_shift else None,
            "regime_shift_scenario": result.regime_shift_scenario,
        },
    }


def _table(metrics: dict[str, dict[str, float]]) -> list[str]:
    keys = ("pr_auc", "pr_auc_lift", "roc_auc", "brier_skill", "ece", "log_loss", "event_recall")
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in MODELS:
        m = metrics[name]
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4g}" for k in keys) + " |")
    return lines


def model_card(result: TrainResult) -> str:
    """Return MODEL_CARD.md: what the model was trained on, how it was validated, its metrics
    against the baselines and where it should not be trusted."""
    h = result.horizon_minutes
    seed = result.seed_split
    best_baseline = max(MODELS[1:], key=lambda n: seed.metrics[n]["pr_auc"])
    lines = [
        f"# {registered_name(h)} — breach within {h:g} minutes",
        "",
        "## What it forecasts",
        f"The probability that an account's equity falls below its maintenance margin within "
        f"{h:g} minutes of a sampled instant (label `{result.label}`), from "
        f"{len(FEATURES)} account, order-flow and volatility features (schema "
        f"{SCHEMA_VERSION}). A LightGBM booster ({result.model.best_iteration_} trees) followed "
        "by an isotonic calibration map.",
        "",
        "## What it was trained on",
        f"Simulated histories (data hash `{result.data_hash[:16]}`), scenarios "
        f"{', '.join(sorted({p.scenario for p in result.parts}))}. "
        f"Fit seeds {list(result.split.fit)}, calibration seeds {list(result.split.calibration)},"
        f" test seeds {list(result.split.test)}. Rows: "
        + ", ".join(
            f"{k} {v['rows']:,} ({v['positives']:,} positive)" for k, v in result.sizes.items()
        )
        + f". Negatives of the fit paths kept at rate {result.config.negative_rate:g}.",
        "",
        "## How it was validated",
        "Split by seed (no seed in both training and test); early stopping and calibration on "
        "separate calibration paths; walk-forward folds inside the held-out paths with purge and "
        f"embargo of {h:g} minutes; a regime-shift test refitted without "
        f"`{result.regime_shift_scenario or 'n/a'}` and tested on it. Baselines on the same "
        "splits: the analytic first-passage probability, logistic regression, a margin-ratio rule.",
        "",
        f"### Held-out paths (prevalence {seed.metrics['model']['prevalence']:.3%}, "
        f"{seed.rows:,} rows)",
        *_table(seed.metrics),
        "",
        "## Expected loss",
        "Beside the classifier, two LightGBM severity heads (Tweedie objective, variance power "
        "1.5, trained on breach rows only) give E[bad debt | breach within H] and E[liquidation "
        "impact | breach within H]; the expected bad debt is the calibrated probability times "
        "the first. The analytic arm's is the first-passage probability times the shortfall a "
        "liquidation at the liquidation price would leave on the current book.",
        "",
        "| forecast | Spearman on breach rows | bad debt in top 10% of rows | in top 10% of "
        "breach rows |",
        "|---|---|---|---|",
        *(
            f"| {name} | {seed.metrics[name]['loss_spearman']:.3f} | "
            f"{seed.metrics[name]['loss_capture_10']:.1%} | "
            f"{seed.metrics[name]['loss_capture_10_positive']:.1%} |"
            for name in ("model", "analytic")
        ),
        "",
    ]
    if result.regime_shift is not None:
        shift = result.regime_shift
        lines += [
            f"### Regime shift: unseen `{result.regime_shift_scenario}` (prevalence "
            f"{shift.metrics['model']['prevalence']:.3%}, {shift.rows:,} rows)",
            *_table(shift.metrics),
            "",
        ]
    if result.family_holdouts:
        lines += [
            "### Leave one family out",
            "Refitted without each family in turn and tested on that family's held-out seeds.",
            "",
            "| family | rows | prevalence | PR-AUC model | PR-AUC analytic | ECE model | "
            "loss Spearman model | analytic |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for family, ev in result.family_holdouts.items():
            m, a = ev.metrics["model"], ev.metrics["analytic"]
            lines.append(
                f"| {family} | {ev.rows:,} | {m['prevalence']:.3%} | {m['pr_auc']:.3f} | "
                f"{a['pr_auc']:.3f} | {m['ece']:.4f} | {m['loss_spearman']:.3f} | "
                f"{a['loss_spearman']:.3f} |"
            )
        lines.append("")
    lines += ["## Where it should not be trusted"]
    lines.append(
        f"- It has seen simulated venues only; the best baseline on held-out paths is "
        f"`{best_baseline}` (PR-AUC {seed.metrics[best_baseline]['pr_auc']:.3f} against the "
        f"model's {seed.metrics['model']['pr_auc']:.3f})."
    )
    if result.regime_shift is not None:
        shift = result.regime_shift.metrics
        beaten = [n for n in MODELS[1:] if shift[n]["pr_auc"] > shift["model"]["pr_auc"]]
        if beaten:
            lines.append(
                f"- On a scenario family it never saw (`{result.regime_shift_scenario}`) it "
                f"ranks worse than {', '.join(f'`{b}`' for b in beaten)}: do not rely on it "
                "for market regimes absent from its training scenarios."
            )
        else:
            lines.append(
                f"- On an unseen family (`{result.regime_shift_scenario}`) it kept the lead, "
                "but other unseen regimes may differ."
            )
    lines += [
        f"- Only for the {h:g}-minute horizon: its features and calibration are specific to it.",
        "- Accounts with positions in several markets are described by their largest one.",
        "- Features are computed at sampling instants; a breach between two samples further "
        f"apart than {h:g} minutes cannot be anticipated.",
        "- Probabilities were calibrated on the simulated prevalence; a venue whose traders "
        "hold less leverage sees fewer breaches and the model will over-forecast.",
        "",
    ]
    return "\n".join(lines)


def write_figures(result: TrainResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ev = result.seed_split
    assert ev.y is not None and ev.lead_minutes is not None
    h = result.horizon_minutes
    plots.pr_curves(ev.y, ev.probabilities, folder / "pr_curve.png", f"held-out paths, H={h:g}m")
    plots.reliability(ev.y, ev.probabilities, folder / "reliability.png", f"reliability, H={h:g}m")
    plots.feature_importance(result.model.feature_importance(), folder / "feature_importance.png")
    plots.lead_times(ev.lead_minutes, h, folder / "lead_time.png")


def _compare(client, name: str, result: TrainResult, tmp: Path) -> tuple[bool, str, Any]:
    """Return (promote, reason, current champion version or None)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import average_precision_score

    try:
        champ = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return True, "no champion yet", None
    new = result.seed_split.metrics["model"]
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=champ.run_id, artifact_path="export", dst_path=str(tmp / "champion")
        )
        old_model = BreachForecaster.load(path)
        test = result.test_rows
        p_old = old_model.predict_proba(test.X)
        old_pr = float(average_precision_score(test.y, p_old))
        old_ece = expected_calibration_error(test.y, p_old)
        basis = "re-scored on this run's held-out rows"
    except (ModelError, MlflowException, OSError):
        logged = client.get_run(champ.run_id).data.metrics
        old_pr = logged.get("seed_split.model.pr_auc", -1.0)
        old_ece = logged.get("seed_split.model.ece", math.inf)
        basis = "from its logged metrics (its features differ from this version's)"
    promote = new["pr_auc"] > old_pr and new["ece"] <= old_ece + ECE_TOLERANCE
    reason = (
        f"PR-AUC {new['pr_auc']:.4f} vs champion v{champ.version} {old_pr:.4f}, ECE "
        f"{new['ece']:.5f} vs {old_ece:.5f} ({basis})"
    )
    return promote, reason, champ


def stage_export(folder: Path, source: Path, registry: dict[str, Any]) -> Path:
    """Copy the export in ``source`` plus registry details into a staging folder beside
    ``folder`` and return it: everything that can fail (a path that is not a folder, a full
    disk) fails here, before the registry's alias moves."""
    try:
        staging = stage_dir(folder)
    except OSError as exc:
        raise TrackingError(
            f"cannot export the champion to {folder}: {exc.strerror or exc}"
        ) from None
    try:
        for f in source.iterdir():
            shutil.copy2(f, staging / f.name)
        doc = json.loads((staging / "model.json").read_text())
        doc["registry"] = registry
        (staging / "model.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TrackingError(
            f"cannot export the champion to {folder}: {exc.strerror or exc}"
        ) from None
    return staging


def commit_export(folder: Path, staging: Path) -> Path:
    """Replace ``folder`` with ``staging`` (from :func:`stage_export`) by renames: a crash
    leaves the old export or the new one whole (:mod:`engine.atomic`)."""
    return commit_dir(staging, folder)


def ensure_experiment(client, uri: str, experiment: str) -> None:
    """Create ``experiment`` if it is new; with a SQLite store, its artifacts go beside the
    database (``mlruns/artifacts/<experiment>`` by default) rather than into ``./mlruns`` of
    whatever folder the command runs in (MLflow's default artifact root)."""
    if client.get_experiment_by_name(experiment) is not None or not uri.startswith("sqlite:///"):
        return
    folder = Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts" / experiment
    client.create_experiment(experiment, artifact_location=folder.as_uri())


def log_training(
    result: TrainResult, uri: str, experiment: str, export_root: Path | None
) -> Outcome:
    """Log a finished training run, register its model and move the aliases."""
    import mlflow
    from mlflow.models import infer_signature

    client = connect(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    ensure_experiment(client, uri, experiment)
    mlflow.set_experiment(experiment)
    name = registered_name(result.horizon_minutes)
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        export = tmp / "export"
        result.model.save(export, model_meta(result))
        (export / "MODEL_CARD.md").write_text(model_card(result))
        write_figures(result, tmp / "figures")
        data_root = Path(result.parts[0].path).parent.parent.resolve()
        # The dataset's source names the histories and the hash of their manifests.
        source = f"{data_root}#manifest-sha256={result.data_hash}"
        test = result.test_rows
        example = pd.DataFrame(test.X[:5], columns=list(FEATURES))
        with mlflow.start_run(run_name=f"{name} {result.data_hash[:8]}") as run:
            mlflow.log_params(params(result))
            mlflow.set_tags(
                {"horizon_minutes": f"{result.horizon_minutes:g}", "data_hash": result.data_hash}
            )
            for context in ("training", "test"):
                mlflow.log_input(_dataset(source, context, result.data_hash), context=context)
            mlflow.log_metrics(flat_metrics(result))
            mlflow.log_dict({"walk_forward": result.walk_forward}, "walk_forward.json")
            mlflow.log_artifacts(str(tmp / "figures"), "figures")
            mlflow.log_artifacts(str(export), "export")
            signature = infer_signature(example, result.model.predict_proba(test.X[:5]))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(package / "pyfunc.py"),
                artifacts={"forecaster": str(export)},
                code_paths=[str(package)],
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=[
                    f"lightgbm=={_version('lightgbm')}",
                    f"scikit-learn=={_version('scikit-learn')}",
                    f"scipy=={_version('scipy')}",
                    f"numpy=={_version('numpy')}",
                    f"pandas=={_version('pandas')}",
                ],
            )
            version = int(info.registered_model_version)
            promote, reason, _ = _compare(client, name, result, tmp)
            alias = "champion" if promote else "challenger"
            client.set_model_version_tag(name, str(version), "data_hash", result.data_hash)
            # The export is staged before the champion alias moves and swapped in after it: a
            # failed export leaves the previous champion (and its export) in place, and a failed
            # alias leaves the previous export — never a champion without its export.
            staged = None
            if promote and export_root is not None:
                staged = stage_export(
                    Path(export_root) / name,
                    export,
                    {"name": name, "version": version, "run_id": run.info.run_id, "uri": uri},
                )
            try:
                client.set_registered_model_alias(name, alias, str(version))
            except BaseException:
                if staged is not None:
                    shutil.rmtree(staged, ignore_errors=True)
                raise
            mlflow.set_tag("alias", alias)
            mlflow.set_tag("promotion", reason)
            exported = None
            if staged is not None:
                exported = commit_export(Path(export_root) / name, staged)
    return Outcome(run.info.run_id, experiment, name, version, alias, reason, exported)


def _dataset(uri: str, context: str, digest: str):
    """Return a metadata-only MLflow dataset: the histories' location and manifest hash, and the
    feature schema. (A pandas dataset would infer its schema value by value: minutes for
    millions of rows.)"""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, DataType, Schema

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": it is a path
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(uri)
    schema = Schema(
        [ColSpec(DataType.float, f) for f in FEATURES] + [ColSpec(DataType.integer, "label")]
    )
    return MetaDataset(source, name=f"histories-{context}", digest=digest[:32], schema=schema)


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


EVALUATION_EXPERIMENT = "breach-forecaster-evaluation"


def log_evaluation(uri: str, folder: Path, summary: dict[str, Any]) -> str:
    """Log an evaluation as its own MLflow run: lineage as params, the headline and forecast
    quality as metrics, and the report folder (summary.json, tables, report) as artifacts.
    Return the run id."""
    import mlflow

    client = connect(uri)
    mlflow.set_tracking_uri(uri)
    ensure_experiment(client, uri, EVALUATION_EXPERIMENT)
    mlflow.set_experiment(EVALUATION_EXPERIMENT)
    lineage = summary["lineage"]
    metrics: dict[str, float] = {}
    for baseline, entry in summary["headline"].items():
        for stat in ("mean", "es99"):
            point = entry.get(stat)
            if point:
                metrics[f"headline.{baseline}.{stat}.reduction"] = point["reduction"]
                metrics[f"headline.{baseline}.{stat}.ci95_low"] = point["ci95"][0]
                metrics[f"headline.{baseline}.{stat}.ci95_high"] = point["ci95"][1]
    forecast = summary.get("forecast", {})
    for name in ("model", "analytic"):
        for key, value in (forecast.get(name) or {}).items():
            if isinstance(value, int | float):
                metrics[f"forecast.{name}.{key}"] = float(value)
    with mlflow.start_run(run_name=f"evaluation {folder.name}") as run:
        mlflow.log_params(
            {
                "model_uri": lineage["model_uri"],
                "model_version": lineage.get("model_version"),
                "training_seeds": ",".join(map(str, lineage["training_seeds"])),
                "evaluation_seeds": f"{lineage['evaluation_seeds'][0]}-"
                f"{lineage['evaluation_seeds'][-1]} ({len(lineage['evaluation_seeds'])})",
                "scenarios": ",".join(sorted(lineage["scenarios"])),
            }
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_artifacts(str(folder))
        return run.info.run_id
