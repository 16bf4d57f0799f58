"""`predliq evaluate`: anticipatory against reactive liquidation, at matched capital cost.

Every policy faces the same paths (common random numbers: the same scenario config and seed give
the same index path, population and shocks whatever the policy), so results are paired per
path. Each policy's knob is swept to trace a frontier of capital cost against bad debt; the
headline compares ``predictive`` with each baseline at one capital cost — the higher of the two
policies' costs at their reference settings — both read off their efficient frontiers (the
least bad debt any knob reaches at that cost or less, interpolated), with paired bootstrap
confidence intervals over paths.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config import SimConfig, load_config
from engine.outcomes import run_outcomes
from pipelines.simulate import ForecastSource

DEFAULT_KNOBS: dict[str, tuple[float, ...]] = {
    "static": (1.0, 1.1, 1.25, 1.5),
    "vol_scaled": (2.0, 3.0, 4.0, 6.0),
    "oi_scaled": (0.5, 1.0, 2.0, 4.0),
    "analytic": (0.5, 1.0, 2.0, 4.0),
    "predictive": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
}
"""Knob sweeps per policy (predictive and analytic share their mechanics and knob). Predictive
at knob 0 forecasts but does nothing — the reactive venue — which anchors the low-cost end of
its frontier."""
REFERENCE_KNOB = {"static": 1.0, "vol_scaled": 3.0, "oi_scaled": 1.0, "analytic": 1.0}
"""Each baseline's reference setting: the venue's own tiers, z = 3, dYdX-like OI scaling, and
the predictive mechanics at knob 1 fed by the first-passage probability."""
PREDICTIVE_REFERENCE_KNOB = 1.0
BASELINES = tuple(REFERENCE_KNOB)
METRICS = (
    "bad_debt",
    "liquidations",
    "liquidated_notional",
    "cascade_size",
    "if_drawdown_max",
    "if_exhausted",
    "adl_notional",
    "liquidation_slippage",
    "capital_cost",
    "trader_cost",
    "derisked_notional",
    "derisked_needless",
    "fallbacks",
    "coverage_windows",
    "coverage_exceedances",
)
COVERAGE_LEVEL = 0.99
"""The coverage a margin is taken to promise: moves beyond it in 1% of liquidation periods."""
REPLAY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "replay.toml"
"""The venue and population a real crash is replayed into (its market follows the file)."""
REPLAY_KNOBS = {**REFERENCE_KNOB, "predictive": PREDICTIVE_REFERENCE_KNOB}
"""Each policy's setting on the replays: the baselines' reference knobs, predictive at 1."""


class EvaluationError(ValueError):
    """Input an evaluation cannot run on; the message is one line naming the problem."""


@dataclass(frozen=True)
class PathRun:
    """One (scenario, seed, policy, knob) run to make."""

    scenario: str
    seed: int
    policy: str
    knob: float
    cfg: SimConfig
    source: ForecastSource = field(default_factory=ForecastSource)


def policy_config(cfg: SimConfig, policy: str, knob: float, horizon: float) -> SimConfig:
    """Return ``cfg`` under ``policy`` at ``knob`` (analytic runs the predictive mechanics)."""
    engine_name = "predictive" if policy == "analytic" else policy
    chosen = dataclasses.replace(cfg.policy, name=engine_name, knob=knob, horizon_minutes=horizon)
    return dataclasses.replace(
        cfg, policy=chosen, history=dataclasses.replace(cfg.history, sample_every_ticks=0)
    )


def scenario_configs(places: list[Path]) -> list[tuple[str, Path]]:
    """Return (name, path) of the scenario configs in ``places`` (files, or folders of
    ``*.toml``); refuse a missing place, an empty folder and a name given twice."""
    found: list[Path] = []
    for place in places:
        if place.is_dir():
            files = sorted(place.glob("*.toml"))
            if not files:
                raise EvaluationError(f"--scenarios {place} holds no scenario configs (*.toml)")
            found.extend(files)
        elif place.is_file():
            found.append(place)
        else:
            raise EvaluationError(f"--scenarios {place} does not exist")
    names = [f.stem for f in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EvaluationError(f"--scenarios names {', '.join(twice)} more than once")
    return [(f.stem, f) for f in found]


def check_held_out(model_meta: dict[str, Any], seeds: list[int], scenarios: list[str]) -> None:
    """Refuse evaluation seeds the model was trained, stopped or calibrated on, and a scenario
    set made only of families it was trained on."""
    trained = sorted({s for role in model_meta.get("seeds", {}).values() for s in role})
    overlap = sorted(set(trained) & set(seeds))
    if overlap:
        raise EvaluationError(
            f"evaluation seeds {overlap[:5]}{'...' if len(overlap) > 5 else ''} were used to "
            f"train the model (its seeds: {trained}); choose seeds outside them"
        )
    families = set(model_meta.get("scenarios", []))
    if families and not set(scenarios) - families:
        raise EvaluationError(
            f"every evaluation scenario ({', '.join(sorted(scenarios))}) was in the model's "
            "training data; add at least one family it has not seen"
        )


def plan(
    configs: list[tuple[str, Path]],
    seeds: list[int],
    knobs: dict[str, tuple[float, ...]],
    model: Any,
    horizon: float,
    overrides: tuple[str, ...] = (),
) -> list[PathRun]:
    """Return every run of the evaluation: each path under the reactive policy first, then
    every other (policy, knob)."""
    runs = []
    for name, path in configs:
        for seed in seeds:
            cfg = load_config(path, (*overrides, f"seed={seed}"))
            for policy, grid in knobs.items():
                for knob in grid:
                    pcfg = policy_config(cfg, policy, knob, horizon)
                    runs.append(
                        PathRun(name, seed, policy, knob, pcfg, forecasts_for(policy, model))
                    )
    return runs


def forecasts_for(policy: str, model: Any) -> ForecastSource:
    """Return where a policy's forecasts come from (none for the non-predictive ones)."""
    if policy == "predictive":
        return ForecastSource("model", model)
    if policy == "analytic":
        return ForecastSource("analytic")
    return ForecastSource()


FORECAST_ACCOUNT_FRACTION = 0.25
"""Share of each path's accounts whose sampled rows score the forecasts (all of their rows, so
the breach rate is the path's own)."""

FORECAST_FULL_SHARE_PATHS = 100
"""Evaluations of up to this many paths score FORECAST_ACCOUNT_FRACTION of every path's
accounts; larger ones score a smaller share, so that the forecasts gathered by the driver stay
about this many paths' worth (a full-size path sends 2.4 MB: 10,000 paths would be 24 GB)."""


def forecast_fraction(paths: int) -> float:
    """Return the share of each path's accounts that scores the forecasts in an evaluation of
    ``paths`` paths."""
    return FORECAST_ACCOUNT_FRACTION * min(1.0, FORECAST_FULL_SHARE_PATHS / max(paths, 1))


PathResult = tuple[list[dict[str, Any]], dict[str, np.ndarray], dict[str, pd.DataFrame]]


def run_path(
    runs: list[PathRun], timelines: bool = False, fraction: float = FORECAST_ACCOUNT_FRACTION
) -> PathResult:
    """Run one path (scenario, seed) under every policy of ``runs``; return one row of outcomes
    per run, the forecasts of the path's reactive history (labels, model, analytic) on a
    ``fraction`` of its accounts, and with ``timelines`` each policy's mark, liquidations and
    insurance fund per block.

    The reactive run (static, knob 1) goes first: the accounts it sees breach tell which
    pre-emptive de-risking of later runs fell on accounts that would not have breached, and its
    labelled history scores the forecasts out of sample.
    """
    from engine.sim import Simulation

    ordered = sorted(runs, key=lambda r: r.policy != "static" or r.knob != 1.0)
    model = next((r.source.model for r in runs if r.source.kind == "model"), None)
    rows, breachers = [], None
    forecasts: dict[str, np.ndarray] = {}
    series: dict[str, pd.DataFrame] = {}
    for run in ordered:
        reactive = breachers is None and run.policy == "static" and run.knob == 1.0
        cfg = run.cfg
        if reactive and model is not None:
            every = max(1, round(5 * 60_000 / cfg.tick_ms))  # sampled as the training set
            cfg = dataclasses.replace(
                cfg, history=dataclasses.replace(cfg.history, sample_every_ticks=every)
            )
        sim = Simulation(cfg, forecaster=run.source.build(cfg))
        sim.run()
        if reactive:
            breachers = np.unique(sim.onsets()[1])
            if model is not None:
                forecasts = score_history(sim, model, run.seed, fraction)
        outcome = run_outcomes(sim, breachers)
        rows.append(
            {"scenario": run.scenario, "seed": run.seed, "policy": run.policy, "knob": run.knob}
            | outcome
        )
        if timelines:
            series[run.policy] = timeline(sim)
    return rows, forecasts, series


def timeline(sim) -> pd.DataFrame:
    """Return the run's first market's mark, index, liquidations and total insurance fund per
    block (for the report's replay figures)."""
    r = sim.records
    t_end = sim.t + 1
    time_ms = sim.index.time_ms[:t_end] if sim.index.time_ms is not None else None
    return pd.DataFrame(
        {
            "tick": np.arange(t_end),
            "time_ms": time_ms if time_ms is not None else np.arange(t_end) * sim.cfg.tick_ms,
            "index": r["index_price"][:t_end, 0],
            "mark": r["mark_price"][:t_end, 0],
            "liquidations": r["liquidations"][:t_end].sum(axis=1),
            "insurance_fund": r["insurance_fund"][:t_end].sum(axis=1),
        }
    )


def score_history(
    sim, model: Any, seed: int, fraction: float = FORECAST_ACCOUNT_FRACTION
) -> dict[str, np.ndarray]:
    """Return labels and the model's and the analytic forecasts on a ``fraction`` of the
    accounts of a finished reactive run (rows whose horizon runs past the end are left out)."""
    from predictor.baselines import first_passage_probability
    from predictor.features import FEATURES, account_features, market_arrays, market_features

    horizon = float(model.horizon_minutes)
    label = f"label_{horizon:g}m"
    accounts = sim.labelled_accounts()
    if label not in accounts.columns:
        return {}
    names = [mk.name for mk in sim.cfg.markets]
    rng = np.random.default_rng(seed)
    ids = np.unique(accounts["account"].to_numpy())
    chosen = rng.choice(ids, max(1, int(fraction * ids.size)), replace=False)
    y = accounts[label].to_numpy()
    keep = np.flatnonzero((y >= 0) & np.isin(accounts["account"].to_numpy(), chosen))
    market = market_features(market_arrays(sim.market_frame(), names), sim.cfg.tick_ms)
    X = account_features(accounts, names, market, sim.cfg.tick_ms, horizon, keep)
    col = {f: j for j, f in enumerate(FEATURES)}
    analytic = first_passage_probability(
        X[:, col["distance_to_liquidation"]],
        X[:, col["direction"]],
        X[:, col["ewma_sigma_30m"]],
        horizon,
    )
    return {
        "y": y[keep].astype(np.int8),
        "model": model.predict_proba(X).astype(np.float32),
        "analytic": analytic.astype(np.float32),
    }


def forecast_quality(
    parts: list[dict[str, np.ndarray]], fraction: float = FORECAST_ACCOUNT_FRACTION
) -> dict[str, Any]:
    """Return PR-AUC, prevalence, Brier and ECE of the model and the analytic forecast on the
    evaluation paths' reactive histories (scored on a ``fraction`` of each path's accounts)."""
    from sklearn.metrics import average_precision_score, brier_score_loss

    from predictor.metrics import expected_calibration_error

    parts = [p for p in parts if p]
    if not parts:
        return {}
    y = np.concatenate([p["y"] for p in parts])
    out: dict[str, Any] = {
        "rows": int(y.size),
        "account_fraction": fraction,
        "prevalence": float(y.mean()),
    }
    for name in ("model", "analytic"):
        p = np.concatenate([part[name] for part in parts]).astype(np.float64)
        positives = bool(y.any())
        out[name] = {
            "pr_auc": float(average_precision_score(y, p)) if positives else None,
            "brier": float(brier_score_loss(y, p)),
            "ece": expected_calibration_error(y, p),
            "reliability": reliability(y, p),
        }
    return out


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[list[float]]:
    """Return [mean forecast, observed rate, rows] per quantile bin of ``p``."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
    out = []
    for b in range(max(edges.size - 1, 1)):
        sel = which == b
        if sel.any():
            out.append([float(p[sel].mean()), float(y[sel].mean()), int(sel.sum())])
    return out


def replay_plan(
    files: list[Path],
    seed: int,
    model: Any,
    horizon: float,
    overrides: tuple[str, ...] = (),
) -> list[PathRun]:
    """Return the replay runs: every file under each policy at REPLAY_KNOBS, one population.

    Each file is checked first (a malformed row is refused with its line). The population's
    positions are scaled to the file's opening price, so every event puts the same notional at
    risk: the opening price of the shipped config's file times its position size.
    """
    from engine.prices import load_bars

    reference = load_config(REPLAY_CONFIG, (f"seed={seed}",))
    k = [mk.name for mk in reference.markets].index(reference.index.replay_market)
    market = reference.markets[k]
    notional = market.initial_price * market.position_sigma_base
    runs = []
    for f in files:
        bars = load_bars(f)
        opening = float(bars["open"].iloc[0])
        cfg = load_config(
            REPLAY_CONFIG,
            (
                *overrides,
                f"seed={seed}",
                f'name="replay-{f.name.split(".")[0]}"',
                f'index.replay_file="{f.resolve()}"',
                f"markets.{k}.initial_price={opening!r}",
                f"markets.{k}.position_sigma_base={notional / opening!r}",
            ),
        )
        stem = f.name.split(".")[0]
        for policy, knob in REPLAY_KNOBS.items():
            pcfg = policy_config(cfg, policy, knob, horizon)
            runs.append(PathRun(stem, seed, policy, knob, pcfg, forecasts_for(policy, model)))
    return runs


def by_path(runs: list[PathRun]) -> list[list[PathRun]]:
    """Group runs by path (scenario, seed), in order."""
    groups: dict[tuple[str, int], list[PathRun]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.seed), []).append(r)
    return list(groups.values())


def execute(
    runs: list[PathRun], workers: int = 1, scheduler: str | None = None, timelines: bool = False
) -> Iterator[PathResult]:
    """Run every path, serially or on Dask; yield each path's results as it finishes."""
    from pipelines.cluster import map_tasks

    groups = by_path(runs)
    fraction = forecast_fraction(len(groups))
    yield from map_tasks(run_path, groups, workers, scheduler, timelines, fraction)


# ---- aggregation -------------------------------------------------------------------------------


def tail_mean(x: np.ndarray, level: float) -> float:
    """Return the mean of the worst (1 - level) share of ``x`` (at least one value): ES."""
    k = max(1, int(np.ceil((1.0 - level) * x.size - 1e-9)))  # 1% of 100 is 1, not 2
    return float(np.sort(x)[-k:].mean())


def frontier(results: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    """Return per policy, per knob: means over paths (and VaR95 / ES99 of bad debt)."""
    out: dict[str, list[dict[str, float]]] = {}
    for policy, frame in results.groupby("policy", sort=False):
        points = []
        for knob, g in frame.groupby("knob"):
            bad = g["bad_debt"].to_numpy()
            point = {"knob": float(knob), "paths": int(len(g))}
            for m in METRICS:
                point[m if m != "bad_debt" else "bad_debt_mean"] = float(g[m].mean())
            point["bad_debt_var95"] = float(np.quantile(bad, 0.95))
            point["bad_debt_es99"] = tail_mean(bad, 0.99)
            points.append(point)
        out[str(policy)] = points
    return out


def _matrices(results: pd.DataFrame, policy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (knobs, capital cost, bad debt) of ``policy``: (K,), (paths, K), (paths, K), rows
    in the order of the paths (scenario, seed)."""
    frame = results[results["policy"] == policy]
    cost = frame.pivot_table(index=["scenario", "seed"], columns="knob", values="capital_cost")
    bad = frame.pivot_table(index=["scenario", "seed"], columns="knob", values="bad_debt")
    return cost.columns.to_numpy(float), cost.to_numpy(), bad.to_numpy()


def efficient(cost: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the efficient frontier of knob points (cost, value): sorted by cost, each value
    the lowest any knob reaches at that cost or less (a venue would not pay more for worse)."""
    order = np.argsort(cost, kind="stable")
    return cost[order], np.minimum.accumulate(value[order])


def _match(
    pred_cost: np.ndarray,
    pred_bad: np.ndarray,
    base_cost: np.ndarray,
    base_bad: np.ndarray,
    references: tuple[int, int],
    stat: Callable[[np.ndarray], float],
) -> tuple[float, float, float] | None:
    """Return (matched capital cost, predictive's and the baseline's bad-debt statistic there,
    each read off its own efficient frontier), or None when either cannot be that cheap.

    The matched cost is the higher of the two policies' costs at their reference knobs: the
    baseline's setting, or predictive's, whichever holds more margin — so predictive is never
    judged at a cost below what its add-ons require (at the reactive venue's own cost it *is*
    the reactive venue). ``*_cost`` and ``*_bad`` are (paths, knobs); statistics over paths.
    """
    x_base = base_cost.mean(axis=0)
    y_base = np.array([stat(base_bad[:, j]) for j in range(base_bad.shape[1])])
    x_pred = pred_cost.mean(axis=0)
    y_pred = np.array([stat(pred_bad[:, j]) for j in range(pred_bad.shape[1])])
    cost = float(max(x_base[references[1]], x_pred[references[0]]))
    xp, yp = efficient(x_pred, y_pred)
    xb, yb = efficient(x_base, y_base)
    if cost < xp[0] - 1e-12 or cost < xb[0] - 1e-12:
        return None
    return cost, float(np.interp(cost, xp, yp)), float(np.interp(cost, xb, yb))


def headline(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Return, per baseline, predictive's bad-debt reduction at the baseline's capital cost
    (mean and ES99 over paths), with paired bootstrap 95% intervals (paths resampled with
    replacement, the same draw for both policies)."""
    rng = np.random.default_rng(seed)
    stats = {"mean": lambda x: float(np.mean(x)), "es99": lambda x: tail_mean(x, 0.99)}
    out: dict[str, dict[str, Any]] = {}
    if "predictive" not in set(results["policy"]):
        return out
    pred_knobs, pred_cost, pred_bad = _matrices(results, "predictive")
    pred_ref = np.flatnonzero(pred_knobs == PREDICTIVE_REFERENCE_KNOB)
    if pred_ref.size == 0:
        return out
    n_paths = pred_cost.shape[0]
    picks = rng.integers(0, n_paths, (n_boot, n_paths))
    for baseline in BASELINES:
        if baseline not in set(results["policy"]):
            continue
        knobs, base_cost, base_bad = _matrices(results, baseline)
        col = np.flatnonzero(knobs == REFERENCE_KNOB[baseline])
        entry: dict[str, Any] = {"reference_knob": REFERENCE_KNOB[baseline]}
        for label, stat in stats.items():
            point = None
            if col.size:
                refs = (int(pred_ref[0]), int(col[0]))
                point = _match(pred_cost, pred_bad, base_cost, base_bad, refs, stat)
            if point is None:
                entry[label] = None
                continue
            cost, pred_value, base_value = point
            draws = []
            for pick in picks:
                again = _match(
                    pred_cost[pick], pred_bad[pick], base_cost[pick], base_bad[pick], refs, stat
                )
                if again is not None:
                    draws.append(again[2] - again[1])
            low, high = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
            entry[label] = {
                "baseline": base_value,
                "predictive": pred_value,
                "reduction": base_value - pred_value,
                "reduction_share": (base_value - pred_value) / base_value if base_value else 0.0,
                "ci95": [float(low), float(high)],
                "bootstrap_draws_matched": len(draws),
            }
            entry["capital_cost"] = cost
        out[baseline] = entry
    return out


def replay_table(replays: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Return file stem -> policy -> outcomes."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in replays.to_dict("records"):
        outcome = {m: float(row[m]) for m in METRICS} | {"knob": float(row["knob"])}
        out.setdefault(str(row["scenario"]), {})[str(row["policy"])] = outcome
    return out


def kupiec(windows: int, exceedances: int, level: float = COVERAGE_LEVEL) -> dict[str, float]:
    """Return the exceedance rate and Kupiec's proportion-of-failures test against 1 - level
    (likelihood ratio, chi-square with one degree of freedom; a small p-value rejects the
    margin's claimed coverage)."""
    from scipy.stats import chi2

    p = 1.0 - level
    n, x = windows, exceedances
    if n == 0:
        return {"windows": 0, "exceedances": 0, "rate": float("nan"), "p_value": float("nan")}
    rate = x / n

    def loglik(q: float) -> float:
        q = min(max(q, 1e-300), 1 - 1e-16)
        return (n - x) * np.log1p(-q) + x * np.log(q)

    lr = -2.0 * (loglik(p) - loglik(rate))  # the clamp makes 0 x log(0) terms vanish
    return {
        "windows": n,
        "exceedances": x,
        "rate": rate,
        "p_value": float(chi2.sf(max(lr, 0.0), 1)),
    }


def coverage(results: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Return per policy and knob the margin coverage over every path (Kupiec test)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (policy, knob), g in results.groupby(["policy", "knob"]):
        test = kupiec(int(g["coverage_windows"].sum()), int(g["coverage_exceedances"].sum()))
        out.setdefault(str(policy), {})[f"{knob:g}"] = test
    return out


def write_summary(
    out: Path,
    results: pd.DataFrame,
    lineage: dict[str, Any],
    n_boot: int = 1000,
    replays: pd.DataFrame | None = None,
    forecast: dict[str, Any] | None = None,
    replay_series: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> dict[str, Any]:
    """Write runs.parquet (and replays.parquet), summary.json and report.html into ``out`` —
    all or nothing: a failure leaves no partial report — and return the summary."""
    import os
    import shutil
    import tempfile

    from pipelines.report import write_report

    summary = {
        "headline": headline(results, n_boot),
        "frontier": frontier(results),
        "replays": {} if replays is None else replay_table(replays),
        "forecast": forecast or {},
        "coverage": coverage(results),
        "lineage": lineage,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        results.to_parquet(tmp / "runs.parquet", index=False)
        if replays is not None:
            replays.to_parquet(tmp / "replays.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        write_report(tmp, summary, results, replay_series)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def format_headline(summary: dict[str, Any]) -> str:
    """Return the headline as a plain-text table."""
    lines = [
        f"{'vs baseline':<12} {'capital cost':>12} {'bad debt (base)':>16} {'predictive':>12} "
        f"{'reduction':>10} {'95% CI':>24}   (mean over paths)"
    ]
    for baseline, entry in summary["headline"].items():
        m = entry.get("mean")
        if m is None:
            lines.append(f"{baseline:<12} not matched: its capital cost is outside the frontier")
            continue
        lo, hi = m["ci95"]
        lines.append(
            f"{baseline:<12} {entry['capital_cost']:>12.4f} {m['baseline']:>16,.0f} "
            f"{m['predictive']:>12,.0f} {m['reduction_share']:>9.1%} "
            f"{f'[{lo:,.0f}, {hi:,.0f}]':>24}"
        )
    for stem, policies in summary.get("replays", {}).items():
        cells = ", ".join(f"{p} {v['bad_debt']:,.0f}" for p, v in policies.items())
        lines.append(f"replay {stem}: bad debt {cells}")
    return "\n".join(lines)


def run_evaluation(
    model_uri: str,
    scenario_places: list[Path],
    seeds: str,
    replay_places: list[Path],
    out: Path,
    overrides: tuple[str, ...] = (),
    workers: int = 1,
    scheduler: str | None = None,
    bootstrap: int = 1000,
    tracking_uri: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
    replay_overrides: tuple[str, ...] | None = None,
) -> tuple[dict[str, Any], str]:
    """Run a whole evaluation into ``out`` and log it; return (summary, MLflow run id).

    Every input is checked before the first run (the tracking URI, the seeds, the scenarios,
    the model and its lineage, every replay file); errors are one-line exceptions
    (EvaluationError, ModelError, ConfigError, ReplayError, TrackingError, ValueError).
    ``replay_overrides`` apply to the replays instead of ``overrides`` when given.
    """
    import time

    from pipelines.describe import real_files
    from pipelines.simulate import parse_seeds
    from predictor.serving import load_forecaster, registry_version
    from predictor.tracking import DEFAULT_TRACKING_URI, TrackingError, connect, log_evaluation

    uri = tracking_uri or DEFAULT_TRACKING_URI
    connect(uri)  # fail before the runs, not after
    seed_list = parse_seeds(seeds)
    configs = scenario_configs(scenario_places)
    model = load_forecaster(model_uri, tracking_uri=uri)
    check_held_out(model.meta_, seed_list, [name for name, _ in configs])
    runs = plan(configs, seed_list, DEFAULT_KNOBS, model, model.horizon_minutes, overrides)
    replay_runs: list[PathRun] = []
    if replay_places:
        files = real_files([str(p) for p in replay_places])
        if not files:
            raise EvaluationError(
                f"--replays {', '.join(map(str, replay_places))} holds no 1-minute bar files"
            )
        replay_runs = replay_plan(
            files,
            seed_list[0],
            model,
            model.horizon_minutes,
            overrides if replay_overrides is None else replay_overrides,
        )
    paths = len({(r.scenario, r.seed) for r in runs})
    settings = sum(len(k) for k in DEFAULT_KNOBS.values())
    progress(f"evaluating {len(runs)} runs: {paths} paths x {settings} policy settings")
    t0 = time.perf_counter()
    rows, scored = [], {}
    for done, (path_rows, forecasts, _) in enumerate(execute(runs, workers, scheduler), start=1):
        rows.extend(path_rows)
        first = path_rows[0]
        scored[first["scenario"], first["seed"]] = forecasts
        progress(
            f"[{time.perf_counter() - t0:7.1f}s] path {done}/{paths}: "
            f"{first['scenario']} seed {first['seed']}"
        )
    results = pd.DataFrame(rows).sort_values(["scenario", "seed", "policy", "knob"])
    replays = None
    replay_series: dict[str, dict[str, pd.DataFrame]] = {}
    if replay_runs:
        replay_rows = []
        for path_rows, _, series in execute(replay_runs, workers, scheduler, timelines=True):
            replay_rows.extend(path_rows)
            replay_series[path_rows[0]["scenario"]] = series
            progress(f"[{time.perf_counter() - t0:7.1f}s] replay {path_rows[0]['scenario']}")
        replays = pd.DataFrame(replay_rows).sort_values(["scenario", "policy"])
    meta = model.meta_
    lineage = {
        "model_uri": model_uri,
        "model_version": registry_version(model_uri, uri)
        or meta.get("registry", {}).get("version"),
        "model_data_hash": meta.get("data_hash"),
        "training_seeds": sorted({s for role in meta.get("seeds", {}).values() for s in role}),
        "training_scenarios": meta.get("scenarios", []),
        "evaluation_seeds": seed_list,
        "scenarios": {r.scenario: r.cfg.hash() for r in runs if r.policy == "static"},
        "knobs": {k: list(v) for k, v in DEFAULT_KNOBS.items()},
        "tracking_uri": uri,
    }
    summary = write_summary(
        out,
        results.reset_index(drop=True),
        lineage,
        bootstrap,
        replays,
        # In path order, not finishing order: the same figures serially and on a cluster.
        forecast_quality([scored[key] for key in sorted(scored)], forecast_fraction(paths)),
        replay_series,
    )
    try:
        run_id = log_evaluation(uri, out, summary)
    except TrackingError as e:
        raise TrackingError(f"the report is written to {out}, but logging it failed: {e}") from None
    return summary, run_id
