"""The evaluation's methodology: what is compared, and how a comparison is judged.

Kept apart from the command (:mod:`pipelines.evaluate`, which runs paths and writes the report)
so that the report, the demo and the tests read one definition of: the knob grids and each
policy's reference setting, the control arms, the held-out rule for seeds and families, the plan
of runs, the forecast-quality scores, and the aggregation — frontiers, knobs matched at equal
all-in cost on the tuning seeds, paired bootstrap intervals on the evaluation seeds (resampled
within each family), the same-budget comparisons, pairing correlations and Kupiec's coverage
test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config import SimConfig, load_config
from engine.errors import PredliqError
from pipelines.simulate import ForecastSource

DEFAULT_KNOBS: dict[str, tuple[float, ...]] = {
    "static": (1.0, 1.1, 1.25, 1.5),
    "vol_scaled": (2.0, 3.0, 4.0, 6.0),
    "oi_scaled": (1.0, 4.0),
    "analytic": (10.0, 30.0, 100.0, 300.0),
    "predictive": (0.0, 10.0, 30.0, 100.0, 300.0),
    "breached_only": (10.0, 30.0, 100.0, 300.0),
    "random": (10.0, 30.0, 100.0, 300.0),
    "oracle": (10.0, 30.0, 100.0, 300.0),
}
"""Knob sweeps per policy. Every forecast-driven arm runs the predictive policy's budget
allocation (``policy.allocation = "budget"``): its knob is the number of actions — margin calls
or de-risks — per forecast, given to the accounts whose expected loss avoided per unit of cost
is highest. Predictive at knob 0 forecasts but does nothing — the reactive venue — which
anchors the low-cost end of its frontier."""
ALLOCATION = "budget"
REFERENCE_KNOB = {"static": 1.0, "vol_scaled": 3.0, "oi_scaled": 1.0, "analytic": 30.0}
"""Each baseline's reference setting: the venue's own tiers, z = 3, dYdX-like OI scaling, and
30 actions per forecast ranked by the first-passage probability times the analytic loss."""
PREDICTIVE_REFERENCE_KNOB = 30.0
BASELINES = tuple(REFERENCE_KNOB)
CONTROLS = ("breached_only", "random", "oracle")
"""Control arms, each the predictive mechanics fed by: p = 1 for accounts already in breach
(and allowed to act on them) — what the mechanics buy as reactive extras; the model's forecast
shuffled among the accounts it scored — the same action budget on random accounts of the risk
band; and perfect foresight of each account's bad debt within the horizon (the reactive run's
own future)."""
FORECAST_POLICIES = ("analytic", "predictive", *CONTROLS)
COST = "all_in_cost"
"""What policies are matched on (engine.outcomes: margin held, forced deposits, de-risking paid,
refused orders, in one unit)."""
METRICS = (
    "bad_debt",
    "deficit_at_end",
    "below_maintenance_at_end",
    "liquidations",
    "liquidated_notional",
    "cascade_size",
    "if_drawdown_max",
    "if_exhausted",
    "adl_notional",
    "liquidation_slippage",
    "capital_cost",
    "deposit_cost",
    "derisk_cost",
    "refusal_cost",
    "all_in_cost",
    "call_deposits",
    "derisk_paid",
    "refused_notional",
    "trader_cost",
    "derisked_notional",
    "derisked_needless",
    "fallbacks",
    "coverage_windows",
    "coverage_exceedances",
)
COVERAGE_LEVEL = 0.99
"""The coverage a margin is taken to promise: moves beyond it in 1% of liquidation periods."""


class EvaluationError(PredliqError, ValueError):
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
    role: str = "eval"  # "tune": chooses knobs; "eval": reports


def policy_config(cfg: SimConfig, policy: str, knob: float, horizon: float) -> SimConfig:
    """Return ``cfg`` under ``policy`` at ``knob`` (every forecast-driven arm runs the
    predictive mechanics; ``breached_only`` may act on accounts in breach)."""
    engine_name = "predictive" if policy in FORECAST_POLICIES else policy
    chosen = dataclasses.replace(
        cfg.policy,
        name=engine_name,
        knob=knob,
        horizon_minutes=horizon,
        act_on_breached=policy == "breached_only",
        allocation=ALLOCATION if policy in FORECAST_POLICIES else cfg.policy.allocation,
    )
    return dataclasses.replace(
        cfg, policy=chosen, history=dataclasses.replace(cfg.history, sample_every_ticks=0)
    )


def check_held_out(
    model_meta: dict[str, Any],
    seeds: list[int],
    scenarios: list[str],
    tune_seeds: list[int] | None = None,
) -> None:
    """Refuse evaluation or tuning seeds the model was trained, stopped or calibrated on,
    tuning seeds that are also evaluation seeds, and a scenario set made only of families the
    model was trained on."""
    trained = sorted({s for role in model_meta.get("seeds", {}).values() for s in role})
    for option, chosen in (("--seeds", seeds), ("--tune-seeds", tune_seeds or [])):
        overlap = sorted(set(trained) & set(chosen))
        if overlap:
            raise EvaluationError(
                f"{option} {overlap[:5]}{'...' if len(overlap) > 5 else ''} were used to "
                f"train the model (its seeds: {trained}); choose seeds outside them"
            )
    both = sorted(set(seeds) & set(tune_seeds or []))
    if both:
        raise EvaluationError(
            f"--tune-seeds and --seeds share {both[:5]}{'...' if len(both) > 5 else ''}: knobs "
            "chosen on a seed cannot be reported on it"
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
    tune_seeds: list[int] | None = None,
) -> list[PathRun]:
    """Return every run of the evaluation: each path (tuning paths first) under every
    (policy, knob) of ``knobs``."""
    runs = []
    for role, chosen in (("tune", tune_seeds or []), ("eval", seeds)):
        for name, path in configs:
            for seed in chosen:
                cfg = load_config(path, (*overrides, f"seed={seed}"))
                for policy, grid in knobs.items():
                    for knob in grid:
                        pcfg = policy_config(cfg, policy, knob, horizon)
                        source = forecasts_for(policy, model)
                        runs.append(PathRun(name, seed, policy, knob, pcfg, source, role))
    return runs


def forecasts_for(policy: str, model: Any) -> ForecastSource:
    """Return where a policy's forecasts come from (none for the non-predictive ones; the
    oracle's is built from the path's reactive run, see run_path)."""
    if policy == "predictive":
        return ForecastSource("model", model)
    if policy == "random":
        return ForecastSource("random", model)
    if policy in ("analytic", "breached_only", "oracle"):
        return ForecastSource(policy)
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


def forecast_quality(
    parts: dict[tuple[str, int], dict[str, np.ndarray]],
    fraction: float = FORECAST_ACCOUNT_FRACTION,
) -> dict[str, Any]:
    """Return PR-AUC, prevalence, Brier and ECE of the model and the analytic forecast on the
    evaluation paths' reactive histories (a ``fraction`` of each path's accounts), keyed by
    (scenario, seed): ``acted`` — the rows the policy acts on (open position, not in breach,
    inside the risk band), pooled and per family — and ``all_rows`` — every labelled row (the
    figure earlier versions reported; it includes rows no forecast is ever asked about)."""
    kept = {key: part for key, part in parts.items() if part}
    if not kept:
        return {}

    def score(chosen: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score, brier_score_loss

        from predictor.metrics import expected_calibration_error, loss_metrics

        y = np.concatenate([part["y"][sel] for part, sel in chosen])
        out: dict[str, Any] = {"rows": int(y.size)}
        if y.size == 0:
            return out
        out["prevalence"] = float(y.mean())
        realised = np.concatenate([part["loss"][sel] for part, sel in chosen])
        for name in ("model", "analytic"):
            p = np.concatenate([part[name][sel] for part, sel in chosen]).astype(np.float64)
            out[name] = {
                "pr_auc": float(average_precision_score(y, p)) if y.any() else None,
                "brier": float(brier_score_loss(y, p)),
                "ece": expected_calibration_error(y, p),
                "reliability": reliability(y, p),
            }
            if all(f"{name}_loss" in part for part, _ in chosen):
                loss = np.concatenate([part[f"{name}_loss"][sel] for part, sel in chosen])
                out[name].update(loss_metrics(loss, realised, y))
        return out

    families = sorted({scenario for scenario, _ in kept})
    ordered = [kept[key] for key in sorted(kept)]
    acted = {"pooled": score([(p, p["acted"]) for p in ordered])}
    for family in families:
        acted[family] = score([(kept[k], kept[k]["acted"]) for k in sorted(kept) if k[0] == family])
    return {
        "account_fraction": fraction,
        "acted": acted,
        "all_rows": score([(p, np.ones(p["y"].size, bool)) for p in ordered]),
    }


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


def by_path(runs: list[PathRun]) -> list[list[PathRun]]:
    """Group runs by path (scenario, seed), in order."""
    groups: dict[tuple[str, str, int], list[PathRun]] = {}
    for r in runs:
        groups.setdefault((r.role, r.scenario, r.seed), []).append(r)
    return list(groups.values())


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


def reference_knob(policy: str) -> float:
    """Return a policy's reference setting (every forecast-driven arm: 30 actions a forecast)."""
    return REFERENCE_KNOB.get(policy, PREDICTIVE_REFERENCE_KNOB)


def _knob_means(results: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Return per knob of ``policy`` the mean all-in cost and bad debt over paths."""
    frame = results[results["policy"] == policy]
    return frame.groupby("knob")[[COST, "bad_debt"]].mean()


def _best_knob(means: pd.DataFrame, cost: float) -> float | None:
    """Return the knob of ``means`` (from _knob_means) with the least mean bad debt at ``cost``
    or less, or None when no knob is that cheap."""
    affordable = means[means[COST] <= cost * (1 + 1e-9)]
    return None if affordable.empty else float(affordable["bad_debt"].idxmin())


def choose_knobs(tune: pd.DataFrame, policy: str, baseline: str) -> dict[str, Any]:
    """Return the matched cost and each policy's knob for ``policy`` against ``baseline``, read
    off the tuning paths: the cost is the higher of the two policies' mean all-in costs at
    their reference knobs, each knob the one with the least mean bad debt at that cost or less
    (None: the policy cannot be that cheap — reported as not reached, never clamped)."""
    means = {p: _knob_means(tune, p) for p in (policy, baseline)}
    refs = {}
    for p in (policy, baseline):
        ref = reference_knob(p)
        if ref not in means[p].index:
            raise EvaluationError(f"the tuning runs of {p} lack its reference knob {ref:g}")
        refs[p] = float(means[p].loc[ref, COST])
    cost = max(refs.values())
    knobs = {p: _best_knob(m, cost) for p, m in means.items()}
    return {
        "matched_cost": cost,
        "reference_costs": refs,
        "knobs": knobs,
        "cheapest": {p: float(m[COST].min()) for p, m in means.items()},
    }


def _path_values(results: pd.DataFrame, policy: str, knob: float, column: str) -> pd.Series:
    sel = results[(results["policy"] == policy) & (results["knob"] == knob)]
    return sel.set_index(["scenario", "seed"])[column].sort_index()


def _stratified_draws(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Return (n_boot, paths) bootstrap indices resampled with replacement within each group
    (each family keeps its number of paths in every draw)."""
    picks = np.empty((n_boot, groups.size), np.int64)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        picks[:, members] = members[rng.integers(0, members.size, (n_boot, members.size))]
    return picks


HALF_WIDTH_TARGET = 0.03
"""A headline interval is precise enough when its half-width is at most this share of the
baseline's mean bad debt."""


def paired_comparison(
    results: pd.DataFrame,
    policy: str,
    knob: float,
    baseline: str,
    base_knob: float,
    n_boot: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Return ``baseline``'s bad debt less ``policy``'s, path by path, on ``results`` (one or
    more families): mean, paired bootstrap 95% interval (paths resampled within each family),
    its half-width as a share of the baseline's bad debt and the paths that would bring it to
    HALF_WIDTH_TARGET, the paired correlation, and both policies' mean costs."""
    base = _path_values(results, baseline, base_knob, "bad_debt")
    mine = _path_values(results, policy, knob, "bad_debt").reindex(base.index)
    if base.empty or mine.isna().any():
        raise EvaluationError(f"{policy} {knob:g} and {baseline} {base_knob:g} lack paired paths")
    diff = (base - mine).to_numpy()
    groups = np.array([scenario for scenario, _ in base.index])
    picks = _stratified_draws(groups, n_boot, np.random.default_rng(seed))
    draws = diff[picks].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    base_mean = float(base.mean())
    half = float((high - low) / 2.0)
    share = half / base_mean if base_mean > 0 else float("nan")
    n = int(diff.size)
    needed = int(np.ceil(n * (share / HALF_WIDTH_TARGET) ** 2)) if np.isfinite(share) else None
    a, b = base.to_numpy(), mine.to_numpy()
    corr = float(np.corrcoef(a, b)[0, 1]) if n >= 3 and a.std() > 0 and b.std() > 0 else None
    costs = {
        p: float(_path_values(results, p, k, COST).mean())
        for p, k in ((policy, knob), (baseline, base_knob))
    }
    return {
        "paths": n,
        "baseline_bad_debt": base_mean,
        "policy_bad_debt": float(mine.mean()),
        "reduction": float(diff.mean()),
        "reduction_share": float(diff.mean()) / base_mean if base_mean > 0 else 0.0,
        "ci95": [float(low), float(high)],
        "half_width_share": share,
        "paths_for_target": needed,
        "paired_correlation": corr,
        "paired_sd": float(diff.std(ddof=1)) if n > 1 else None,
        "all_in_cost": costs,
    }


SAME_BUDGET_RIVALS = ("analytic", "random")
"""What the model-driven arm is compared with at the same budget (not at matched cost): the
analytic forecast and the random ranking spending the same number of actions."""


def same_budget(results: pd.DataFrame, n_boot: int = 1000) -> dict[str, Any]:
    """Return, for every budget (knob) the model-driven arm shares with each rival of
    SAME_BUDGET_RIVALS, the rival's bad debt less the model's on the evaluation paths, pooled and
    per family: what the ranking alone is worth when both spend the same actions."""
    evaluation = results[results["role"] == "eval"]
    mine = set(evaluation.loc[evaluation["policy"] == "predictive", "knob"])
    out: dict[str, Any] = {}
    for rival in SAME_BUDGET_RIVALS:
        theirs = set(evaluation.loc[evaluation["policy"] == rival, "knob"])
        for knob in sorted(k for k in mine & theirs if k > 0):
            out.setdefault(rival, {})[f"{knob:g}"] = {
                name: paired_comparison(frame, "predictive", knob, rival, knob, n_boot)
                for name, frame in by_family(evaluation)
            }
    return out


def by_family(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Return ("pooled", every path), then each family alone."""
    families = sorted(results["scenario"].unique())
    out = [("pooled", results)]
    if len(families) > 1:
        out += [(f, results[results["scenario"] == f]) for f in families]
    return out


def headline(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Return the out-of-sample headline: knobs chosen on the tuning paths (``role`` "tune"),
    reported on the evaluation paths per family and pooled — predictive against each baseline,
    and each control arm against the reactive venue at predictive's matched cost, with the
    share of predictive's reduction it reproduces."""
    tune = results[results["role"] == "tune"]
    evaluation = results[results["role"] == "eval"]
    policies = set(results["policy"])
    if tune.empty or evaluation.empty:
        raise EvaluationError("an evaluation needs both tuning and evaluation paths")
    out: dict[str, Any] = {"comparisons": {}, "controls": {}}
    if "predictive" not in policies:
        return out

    def entry(policy: str, baseline: str, choice: dict[str, Any]) -> dict[str, Any]:
        knobs = choice["knobs"]
        row: dict[str, Any] = {"tuning": choice}
        missing = [p for p in (policy, baseline) if knobs[p] is None]
        if missing:
            row["not_reached"] = {
                p: f"its cheapest knob costs {choice['cheapest'][p]:.2%} of open interest on "
                f"the tuning seeds, above the matched cost {choice['matched_cost']:.2%}"
                for p in missing
            }
            return row
        row["families"] = {
            name: paired_comparison(
                frame, policy, knobs[policy], baseline, knobs[baseline], n_boot, seed
            )
            for name, frame in by_family(evaluation)
        }
        return row

    for baseline in BASELINES:
        if baseline in policies:
            choice = choose_knobs(tune, "predictive", baseline)
            out["comparisons"][baseline] = entry("predictive", baseline, choice)
    if "static" in policies:
        static_cost = out["comparisons"]["static"]["tuning"]["matched_cost"]
        gains = out["comparisons"]["static"].get("families", {})
        for arm in CONTROLS:
            if arm not in policies:
                continue
            choice = choose_knobs(tune, arm, "static")
            # Every control is matched at predictive's cost against the reactive venue.
            choice = {
                **choice,
                "matched_cost": static_cost,
                "knobs": {
                    arm: _best_knob(_knob_means(tune, arm), static_cost),
                    "static": out["comparisons"]["static"]["tuning"]["knobs"]["static"],
                },
            }
            row = entry(arm, "static", choice)
            for name, figures in row.get("families", {}).items():
                # A share of a gain only means something when there is a gain to share: one
                # whose 95% interval excludes zero (a share of noise can be any number).
                gain = gains.get(name, {})
                resolved = gain.get("reduction") is not None and gain["ci95"][0] > 0
                figures["share_of_predictive_reduction"] = (
                    figures["reduction"] / gain["reduction"] if resolved else None
                )
            out["controls"][arm] = row
    return out


def pairing(results: pd.DataFrame, knobs: dict[str, float]) -> dict[str, Any]:
    """Return per family the correlation of bad debt across evaluation paths between every two
    policies at ``knobs`` (the common random numbers at work) and its minimum."""
    evaluation = results[results["role"] == "eval"]
    out: dict[str, Any] = {}
    for name, frame in by_family(evaluation):
        columns = {
            p: _path_values(frame, p, k, "bad_debt") for p, k in knobs.items() if k is not None
        }
        table = pd.DataFrame(columns).dropna()
        if len(table) < 3:
            continue
        corr = table.corr()
        pairs = {
            f"{a}~{b}": float(corr.loc[a, b])
            for i, a in enumerate(corr.columns)
            for b in corr.columns[i + 1 :]
            if np.isfinite(corr.loc[a, b])
        }
        out[name] = {
            "paths": int(len(table)),
            "min": min(pairs.values()) if pairs else None,
            "pairs": pairs,
        }
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


def headline_rows(head: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (policy, baseline, row) of the headline: predictive against each baseline, then
    each control arm against the reactive venue."""
    for baseline, row in head["comparisons"].items():
        yield "predictive", baseline, row
    for arm, row in head["controls"].items():
        yield arm, "static", row


def chosen_knobs(head: dict[str, Any]) -> dict[str, float | None]:
    """Return each policy's knob for the replays and the pairing table: predictive's and the
    controls' as chosen against the reactive venue, each baseline's as chosen against
    predictive."""
    knobs: dict[str, float | None] = {}
    static = head["comparisons"].get("static")
    if static:
        knobs.update(static["tuning"]["knobs"])
    for baseline, row in head["comparisons"].items():
        knobs.setdefault(baseline, row["tuning"]["knobs"][baseline])
    for arm, row in head["controls"].items():
        knobs[arm] = row["tuning"]["knobs"][arm]
    return knobs
