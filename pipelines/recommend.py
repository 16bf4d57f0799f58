"""`predliq recommend`: the parameters a venue should set to stay within its loss budget.

A risk committee asks: "what maintenance margin, OI cap and insurance fund keep our 99%
expected-shortfall bad debt under $K at the least cost?" This module answers by search:

1. **The question.** A declared search space of config keys (``--space KEY=LOW:HIGH``, ``:log``,
   ``:int``, or ``KEY=A,B,C``; ``policy=static,predictive`` chooses the policy), one or more
   budgets on any outcome statistic the evaluation reports (``es99_bad_debt<=250000``,
   ``mean_if_exhausted<=0.05``, ``var95_adl_notional<=1e6``), and an objective to minimise
   (OBJECTIVES: the all-in cost by default).
2. **The search.** Optuna's TPE sampler with constraints: a candidate is scored on the search
   seeds (every scenario x seed, paired: the same paths for every candidate), infeasible ones
   steer the sampler rather than being dropped. Trials are asked in fixed-size batches and run
   as Dask tasks; results are told in the order asked, so the study depends on its seed, not on
   the number of workers. The study lives in SQLite and resumes where it stopped.
3. **The confirmation.** Outcomes are noisy: the best few candidates (feasible first, by
   objective) are re-run on fresh confirmation seeds, each budget's statistic gets a paired
   bootstrap 95% interval over those paths, and the recommendation is the cheapest candidate
   whose budgets hold at the far end of their interval, not only at the point. None holding
   is reported as infeasible with the closest candidate (exit code 3).
4. **The evidence.** The Pareto front of cost against the first budget's statistic over every
   trial, each confirmed candidate with its intervals, and a one-at-a-time sweep around the
   recommendation (each key moved by a tenth of its range either way) that shows which key the
   outcome is most sensitive to. Written as recommendation.toml (a config overlay), a JSON of
   the evidence and report.html; the study's trials are MLflow child runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import ConfigError, SimConfig, load_config
from engine.errors import PredliqError

OBJECTIVES = {
    "all_in": "the all-in cost (margin held, forced deposits, de-risking paid, refused orders; "
    "a share of open interest) plus the insurance fund held, as a share of open interest",
    "capital": "margin held plus the insurance fund held, as a share of open interest",
    "trader": "the all-in cost the traders bear, without the venue's insurance fund",
}
POLICIES = ("static", "vol_scaled", "oi_scaled", "analytic", "predictive")
"""Policies a recommendation may choose (the evaluation's control arms are not deployable)."""
OUTCOMES = (
    "bad_debt",
    "deficit_at_end",
    "liquidations",
    "liquidated_notional",
    "cascade_size",
    "if_drawdown_max",
    "if_drawdown_share",
    "if_exhausted",
    "adl_notional",
    "liquidation_slippage",
    "capital_cost",
    "deposit_cost",
    "derisk_cost",
    "refusal_cost",
    "all_in_cost",
    "trader_cost",
    "derisked_notional",
    "fund_cost",
)
"""Per-path outcomes a budget may constrain (engine.outcomes.run_outcomes, quote units or
shares of open interest; ``if_exhausted`` is 0/1, so ``mean_if_exhausted`` is the probability
that the insurance fund runs dry; ``fund_cost`` is the opening insurance fund / open interest)."""
EXIT_INFEASIBLE = 3
BOOTSTRAP = 1000
SENSITIVITY_STEP = 0.1
"""The one-at-a-time sweep moves each key by this share of its range either way."""
_STAT = re.compile(r"^(mean|max|var(\d+(?:\.\d+)?)|es(\d+(?:\.\d+)?))_([a-z_]+)$")
_BUDGET = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|>=)\s*([-+0-9.eE_]+)\s*$")


class RecommendError(PredliqError, ValueError):
    """A search that cannot be set up as asked; the message names the option."""


# ---- the question -------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """One constraint: ``<stat>_<outcome> <= bound`` (or >=) over the paths of a candidate."""

    text: str
    stat: str  # mean | max | var | es
    level: float  # the quantile of var and es, in (0, 1); 0 otherwise
    outcome: str
    op: str
    bound: float

    @property
    def metric(self) -> str:
        return self.text.split("<=")[0].split(">=")[0].strip()

    def value(self, per_path: np.ndarray) -> float:
        """The statistic over the paths' outcomes."""
        x = np.asarray(per_path, np.float64)
        if self.stat == "mean":
            return float(x.mean())
        if self.stat == "max":
            return float(x.max())
        q = float(np.quantile(x, self.level))
        if self.stat == "var":
            return q
        return float(x[x >= q].mean())  # es: the mean of the tail at and beyond the quantile

    def violation(self, value: float) -> float:
        """How far ``value`` is past the bound (<= 0: the budget holds), in the bound's units."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def far_end(self, ci: tuple[float, float]) -> float:
        """The end of a 95% interval that must still hold: the upper for <=, the lower for >=."""
        return ci[1] if self.op == "<=" else ci[0]


def parse_budget(text: str, outcomes: Iterable[str]) -> Budget:
    """Parse ``es99_bad_debt<=250000``; refuse anything else with one line."""
    m = _BUDGET.match(text)
    if not m:
        raise RecommendError(
            f"--budget must look like STAT_OUTCOME<=NUMBER (e.g. es99_bad_debt<=250000), "
            f"was {text!r}"
        )
    metric, op, raw = m.groups()
    try:
        bound = float(raw.replace("_", ""))
    except ValueError:
        raise RecommendError(f"--budget {text!r}: {raw!r} is not a number") from None
    s = _STAT.match(metric)
    if not s:
        raise RecommendError(
            f"--budget {text!r}: the statistic must be mean_, max_, varQ_ or esQ_ (Q a "
            "percentile, e.g. es99_bad_debt)"
        )
    stat_text, var_q, es_q, outcome = s.groups()
    known = sorted(outcomes)
    if outcome not in known:
        raise RecommendError(
            f"--budget {text!r}: unknown outcome {outcome!r} (one of {', '.join(known)})"
        )
    stat, level = stat_text, 0.0
    if var_q or es_q:
        stat = "var" if var_q else "es"
        level = float(var_q or es_q) / 100.0
        if not 0 < level < 1:
            raise RecommendError(f"--budget {text!r}: the percentile must be in (0, 100)")
    if not math.isfinite(bound):
        raise RecommendError(f"--budget {text!r}: the bound must be finite")
    return Budget(text.strip(), stat, level, outcome, op, bound)


@dataclass(frozen=True)
class Dimension:
    """One key of the search space."""

    key: str
    kind: str  # float | log | int | choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def corners(self) -> list[Any]:
        """Values that must each make a valid config (checked before the search)."""
        if self.kind == "choice":
            return list(self.choices)
        return [self.cast(self.low), self.cast(self.high)]

    def cast(self, value: Any) -> Any:
        if self.kind == "int":
            return int(round(float(value)))
        if self.kind in ("float", "log"):
            return float(value)
        return value

    def moved(self, value: Any, direction: int) -> Any:
        """``value`` moved by SENSITIVITY_STEP of the range (kept inside it)."""
        if self.kind == "log":
            span = math.log(self.high) - math.log(self.low)
            moved = math.exp(math.log(value) + direction * SENSITIVITY_STEP * span)
        else:
            moved = value + direction * SENSITIVITY_STEP * (self.high - self.low)
        return self.cast(min(self.high, max(self.low, moved)))


def parse_space(text: str) -> Dimension:
    """Parse ``KEY=LOW:HIGH`` (``:log``, ``:int``) or ``KEY=A,B,C``."""
    if "=" not in text:
        raise RecommendError(f"--space must look like KEY=LOW:HIGH or KEY=A,B,C, was {text!r}")
    key, spec = (part.strip() for part in text.split("=", 1))
    if not key or any(not p for p in key.split(".")):
        raise RecommendError(f"--space {text!r}: the key must be a dotted config path")
    if ":" in spec:
        parts = spec.split(":")
        kind = "float"
        if len(parts) == 3 and parts[2] in ("log", "int"):
            kind = parts[2]
            parts = parts[:2]
        if len(parts) != 2:
            raise RecommendError(f"--space {text!r}: a range is LOW:HIGH, LOW:HIGH:log or :int")
        try:
            low, high = (float(p.replace("_", "")) for p in parts)
        except ValueError:
            raise RecommendError(f"--space {text!r}: {spec!r} is not a numeric range") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise RecommendError(f"--space {text!r}: the range needs LOW < HIGH, both finite")
        if kind == "log" and low <= 0:
            raise RecommendError(f"--space {text!r}: a log range needs LOW > 0")
        return Dimension(key, kind, low, high)
    choices = tuple(c.strip() for c in spec.split(",") if c.strip())
    if len(choices) < 2:
        raise RecommendError(f"--space {text!r}: give a range LOW:HIGH or at least two choices")
    if key == "policy":
        unknown = [c for c in choices if c not in POLICIES]
        if unknown:
            raise RecommendError(
                f"--space {text!r}: unknown policy {unknown[0]!r} (one of {', '.join(POLICIES)})"
            )
    return Dimension(key, "choice", choices=choices)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return str(value)


def as_overrides(params: dict[str, Any]) -> tuple[str, ...]:
    """The ``--set`` overrides of a candidate (its policy choice excluded)."""
    return tuple(f"{k}={_literal(v)}" for k, v in params.items() if k != "policy")


# ---- the paths a candidate is scored on ---------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """Everything a candidate's runs share: the scenarios, the fixed overrides, the policy when
    it is not searched over, and the model for a predictive policy."""

    scenarios: tuple[tuple[str, Path], ...]
    overrides: tuple[str, ...]
    policy: str | None
    model: Any = None


def path_configs(
    setting: Setting, params: dict[str, Any], seeds: list[int]
) -> list[tuple[str, int, SimConfig, Any]]:
    """Return (scenario, seed, config, forecast source) of every path of a candidate."""
    from pipelines.methodology import forecasts_for, policy_config

    policy = params.get("policy", setting.policy)
    out = []
    for name, place in setting.scenarios:
        for seed in seeds:
            cfg = load_config(place, (*setting.overrides, *as_overrides(params), f"seed={seed}"))
            source = None
            if policy is not None:
                horizon = (
                    setting.model.horizon_minutes
                    if setting.model is not None
                    else cfg.policy.horizon_minutes
                )
                knob = float(params.get("policy.knob", cfg.policy.knob))
                cfg = policy_config(cfg, policy, knob, horizon)
                source = forecasts_for(policy, setting.model)
            out.append((name, seed, cfg, source))
    return out


def check(setting: Setting, dims: list[Dimension], seeds: list[int]) -> None:
    """Refuse, before any run, a space whose keys or values make no valid config (each value
    at its bounds, with the others at their lows) and a predictive policy without a model."""
    lows = {d.key: d.corners()[0] for d in dims}
    for d in dims:
        for value in d.corners():
            try:
                path_configs(setting, {**lows, d.key: value}, seeds[:1])
            except ConfigError as e:
                raise RecommendError(f"--space {d.key}: {e}") from None
    policies = {setting.policy} | set(next((d.choices for d in dims if d.key == "policy"), ()))
    if "predictive" in policies and setting.model is None:
        raise RecommendError("a predictive policy needs --model")


def score_candidate(job: tuple[Setting, dict[str, Any], list[int]]) -> list[dict[str, float]]:
    """Run every path of a candidate; return one row of outcomes per path (a Dask task)."""
    from engine.outcomes import run_outcomes
    from engine.sim import Simulation

    setting, params, seeds = job
    rows = []
    for name, seed, cfg, source in path_configs(setting, params, seeds):
        sim = Simulation(cfg, forecaster=None if source is None else source.build(cfg))
        sim.run()
        outcome = run_outcomes(sim)
        r = sim.records
        oi = r["oi_notional"][: sim.t + 1].sum(axis=1)
        mean_oi = float(oi.mean()) if oi.size else 0.0
        fund = float(r["insurance_fund"][0].sum())
        outcome["fund_cost"] = fund / mean_oi if mean_oi > 0 else 0.0
        rows.append({"scenario": name, "seed": seed, **outcome})
    return rows


def objective_of(rows: list[dict[str, float]], objective: str) -> np.ndarray:
    """The objective per path (see OBJECTIVES)."""
    all_in = np.array([r["all_in_cost"] for r in rows])
    fund = np.array([r["fund_cost"] for r in rows])
    capital = np.array([r["capital_cost"] for r in rows])
    return {"all_in": all_in + fund, "capital": capital + fund, "trader": all_in}[objective]


def _column(rows: list[dict[str, float]], outcome: str) -> np.ndarray:
    return np.array([r[outcome] for r in rows], np.float64)


def summarize(
    rows: list[dict[str, float]], budgets: list[Budget], objective: str
) -> dict[str, Any]:
    """Point figures of a candidate: objective mean and each budget's statistic."""
    values = {b.metric: b.value(_column(rows, b.outcome)) for b in budgets}
    return {
        "objective": float(objective_of(rows, objective).mean()),
        "metrics": values,
        "violations": [b.violation(values[b.metric]) for b in budgets],
        "paths": len(rows),
    }


def intervals(
    rows: list[dict[str, float]], budgets: list[Budget], objective: str, seed: int = 0
) -> dict[str, Any]:
    """Figures with 95% intervals over the paths: paired bootstrap (the same resamples for
    every statistic), except the mean of a 0/1 outcome, a probability, which gets the exact
    binomial interval. A bootstrap interval of a max or a tail statistic cannot reach past the
    worst path seen: more confirmation paths make it a stronger check."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    picks = rng.integers(0, n, size=(BOOTSTRAP, n))
    cost = objective_of(rows, objective)
    out: dict[str, Any] = {
        "objective": float(cost.mean()),
        "objective_ci95": _ci([float(cost[p].mean()) for p in picks]),
        "paths": n,
        "metrics": {},
    }
    holds = True
    for b in budgets:
        x = _column(rows, b.outcome)
        point = b.value(x)
        if b.stat == "mean" and np.isin(x, (0.0, 1.0)).all():
            # A probability (the share of paths where the fund ran dry): the exact interval.
            # A bootstrap cannot see an event no path had: 0 of 8 would read as [0, 0].
            ci = clopper_pearson(int(x.sum()), n)
            method = "exact binomial (Clopper-Pearson)"
        else:
            ci = _ci([b.value(x[p]) for p in picks])
            method = "paired bootstrap"
        far = b.far_end(ci)
        ok = b.violation(far) <= 0
        holds &= ok
        out["metrics"][b.metric] = {
            "value": point,
            "ci95": list(ci),
            "bound": b.bound,
            "op": b.op,
            "holds": ok,
            "violation_at_far_end": b.violation(far),
            "interval": method,
        }
    out["holds"] = holds
    return out


def clopper_pearson(events: int, paths: int) -> tuple[float, float]:
    """Return the exact 95% interval of a probability seen ``events`` times in ``paths``."""
    from scipy.stats import beta

    lo = 0.0 if events == 0 else float(beta.ppf(0.025, events, paths - events + 1))
    hi = 1.0 if events == paths else float(beta.ppf(0.975, events + 1, paths - events))
    return lo, hi


def _ci(values: list[float]) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


# ---- the search ---------------------------------------------------------------------------


Mapper = Callable[[Callable[..., Any], list[Any]], Iterator[Any]]


def _ordered(mapper: Mapper, fn: Callable[..., Any], jobs: list[Any]) -> list[Any]:
    """Run ``jobs`` through ``mapper`` and return the results in the jobs' order."""
    tagged = [(i, job) for i, job in enumerate(jobs)]
    results = dict(mapper(_tagged, [(fn, t) for t in tagged]))
    return [results[i] for i in range(len(jobs))]


def _tagged(item: tuple[Callable[..., Any], tuple[int, Any]]) -> tuple[int, Any]:
    fn, (i, job) = item
    try:
        return i, fn(job)
    except PredliqError as e:  # a candidate the engine refuses: a failed trial, said why
        return i, e


def suggest(trial: Any, dims: list[Dimension]) -> dict[str, Any]:
    """Ask the trial for a value of every dimension."""
    params: dict[str, Any] = {}
    for d in dims:
        if d.kind == "choice":
            params[d.key] = trial.suggest_categorical(d.key, list(d.choices))
        elif d.kind == "int":
            params[d.key] = trial.suggest_int(d.key, int(d.low), int(d.high))
        else:
            params[d.key] = trial.suggest_float(d.key, d.low, d.high, log=d.kind == "log")
    return params


def open_study(storage: str, name: str, seed: int, trials: int) -> Any:
    """Create or load the study (SQLite storage: a rerun resumes it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Constraints are each trial's own (Trial.set_constraint): the sampler models the
    # feasible region from them.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)))
    try:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            direction="minimize",
            load_if_exists=True,
        )
    except Exception as exc:  # SQLAlchemy and Optuna raise many kinds for a bad storage URL
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecommendError(f"--study {storage}: cannot open the study ({reason[:200]})") from None


def finished(study: Any) -> list[Any]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False) if t.state in states]


def search(
    study: Any,
    setting: Setting,
    dims: list[Dimension],
    budgets: list[Budget],
    objective: str,
    seeds: list[int],
    trials: int,
    batch: int,
    mapper: Mapper,
    on_trial: Callable[[Any, dict[str, Any], dict[str, Any] | str], None],
) -> None:
    """Run trials until the study holds ``trials`` finished ones (a resumed study runs only the
    rest); ``on_trial(trial, params, figures or failure reason)`` after each is told."""
    import optuna

    # A resumed study's trials were scored on one question: the same space, budgets,
    # objective, paths and fixed overrides, or they would be compared with figures of another.
    question = json.loads(
        json.dumps(
            {
                "space": {d.key: dataclasses.asdict(d) for d in dims},
                "budgets": [b.text for b in budgets],
                "objective": objective,
                "seeds": seeds,
                "scenarios": [name for name, _ in setting.scenarios],
                "overrides": list(setting.overrides),
                "policy": setting.policy,
            }
        )
    )
    recorded = study.user_attrs.get("question")
    if recorded is not None and recorded != question:
        changed = sorted(k for k in question if recorded.get(k) != question[k])
        raise RecommendError(
            f"the study {study.study_name!r} was made with another {', '.join(changed)}; name "
            "a new --study or --study-name"
        )
    study.set_user_attr("question", question)
    # Trials a stopped run left running are failed, not resumed: their results never came.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    while (done := len(finished(study))) < trials:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        params = [suggest(t, dims) for t in asked]
        jobs = [(setting, p, seeds) for p in params]
        for trial, p, result in zip(
            asked, params, _ordered(mapper, score_candidate, jobs), strict=True
        ):
            if isinstance(result, Exception):
                trial.set_user_attr("failure", str(result))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                on_trial(trial, p, str(result))
                continue
            figures = summarize(result, budgets, objective)
            for b, violation in zip(budgets, figures["violations"], strict=True):
                trial.set_constraint(b.metric, violation)
            trial.set_user_attr("violations", figures["violations"])
            trial.set_user_attr("metrics", figures["metrics"])
            study.tell(trial, figures["objective"])
            on_trial(trial, p, figures)


def candidates(study: Any, dims: list[Dimension], top: int) -> list[dict[str, Any]]:
    """The best ``top`` distinct candidates: feasible ones by objective, then the least
    infeasible (by their largest violation relative to the bound)."""
    import optuna

    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE and "violations" in t.user_attrs
    ]

    def rank(t: Any) -> tuple[int, float]:
        worst = max(t.user_attrs["violations"], default=0.0)
        return (0, t.value) if worst <= 0 else (1, worst)

    seen, out = set(), []
    for t in sorted(done, key=rank):
        params = {d.key: t.params[d.key] for d in dims}
        key = json.dumps(params, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append({"trial": t.number, "params": params})
        if len(out) == top:
            break
    return out


def pareto(study: Any, budgets: list[Budget]) -> list[dict[str, Any]]:
    """Every completed trial's cost and first budget statistic, the non-dominated ones marked
    (lower cost and lower statistic are better; for a >= budget, higher is better)."""
    import optuna

    first = budgets[0]
    sign = 1.0 if first.op == "<=" else -1.0
    points = [
        {
            "trial": t.number,
            "params": t.params,
            "objective": t.value,
            "metric": t.user_attrs["metrics"][first.metric],
            "feasible": max(t.user_attrs["violations"], default=0.0) <= 0,
        }
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE and "metrics" in t.user_attrs
    ]
    for p in points:
        p["front"] = not any(
            q["objective"] <= p["objective"]
            and sign * q["metric"] <= sign * p["metric"]
            and (q["objective"] < p["objective"] or sign * q["metric"] < sign * p["metric"])
            for q in points
        )
    return sorted(points, key=lambda p: p["objective"])


def sensitivity(
    best: dict[str, Any],
    dims: list[Dimension],
    setting: Setting,
    budgets: list[Budget],
    objective: str,
    seeds: list[int],
    mapper: Mapper,
) -> list[dict[str, Any]]:
    """Each key moved alone around the recommendation (numeric keys by SENSITIVITY_STEP of
    their range either way, choices to each other choice), on the confirmation seeds."""
    moves = []
    for d in dims:
        value = best[d.key]
        if d.kind == "choice":
            others = [c for c in d.choices if c != value]
        else:
            others = [d.moved(value, -1), d.moved(value, +1)]
        for other in dict.fromkeys(others):
            if other != value:
                moves.append((d.key, other))
    jobs = [(setting, {**best, key: other}, seeds) for key, other in moves]
    out = []
    for (key, other), result in zip(moves, _ordered(mapper, score_candidate, jobs), strict=True):
        row: dict[str, Any] = {"key": key, "value": other, "from": best[key]}
        if isinstance(result, Exception):
            row["failure"] = str(result)
        else:
            row.update(summarize(result, budgets, objective))
        out.append(row)
    return out


def overlay_text(params: dict[str, Any], header: list[str]) -> str:
    """recommendation.toml: a config overlay (``[set]`` of dotted keys, as ``--set``)."""
    lines = [f"# {h}" for h in header]
    lines += ["", "[set]"]
    lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def load_overlay(path: Path) -> tuple[str, ...]:
    """Return the ``--set`` overrides of a config overlay (a TOML file with one ``[set]`` table
    of dotted keys, as recommendation.toml); refuse anything else with one line."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecommendError(f"overlay {str(path)!r} is not readable TOML ({exc})") from None
    if set(data) != {"set"} or not isinstance(data["set"], dict):
        raise RecommendError(
            f"overlay {str(path)!r} must hold one [set] table of dotted keys (as "
            "recommendation.toml), found " + ", ".join(sorted(data) or ["nothing"])
        )
    out = []
    for k, v in data["set"].items():
        if isinstance(v, dict | list):
            raise RecommendError(f"overlay {str(path)!r}: {k} must be a single value")
        out.append(f"{k}={_literal(v) if not isinstance(v, str) else v}")
    return tuple(out)


# ---- the whole command --------------------------------------------------------------------


def policy_overlay(setting: Setting, params: dict[str, Any]) -> dict[str, Any]:
    """The config keys a recommendation sets: its searched keys and, when a policy was chosen
    or fixed, the engine's policy settings for it (as the evaluation runs it)."""
    from pipelines.methodology import ALLOCATION, FORECAST_POLICIES

    out = {k: v for k, v in params.items() if k != "policy"}
    policy = params.get("policy", setting.policy)
    if policy is not None:
        if policy in FORECAST_POLICIES:
            # Its forecasts come from simulate's --policy (and --model): the header says so.
            out["policy.allocation"] = ALLOCATION
        else:
            out["policy.name"] = policy
    return out


def run_recommend(
    setting: Setting,
    dims: list[Dimension],
    budgets: list[Budget],
    objective: str,
    seeds: list[int],
    confirm_seeds: list[int],
    out: Path,
    trials: int = 40,
    top: int = 3,
    batch: int = 2,
    seed: int = 0,
    storage: str | None = None,
    study_name: str = "recommend",
    mapper: Mapper | None = None,
    tracking_uri: str | None = None,
    sweep: bool = True,
    progress: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Search, confirm, and write recommendation.toml, recommendation.json and report.html
    into ``out`` (all or nothing); return the evidence. ``evidence["feasible"]`` is False when
    no confirmed candidate keeps every budget at the far end of its interval."""
    from engine.atomic import atomic_dir
    from pipelines.recommend_report import write_report
    from predictor.tracking import DEFAULT_TRACKING_URI, connect

    overlap = sorted(set(seeds) & set(confirm_seeds))
    if overlap:
        raise RecommendError(
            f"--confirm-seeds must be fresh: {', '.join(map(str, overlap[:5]))} are also "
            "search seeds"
        )
    if out.exists() and not out.is_dir():
        raise RecommendError(f"--out {out} is a file")
    check(setting, dims, seeds)
    uri = tracking_uri or DEFAULT_TRACKING_URI
    connect(uri)  # fail before the runs, not after
    run = mapper or (lambda fn, items: (fn(item) for item in items))
    storage = storage or f"sqlite:///{(out.parent / (out.name + '.study.db')).resolve()}"
    study = open_study(storage, study_name, seed, trials)
    before = len(finished(study))
    progress(
        f"searching {len(dims)} keys: {trials} trials ({before} already in the study) x "
        f"{len(setting.scenarios) * len(seeds)} paths each; budgets "
        + "; ".join(b.text for b in budgets)
    )
    log = TrialLog(uri, study.study_name, setting, dims, budgets, objective, seeds)

    def on_trial(trial: Any, params: dict[str, Any], figures: dict[str, Any] | str) -> None:
        log.trial(trial.number, params, figures)
        if isinstance(figures, str):
            progress(f"trial {trial.number}: failed: {figures}")
            return
        cells = ", ".join(f"{k} {v:,.4g}" for k, v in figures["metrics"].items())
        state = "feasible" if max(figures["violations"], default=0) <= 0 else "infeasible"
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in params.items())
        progress(
            f"trial {trial.number}: {shown}: cost {figures['objective']:.4%}, {cells} ({state})"
        )

    failed = True
    try:
        search(study, setting, dims, budgets, objective, seeds, trials, batch, run, on_trial)
        chosen = candidates(study, dims, top)
        if not chosen:
            raise RecommendError("no trial completed; every candidate failed (see above)")
        progress(f"confirming {len(chosen)} candidates on {len(confirm_seeds)} fresh seeds")
        jobs = [(setting, c["params"], confirm_seeds) for c in chosen]
        for c, rows in zip(chosen, _ordered(run, score_candidate, jobs), strict=True):
            if isinstance(rows, Exception):
                c["failure"] = str(rows)
                continue
            c["search"] = summarize_trial(study, c["trial"])
            c["confirmed"] = intervals(rows, budgets, objective, seed)
        confirmed = [c for c in chosen if "confirmed" in c]
        holding = [c for c in confirmed if c["confirmed"]["holds"]]
        feasible = bool(holding)
        if holding:
            best = min(holding, key=lambda c: c["confirmed"]["objective"])
        else:
            best = min(confirmed, key=lambda c: _worst_far_end(c, budgets))
        progress(
            ("recommended" if feasible else "infeasible; closest")
            + f": trial {best['trial']} "
            + ", ".join(f"{k}={_shown(v)}" for k, v in best["params"].items())
        )
        sweep_rows = (
            sensitivity(best["params"], dims, setting, budgets, objective, confirm_seeds, run)
            if sweep
            else []
        )
        evidence = {
            "feasible": feasible,
            "recommendation": best,
            "overlay": policy_overlay(setting, best["params"]),
            "candidates": chosen,
            "pareto": pareto(study, budgets),
            "sensitivity": sweep_rows,
            "question": {
                "scenarios": [name for name, _ in setting.scenarios],
                "overrides": list(setting.overrides),
                "policy": setting.policy,
                "space": [dataclasses.asdict(d) for d in dims],
                "budgets": [b.text for b in budgets],
                "objective": objective,
                "objective_means": OBJECTIVES[objective],
                "search_seeds": seeds,
                "confirm_seeds": confirm_seeds,
                "trials": len(finished(study)),
                "study": {"storage": storage, "name": study.study_name},
                "sampler": f"optuna TPESampler with constraints, seed {seed}",
            },
        }
        header = [
            "predliq recommend: "
            + ("recommended" if feasible else "INFEASIBLE, the closest candidate"),
            f"budgets {'; '.join(b.text for b in budgets)}; objective {objective}",
            f"confirmed on seeds {confirm_seeds[0]}-{confirm_seeds[-1]} "
            f"({len(confirm_seeds)} per scenario); evidence in recommendation.json",
            "use: predliq simulate --config SCENARIO --config recommendation.toml",
        ]
        chosen_policy = best["params"].get("policy", setting.policy)
        if chosen_policy in ("analytic", "predictive"):
            header.append(
                f"policy {chosen_policy}: add --policy {chosen_policy}"
                + (" --model URI" if chosen_policy == "predictive" else "")
            )
        with atomic_dir(out) as tmp:
            (tmp / "recommendation.toml").write_text(overlay_text(evidence["overlay"], header))
            (tmp / "recommendation.json").write_text(
                json.dumps(evidence, indent=2, sort_keys=True, default=_plain) + "\n"
            )
            write_report(tmp / "report.html", evidence)
        evidence["run_id"] = log.finish(out, evidence)
        failed = False
    finally:
        log.close(failed)
    return evidence


def _shown(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _worst_far_end(c: dict[str, Any], budgets: list[Budget]) -> float:
    """The largest violation at the far end of a candidate's intervals, relative to its bound."""
    metrics = c["confirmed"]["metrics"]
    return max(metrics[b.metric]["violation_at_far_end"] / max(abs(b.bound), 1.0) for b in budgets)


def summarize_trial(study: Any, number: int) -> dict[str, Any]:
    t = study.trials[number]
    return {"objective": t.value, "metrics": t.user_attrs.get("metrics", {})}


class TrialLog:
    """MLflow: one parent run per recommend command, one child run per trial it ran."""

    EXPERIMENT = "breach-forecaster-recommend"

    def __init__(self, uri, study, setting, dims, budgets, objective, seeds) -> None:
        import mlflow

        from predictor.tracking import connect, ensure_experiment

        client = connect(uri)
        ensure_experiment(client, uri, self.EXPERIMENT)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.EXPERIMENT)
        self.parent = mlflow.start_run(run_name=f"recommend {study}")
        mlflow.log_params(
            {
                "study": study,
                "objective": objective,
                "budgets": "; ".join(b.text for b in budgets),
                "space": "; ".join(d.key for d in dims),
                "scenarios": ",".join(name for name, _ in setting.scenarios),
                "search_seeds": f"{seeds[0]}-{seeds[-1]} ({len(seeds)})",
                "policy": setting.policy,
            }
        )

    def trial(self, number: int, params: dict[str, Any], figures: dict[str, Any] | str) -> None:
        import mlflow

        with mlflow.start_run(run_name=f"trial {number}", nested=True):
            mlflow.log_params({k: _shown(v) for k, v in params.items()})
            if isinstance(figures, str):
                mlflow.set_tag("failure", figures[:500])
                return
            metrics = {"objective": figures["objective"], **figures["metrics"]}
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
            mlflow.set_tag("feasible", str(max(figures["violations"], default=0) <= 0))

    def finish(self, out: Path, evidence: dict[str, Any]) -> str:
        import mlflow

        best = evidence["recommendation"]
        mlflow.set_tag("feasible", str(evidence["feasible"]))
        if "confirmed" in best:
            mlflow.log_metric("confirmed_objective", best["confirmed"]["objective"])
        mlflow.log_artifacts(str(out))
        return self.parent.info.run_id

    def close(self, failed: bool = False) -> None:
        import mlflow

        while mlflow.active_run() is not None:  # a child left open by an interruption too
            mlflow.end_run(status="FAILED" if failed else "FINISHED")
