"""Training a breach forecaster for one horizon, with its baselines, on splits that respect
simulation structure and time.

Validation design
-----------------
- **Seed split.** Seed numbers are split into fit / calibration / test (the highest numbers are
  held out); a seed number has one role in every scenario, so no simulated path — nor any seed —
  is in both training and test.
- **Calibration on separate paths.** Early stopping and the isotonic calibration use the
  calibration seeds. A time slice of the training paths would sit before or after their crash
  and see another prevalence than the model will face; separate paths see the whole cycle, and
  share no label window with the training rows.
- **Walk-forward inside held-out paths.** The test paths' timeline is cut into consecutive
  folds; each fold is scored without the rows within H of its edges (purge before the end,
  embargo after the start), so no scored label window crosses into a neighbouring fold.
- **Regime shift.** The model (and every baseline) is refitted without one scenario family and
  tested on that family's held-out seeds.

One model per horizon: the distance-in-sigmas features and the calibration depend on H, each
horizon's prevalence differs by an order of magnitude, and the engine acts on one horizon at a
time; a horizon feature would only multiply the rows by the number of horizons.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from predictor.baselines import AnalyticBaseline, LogisticBaseline, MarginRatioRule
from predictor.data import DataError, Partition, check_horizon, data_hash, discover, parse_horizon
from predictor.dataset import (
    Rows,
    SeedSplit,
    accounts_sampler,
    build_path,
    negatives_sampler,
    sampling_rng,
    split_seeds,
)
from predictor.features import FEATURE_GROUPS, FEATURES
from predictor.metrics import (
    best_f1_threshold,
    expected_calibration_error,
    forecast_metrics,
    loss_metrics,
)
from predictor.model import BreachForecaster

MODELS = ("model", "analytic", "logistic", "margin_ratio")
"""The forecaster and its baselines, in report order."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Settings of a training run (``configs/train.toml``; every key optional)."""

    horizon: str = "5m"
    seed: int = 0
    test_fraction: float = 0.25
    calibration_fraction: float = 0.25
    negative_rate: float = 0.1
    eval_account_fraction: float = 0.25  # share of accounts kept in calibration and test paths
    regime_shift_scenario: str = "flash_crash"
    leave_one_family_out: bool = False  # refit without each family in turn, test on it
    walk_forward_folds: int = 4
    calibration_band_sigmas: float = 6.0  # band-conditional calibration (0: one map for all)
    num_boost_round: int = 600
    early_stopping_rounds: int = 40
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_data_in_leaf: int = 200
    experiment: str = "breach-forecaster"
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        parse_horizon(self.horizon)
        for name in ("test_fraction", "calibration_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise DataError(f"{name} must be in (0, 1), was {getattr(self, name)}")
        for name in ("negative_rate", "eval_account_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise DataError(f"{name} must be in (0, 1], was {getattr(self, name)}")
        if not 0.0 <= self.calibration_band_sigmas < 1e3:
            raise DataError(
                f"calibration_band_sigmas must be in [0, 1000), was {self.calibration_band_sigmas}"
            )
        for name in ("walk_forward_folds", "num_boost_round", "num_leaves", "min_data_in_leaf"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1, was {getattr(self, name)}")
        return self

    def lgb_params(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            **self.params,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def load_train_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Return the config of ``path`` (defaults when None) with ``overrides``; unknown keys and
    ill-typed values are a :class:`DataError` naming them."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"training config {path}: cannot be read ({exc.strerror})") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            kind = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "not valid TOML"
            raise DataError(f"training config {path}: {kind} ({exc})") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in fields(TrainConfig)}
    for key, value in data.items():
        if key not in known:
            raise DataError(f"unknown training config key {key!r} (known: {', '.join(known)})")
        default = getattr(TrainConfig(), key)
        ok = isinstance(value, type(default)) or (
            isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok or (isinstance(value, bool) and not isinstance(default, bool)):
            raise DataError(
                f"training config key {key!r} must be {type(default).__name__}, was {value!r}"
            )
    data = {
        k: float(v) if isinstance(getattr(TrainConfig(), k), float) else v for k, v in data.items()
    }
    return TrainConfig(**data).validate()


@dataclass
class Evaluation:
    """Metrics of every model on one evaluation set, and what the figures need."""

    metrics: dict[str, dict[str, float]]  # model -> metric -> value
    rows: int
    positives: int
    probabilities: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    y: np.ndarray | None = field(repr=False, default=None)
    lead_minutes: np.ndarray | None = field(repr=False, default=None)


@dataclass
class TrainResult:
    """Everything a training run produced, before it is logged."""

    config: TrainConfig
    horizon_minutes: float
    label: str
    parts: list[Partition]
    data_hash: str
    split: SeedSplit
    keeper_k: int
    model: BreachForecaster
    baselines: dict[str, Any]
    sizes: dict[str, dict[str, int]]  # set -> rows / positives
    seed_split: Evaluation
    walk_forward: list[dict[str, Any]]
    regime_shift: Evaluation | None
    regime_shift_scenario: str | None
    timings: dict[str, float]
    fit_rows: Rows = field(repr=False)
    test_rows: Rows = field(repr=False)
    dask_workers: int = 0  # workers that grew the trees with lightgbm.dask; 0 = one machine
    importance: dict[str, Any] = field(default_factory=dict)  # see grouped_importance
    family_holdouts: dict[str, Evaluation] = field(default_factory=dict)
    """With leave_one_family_out: each family's held-out seeds, scored by a refit without it."""


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def build_sets(
    parts: list[Partition],
    cfg: TrainConfig,
    horizon: float,
    label: str,
    split: SeedSplit,
    progress: Progress = _quiet,
    client: Any = None,
    counter: Callable[[int, str], Any] | None = None,
) -> dict[str, Rows]:
    """Return the fit, calibration and test rows of every partition (each partition's features
    computed on a Dask worker with ``client``: the workers must see ``parts``' paths)."""
    jobs = []
    for i, part in enumerate(parts):
        # Sampling generators are seeded per partition, so any worker builds the same rows.
        rng = sampling_rng(cfg.seed, part)
        if part.seed in split.test:
            role, sample = "test", accounts_sampler(cfg.eval_account_fraction, rng)
        elif part.seed in split.calibration:
            role, sample = "calibration", accounts_sampler(cfg.eval_account_fraction, rng)
        else:
            role, sample = "fit", negatives_sampler(cfg.negative_rate, rng)
        jobs.append((role, (part, i, horizon, label, sample)))
    if client is None:
        built = (build_path(*args) for _, args in jobs)
    else:
        futures = [client.submit(build_path, *args, pure=False) for _, args in jobs]
        built = (future.result() for future in futures)
    out: dict[str, list[Rows]] = {"fit": [], "calibration": [], "test": []}
    # ``counter(total, unit)`` tracks the partitions (a progress bar on a terminal); without it,
    # one progress message each.
    bar = counter(len(parts), "partitions") if counter is not None else None
    for (role, (part, i, *_)), rows in zip(jobs, built, strict=True):
        out[role].append(rows)
        if bar is not None:
            bar.step(f"features: {part.scenario} seed {part.seed} ({role})")
        else:
            progress(f"features {i + 1}/{len(parts)}: {part.scenario} seed {part.seed} ({role})")
    if bar is not None:
        bar.close()
    sets = {}
    for role, items in out.items():
        rows = Rows.concat(items)
        if int(rows.y.sum()) == 0:
            raise DataError(
                f"no positive labels for {label} in the {role} paths "
                f"(seeds {', '.join(map(str, getattr(split, role)))}): nothing to learn or test"
            )
        sets[role] = rows
    return sets


def fit_all(
    cfg: TrainConfig,
    horizon: float,
    fit: Rows,
    cal: Rows,
    log_every: int = 0,
    client: Any = None,
) -> tuple[BreachForecaster, dict[str, Any]]:
    """Fit the forecaster (on a Dask cluster with ``client``) and its baselines on the same
    rows."""
    model = BreachForecaster(
        horizon_minutes=horizon,
        params=cfg.lgb_params(),
        seed=cfg.seed,
        num_boost_round=cfg.num_boost_round,
        early_stopping_rounds=cfg.early_stopping_rounds,
    ).fit(
        fit.X,
        fit.y,
        cal.X,
        cal.y,
        cal.X,
        cal.y,
        log_every=log_every,
        client=client,
        band_sigmas=cfg.calibration_band_sigmas,
    )
    # The severity heads learn from breach rows only (hurdle: p x E[loss | breach]).
    pos, cal_pos = fit.y == 1, cal.y == 1
    model.fit_heads(
        fit.X[pos],
        {"loss": fit.loss[pos], "impact": fit.impact[pos]},
        cal.X[cal_pos],
        {"loss": cal.loss[cal_pos], "impact": cal.impact[cal_pos]},
    )
    baselines = {
        "analytic": AnalyticBaseline(horizon_minutes=horizon).fit(cal.X, cal.y),
        "logistic": LogisticBaseline(seed=cfg.seed, negative_rate=cfg.negative_rate).fit(
            fit.X, fit.y
        ),
        "margin_ratio": MarginRatioRule().fit(cal.X, cal.y),
    }
    return model, baselines


def predict_all(model: BreachForecaster, baselines: dict[str, Any], X: np.ndarray):
    """Return model name -> probabilities on X."""
    out = {"model": model.predict_proba(X)}
    for name, b in baselines.items():
        out[name] = b.predict_proba(X)
    return out


def evaluate(
    model: BreachForecaster,
    baselines: dict[str, Any],
    cal: Rows,
    test: Rows,
    k: int,
) -> Evaluation:
    """Score every model on ``test``; alert thresholds are chosen on ``cal``."""
    cal_p = predict_all(model, baselines, cal.X)
    test_p = predict_all(model, baselines, test.X)
    ev = test.eval_rows()
    metrics, leads = {}, None
    for name in MODELS:
        threshold = best_f1_threshold(cal.y, cal_p[name])
        metrics[name], lead = forecast_metrics(test_p[name], ev, k, threshold)
        if name == "model":
            leads = lead
    for name, forecaster in (("model", model), ("analytic", baselines["analytic"])):
        metrics[name].update(loss_metrics(forecaster.predict_loss(test.X), test.loss, test.y))
    return Evaluation(metrics, len(test), int(test.y.sum()), test_p, test.y, leads)


IMPORTANCE_ROWS = 200_000
"""Held-out rows the grouped permutation importance is measured on (a fixed subsample)."""


def grouped_importance(model: BreachForecaster, test: Rows, seed: int) -> dict[str, Any]:
    """Return the permutation importance of each feature group (FEATURE_GROUPS) on held-out
    rows: how much PR-AUC of the breach forecast, and rank correlation of the expected loss on
    breach rows, drop when the group's columns are shuffled together across rows (one
    permutation for the whole group, so features inside it stay consistent with each other),
    and each group's share of the total drop."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng([seed, 11])
    n = len(test)
    rows = np.sort(rng.choice(n, IMPORTANCE_ROWS, replace=False)) if n > IMPORTANCE_ROWS else None
    X = test.X if rows is None else test.X[rows]
    y = test.y if rows is None else test.y[rows]
    realised = test.loss if rows is None else test.loss[rows]
    pos = y == 1
    if not pos.any() or pos.all():
        return {}

    def scores(Z: np.ndarray) -> tuple[float, float]:
        p = model.predict_proba(Z)
        pr = float(average_precision_score(y, p))
        if not model.has_heads or np.ptp(realised[pos]) == 0:
            return pr, float("nan")
        loss = p[pos] * model.predict_severity(Z[pos])
        return pr, float(spearmanr(loss, realised[pos]).statistic)

    base_pr, base_rho = scores(X)
    column = {f: j for j, f in enumerate(FEATURES)}
    out: dict[str, Any] = {"rows": int(len(y)), "pr_auc": base_pr, "loss_spearman": base_rho}
    drops = {}
    for group, names in FEATURE_GROUPS.items():
        cols = [column[f] for f in names]
        Z = X.copy()
        Z[:, cols] = X[rng.permutation(len(y))][:, cols]
        pr, rho = scores(Z)
        drops[group] = {"pr_auc_drop": base_pr - pr, "loss_spearman_drop": base_rho - rho}
    for key in ("pr_auc_drop", "loss_spearman_drop"):
        total = sum(max(d[key], 0.0) for d in drops.values())
        for d in drops.values():
            d[key.replace("_drop", "_share")] = max(d[key], 0.0) / total if total > 0 else 0.0
    out["groups"] = drops
    return out


def walk_forward(
    probabilities: dict[str, np.ndarray],
    test: Rows,
    horizon: float,
    folds: int,
    k: int,
) -> list[dict[str, Any]]:
    """Return metrics of the model and the analytic baseline per time fold of the held-out
    paths, without the rows within H of a fold's edges.

    Each path's own duration is cut into ``folds`` equal consecutive parts (paths differ in
    length: a replay runs for days, a synthetic crash for hours). Rows within H after a fold's
    start (embargo) or before its end (purge) are left out, so no scored label window crosses a
    fold edge.
    """
    minutes = test.tick * test.minutes_per_tick
    length = np.zeros(int(test.path.max()) + 1)
    np.maximum.at(length, test.path, minutes + test.minutes_per_tick)
    span = length[test.path] / folds
    out = []
    for j in range(folds):
        lo, hi = j * span, (j + 1) * span
        keep = (minutes >= lo + (horizon if j else 0.0)) & (
            minutes < hi - (horizon if j < folds - 1 else 0.0)
        )
        row: dict[str, Any] = {
            "fold": j + 1,
            "share_of_path": f"{j / folds:.0%}-{(j + 1) / folds:.0%}",
            "rows": int(keep.sum()),
            "positives": int(test.y[keep].sum()),
        }
        for name in ("model", "analytic"):
            p, y = probabilities[name][keep], test.y[keep]
            ok = y.size and 0 < y.sum() < y.size
            row[f"{name}_pr_auc"] = float(average_precision_score(y, p)) if ok else float("nan")
            row[f"{name}_ece"] = expected_calibration_error(y, p) if y.size else float("nan")
        out.append(row)
    return out


def train(
    data: str | Path,
    cfg: TrainConfig,
    progress: Progress = _quiet,
    log_every: int = 0,
    client: Any = None,
    counter: Callable[[int, str], Any] | None = None,
) -> TrainResult:
    """Run the whole training protocol on the histories under ``data`` (features and boosting
    on a Dask cluster with ``client``, see :func:`build_sets` and :meth:`BreachForecaster.fit`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # Dask workers read the partitions from their own working directories: use absolute paths.
    parts = discover(data if client is None else Path(data).resolve())
    horizon = parse_horizon(cfg.horizon)
    label = check_horizon(parts, horizon)
    split = split_seeds([p.seed for p in parts], cfg.test_fraction, cfg.calibration_fraction)
    sets = build_sets(parts, cfg, horizon, label, split, progress, client, counter)
    fit, cal, test = sets["fit"], sets["calibration"], sets["test"]
    k = int(np.median([p.keeper_capacity for p in parts if p.seed in split.test]))
    timings["features_s"] = time.perf_counter() - t0
    timings["feature_rows"] = float(sum(len(s) for s in sets.values()))

    progress(f"training on {len(fit):,} rows x {len(FEATURES)} features")
    t1 = time.perf_counter()
    model, baselines = fit_all(cfg, horizon, fit, cal, log_every, client)
    timings["train_s"] = time.perf_counter() - t1

    progress(f"evaluating on {len(test):,} held-out rows")
    seed_eval = evaluate(model, baselines, cal, test, k)
    wf = walk_forward(seed_eval.probabilities, test, horizon, cfg.walk_forward_folds, k)
    progress("permutation importance of the feature groups")
    importance = grouped_importance(model, test, cfg.seed)

    scenarios = sorted({p.scenario for p in parts})
    held_out = scenarios if cfg.leave_one_family_out else [cfg.regime_shift_scenario]
    holdouts: dict[str, Evaluation] = {}
    for family in held_out:
        if family not in scenarios or len(scenarios) < 2:
            continue
        in_family = np.array([p.scenario == family for p in parts])
        f_fit, f_cal = fit.take(~in_family[fit.path]), cal.take(~in_family[cal.path])
        f_test = test.take(in_family[test.path])
        if f_test.y.sum() > 0 and f_fit.y.sum() > 0 and f_cal.y.sum() > 0:
            progress(f"family held out: refitting without {family}, testing on it")
            f_model, f_baselines = fit_all(cfg, horizon, f_fit, f_cal, client=client)
            holdouts[family] = evaluate(f_model, f_baselines, f_cal, f_test, k)
    family = cfg.regime_shift_scenario if cfg.regime_shift_scenario in holdouts else None
    shift_eval = holdouts.get(family) if family else None
    timings["total_s"] = time.perf_counter() - t0
    sizes = {
        name: {"rows": len(s), "positives": int(s.y.sum())}
        for name, s in (("fit", fit), ("calibration", cal), ("test", test))
    }
    return TrainResult(
        config=cfg,
        horizon_minutes=horizon,
        label=label,
        parts=parts,
        data_hash=data_hash(parts),
        split=split,
        keeper_k=k,
        model=model,
        baselines=baselines,
        sizes=sizes,
        seed_split=seed_eval,
        walk_forward=wf,
        regime_shift=shift_eval,
        regime_shift_scenario=family,
        timings=timings,
        fit_rows=fit,
        test_rows=test,
        dask_workers=0 if client is None else len(client.nthreads()),
        importance=importance,
        family_holdouts=holdouts if cfg.leave_one_family_out else {},
    )
