"""`predliq evaluate`: anticipatory against reactive liquidation, at matched all-in cost.

Every policy faces the same paths — the same index path, population and shocks, and during the
run random draws keyed by purpose (:mod:`engine.draws`), so that one changed liquidation does not
shift any later draw — so results are paired per path. Each policy's knob is swept on *tuning*
seeds; there, for each comparison, the matched cost is the higher of the two policies' all-in
costs at their reference settings, and each policy's knob is the one with the least mean bad
debt at that cost or less. The comparison is then reported on separate *evaluation* seeds only,
per scenario family and pooled, with paired bootstrap intervals and the number of paths. Control
arms (``breached_only``, ``random``, ``oracle``) say how much of predictive's gain the forecast
itself explains. The in-sample frontier (every knob on the evaluation seeds) stays in the summary,
labelled as such.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.atomic import atomic_dir
from engine.config import load_config
from engine.errors import PredliqError
from engine.outcomes import run_outcomes
from pipelines.cluster import WORKER_LOG
from pipelines.methodology import (
    DEFAULT_KNOBS,
    FORECAST_ACCOUNT_FRACTION,
    PREDICTIVE_REFERENCE_KNOB,
    REFERENCE_KNOB,
    EvaluationError,
    PathRun,
    by_family,
    by_path,
    check_held_out,
    chosen_knobs,
    coverage,
    forecast_fraction,
    forecast_quality,
    forecasts_for,
    frontier,
    headline,
    headline_rows,
    pairing,
    plan,
    policy_config,
    replay_table,
    same_budget,
)
from pipelines.shipped import CONFIGS

REPLAY_CONFIG = CONFIGS / "scenarios" / "replay.toml"
"""The venue and population a real crash is replayed into (its market follows the file)."""
REPLAY_KNOBS = {**REFERENCE_KNOB, "predictive": PREDICTIVE_REFERENCE_KNOB}
"""Each policy's setting on the replays when no knob was tuned: the baselines' reference knobs,
predictive at 1. An evaluation replays each policy at the knob chosen on its tuning seeds."""


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


PathResult = tuple[list[dict[str, Any]], dict[str, np.ndarray], dict[str, pd.DataFrame]]


def run_path(
    runs: list[PathRun], keep: str | None = None, fraction: float = FORECAST_ACCOUNT_FRACTION
) -> PathResult:
    """Run one path (scenario, seed) under every policy of ``runs``; return one row of outcomes
    per run, the forecasts of the path's reactive history (labels, model, analytic) on a
    ``fraction`` of its accounts, and per policy with ``keep="timeline"`` its mark,
    liquidations and insurance fund per block, with ``keep="book"`` every trader's margin state
    at the run's worst block (:class:`pipelines.attested.WorstBlock`; the columns of
    ``accounts.parquet``).

    The reactive run (static, knob 1) goes first: the accounts it sees breach tell which
    pre-emptive de-risking of later runs fell on accounts that would not have breached, its bad
    debt events are what the ``oracle`` arm foresees, and (on evaluation paths) its labelled
    history scores the forecasts out of sample.
    """
    from engine.events import EventKind
    from engine.forecasters import OracleForecaster
    from engine.sim import Simulation

    ordered = sorted(runs, key=lambda r: r.policy != "static" or r.knob != 1.0)
    model = next((r.source.model for r in runs if r.source.model is not None), None)
    score = model is not None and runs[0].role == "eval"
    rows, breachers = [], None
    loss_events: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    forecasts: dict[str, np.ndarray] = {}
    series: dict[str, pd.DataFrame] = {}
    for run in ordered:
        reactive = breachers is None and run.policy == "static" and run.knob == 1.0
        cfg = run.cfg
        if reactive and score:
            every = max(1, round(5 * 60_000 / cfg.tick_ms))  # sampled as the training set
            cfg = dataclasses.replace(
                cfg, history=dataclasses.replace(cfg.history, sample_every_ticks=every)
            )
        if run.source.kind == "oracle":
            if loss_events is None:
                raise EvaluationError("the oracle arm needs the path's reactive run (static 1)")
            horizon_ticks = max(1, round(cfg.policy.horizon_minutes * 60_000 / cfg.tick_ms))
            ticks, accounts, amounts = loss_events
            forecaster = OracleForecaster(ticks, accounts, horizon_ticks, amounts)
        else:
            forecaster = run.source.build(cfg)
        sim = Simulation(cfg, forecaster=forecaster)
        if keep == "book":
            from pipelines.attested import WorstBlock

            worst = WorstBlock(sim)
            sim.run(progress=worst.watch)
        else:
            sim.run()
        if reactive:
            breachers = np.unique(sim.onsets()[1])
            events = sim.events.to_frame()
            loss = events[(events["kind"] == int(EventKind.BAD_DEBT)) & (events["account"] > 0)]
            loss_events = (
                loss["tick"].to_numpy(np.int64),
                loss["account"].to_numpy(np.int64),
                -loss["amount"].to_numpy(np.float64) / 1e6,  # bad debt, quote units
            )
            if score:
                forecasts = score_history(sim, model, run.seed, fraction)
        outcome = run_outcomes(sim, breachers)
        rows.append(
            {
                "scenario": run.scenario,
                "seed": run.seed,
                "role": run.role,
                "policy": run.policy,
                "knob": run.knob,
            }
            | outcome
        )
        if keep == "timeline":
            series[run.policy] = timeline(sim)
        elif keep == "book":
            series[run.policy] = worst.frame()
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
    from predictor.baselines import analytic_expected_loss, first_passage_probability
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
    # Where the policy acts: an open position, not in breach, inside the risk band (the
    # distance to liquidation within risk_band_sigmas x sigma x sqrt(H), sigma the 30-minute
    # EWMA per minute — the screen's bound, read off the row).
    band = sim.cfg.policy.risk_band_sigmas
    rows = accounts.iloc[keep]
    distance = X[:, col["distance_to_liquidation"]]
    sigma = X[:, col["ewma_sigma_30m"]]
    acted = (rows["notional"].to_numpy() > 0) & ~rows["breached_now"].to_numpy(bool)
    if band > 0:
        acted &= distance <= band * sigma * np.sqrt(horizon)
    p_model = model.predict_proba(X)
    out = {
        "y": y[keep].astype(np.int8),
        "model": p_model.astype(np.float32),
        "analytic": analytic.astype(np.float32),
        "acted": acted,
        "loss": accounts[f"loss_{horizon:g}m"].to_numpy()[keep],
        "analytic_loss": analytic_expected_loss(analytic, X, horizon),
    }
    if model.has_heads:
        out["model_loss"] = p_model * model.predict_severity(X)
    return out


def replay_plan(
    files: list[Path],
    seed: int,
    model: Any,
    horizon: float,
    overrides: tuple[str, ...] = (),
    knobs: dict[str, float] | None = None,
) -> list[PathRun]:
    """Return the replay runs: every file under each policy at ``knobs`` (default
    REPLAY_KNOBS; a policy whose knob is None is left out), one population.

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
        for policy, knob in (knobs or REPLAY_KNOBS).items():
            if knob is None:
                continue
            pcfg = policy_config(cfg, policy, knob, horizon)
            runs.append(PathRun(stem, seed, policy, knob, pcfg, forecasts_for(policy, model)))
    return runs


def execute(
    runs: list[PathRun],
    workers: int = 1,
    scheduler: str | None = None,
    keep: str | None = None,
    fraction_paths: int | None = None,
) -> Iterator[PathResult]:
    """Run every path, serially or on Dask; yield each path's results as it finishes.
    ``keep`` is :func:`run_path`'s; ``fraction_paths`` (default: every path) sets the
    forecast-scoring share."""
    from pipelines.cluster import map_tasks

    groups = by_path(runs)
    fraction = forecast_fraction(fraction_paths or len(groups))
    yield from map_tasks(run_path, groups, workers, scheduler, keep, fraction)


def write_summary(
    out: Path,
    results: pd.DataFrame,
    lineage: dict[str, Any],
    n_boot: int = 1000,
    replays: pd.DataFrame | None = None,
    forecast: dict[str, Any] | None = None,
    replay_series: dict[str, dict[str, pd.DataFrame]] | None = None,
    head: dict[str, Any] | None = None,
    attestation: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write runs.parquet (and replays.parquet), summary.json and report.html into ``out`` —
    all or nothing: a failure leaves no partial report — and return the summary.

    ``attestation(folder)`` (see :func:`pipelines.attested.attest_books`) writes its
    attestations into the staging folder and returns the summary's ``attested`` section."""
    from pipelines.report import write_report

    head = head if head is not None else headline(results, n_boot)
    evaluation = results[results["role"] == "eval"]
    knobs = chosen_knobs(head)
    summary = {
        "headline": head,
        "knobs": knobs,
        "pairing": pairing(results, knobs),
        "frontier_in_sample": frontier(evaluation),
        "frontier_in_sample_by_family": {
            name: frontier(frame) for name, frame in by_family(evaluation) if name != "pooled"
        },
        "frontier_tuning": frontier(results[results["role"] == "tune"]),
        "same_budget": same_budget(results, n_boot),
        "replays": {} if replays is None else replay_table(replays),
        "forecast": forecast or {},
        "coverage": coverage(evaluation),
        "left_at_end": left_at_end(
            pd.concat([results, replays]) if replays is not None else results
        ),
        "lineage": lineage,
    }
    with atomic_dir(out) as tmp:
        if attestation is not None:
            summary["attested"] = attestation(tmp)
        results.to_parquet(tmp / "runs.parquet", index=False)
        if replays is not None:
            replays.to_parquet(tmp / "replays.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        write_report(tmp, summary, results, replay_series)
    return summary


def left_at_end(runs: pd.DataFrame) -> dict[str, float]:
    """Return what the runs leave unresolved at their end, which bad debt does not count: how
    many runs end with traders below maintenance margin, and the negative equity of those
    traders against the bad debt of every run (quote units)."""
    return {
        "runs": int(len(runs)),
        "runs_with_accounts_below_maintenance": int((runs["below_maintenance_at_end"] > 0).sum()),
        "deficit_at_end": float(runs["deficit_at_end"].sum()),
        "bad_debt": float(runs["bad_debt"].sum()),
    }


def format_headline(summary: dict[str, Any]) -> str:
    """Return the headline as a plain-text table: per comparison and family, bad debt of both
    policies at the knobs chosen on the tuning seeds, the reduction with its 95% interval and
    the number of paths."""
    head = summary["headline"]
    lines = [
        "out of sample: knobs chosen on the tuning seeds at matched all-in cost, reported on "
        "the evaluation seeds",
        f"{'policy':<13} {'vs':<11} {'family':<14} {'paths':>5} {'cost %OI (both)':>17} "
        f"{'baseline':>11} {'policy':>11} {'reduction':>9} {'95% CI':>22} {'corr':>5}",
    ]

    def add(policy: str, baseline: str, row: dict[str, Any]) -> None:
        if "not_reached" in row:
            for p, why in row["not_reached"].items():
                lines.append(f"{policy:<13} {baseline:<11} not reached: {p}: {why}")
            return
        for family, f in row["families"].items():
            lo, hi = f["ci95"]
            cost = f"{f['all_in_cost'][policy]:.2%}/{f['all_in_cost'][baseline]:.2%}"
            corr = "–" if f["paired_correlation"] is None else f"{f['paired_correlation']:.2f}"
            lines.append(
                f"{policy:<13} {baseline:<11} {family:<14} {f['paths']:>5} {cost:>17} "
                f"{f['baseline_bad_debt']:>11,.0f} {f['policy_bad_debt']:>11,.0f} "
                f"{f['reduction_share']:>9.1%} {f'[{lo:,.0f}, {hi:,.0f}]':>22} {corr:>5}"
            )

    for policy, baseline, row in headline_rows(head):
        add(policy, baseline, row)
    gain = head["comparisons"].get("static", {}).get("families", {}).get("pooled", {})
    if gain and gain["ci95"][0] <= 0:
        lines.append(
            "predictive's pooled reduction against the reactive venue is not resolved (its 95% "
            "interval reaches zero): no control has a gain of it to reproduce"
        )
    for arm, row in head["controls"].items():
        share = row.get("families", {}).get("pooled", {}).get("share_of_predictive_reduction")
        if share is not None:
            lines.append(f"{arm} reproduces {share:.0%} of predictive's pooled reduction")
    for rival, budgets in summary.get("same_budget", {}).items():
        for knob, families in budgets.items():
            cells = []
            for name, f in families.items():
                lo, hi = f["ci95"]
                cells.append(
                    f"{name} {f['reduction_share']:+.1%} [{lo:,.0f}, {hi:,.0f}] "
                    f"({f['paths']} paths)"
                )
            lines.append(
                f"same budget of {knob} actions, model-ranked against {rival}-ranked, bad debt "
                f"reduction: " + "; ".join(cells)
            )
    for family, figures in summary.get("pairing", {}).items():
        if figures["min"] is None:
            continue
        lines.append(
            f"paired correlation of bad debt, {family} ({figures['paths']} paths): lowest "
            f"{figures['min']:.2f} over every two policies at their tuned knobs"
        )
    for stem, policies in summary.get("replays", {}).items():
        cells = ", ".join(f"{p} {v['bad_debt']:,.0f}" for p, v in policies.items())
        lines.append(f"replay {stem}: bad debt {cells}")
    left = summary.get("left_at_end")
    if left:
        lines.append(
            f"left at the end: {left['runs_with_accounts_below_maintenance']:,} of "
            f"{left['runs']:,} runs end with traders below maintenance margin; negative equity "
            f"{left['deficit_at_end']:,.0f} not in bad debt, against {left['bad_debt']:,.0f} of "
            "bad debt over the runs"
        )
    attested = summary.get("attested")
    for policy, a in (attested or {}).get("policies", {}).items():
        lines.append(
            f"attested and verified, {attested['scenario']} seed {attested['seed']}, {policy} at "
            f"its worst block {a['block']}: {a['below_maintenance']:,} of {a['accounts']:,} "
            f"accounts below maintenance lacking {a['gap_below_maintenance']:,.0f}; shortfall "
            f"{a['shortfall']:,.0f}; bad debt {a['bad_debt']:,.0f} ({a['folder']})"
        )
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
    tune_seeds: str = "",
    counter: Callable[[int, str], Any] | None = None,
    attest: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """Run a whole evaluation into ``out`` and log it; return (summary, MLflow run id).

    ``progress`` receives one-off messages; ``counter(total, unit)`` makes the tracker of the
    runs (pipelines.progress.Progress: a bar on a terminal), by default ``[i/n unit]`` lines to
    ``progress``.

    Every input is checked before the first run (the tracking URI, the seeds, the scenarios,
    the model and its lineage, every replay file); errors are one-line exceptions
    (EvaluationError, ModelError, ConfigError, ReplayError, TrackingError, ValueError).
    ``replay_overrides`` apply to the replays instead of ``overrides`` when given.
    ``attest`` (keys policies, ptau_file, batch_size, arity: :func:`pipelines.attested.prepare`)
    adds each policy's verified health at its worst block of one path (pipelines.attested).
    """
    from pipelines.describe import real_files
    from pipelines.progress import Steps
    from pipelines.simulate import parse_seeds
    from predictor.serving import load_forecaster, registry_version
    from predictor.tracking import DEFAULT_TRACKING_URI, TrackingError, connect, log_evaluation

    if counter is None:

        def counter(total: int, unit: str) -> Steps:
            return Steps(total, unit, progress)

    uri = tracking_uri or DEFAULT_TRACKING_URI
    connect(uri)  # fail before the runs, not after
    seed_list = parse_seeds(seeds)
    if not tune_seeds:
        raise EvaluationError("--tune-seeds is required: knobs are chosen on seeds of their own")
    tune_list = parse_seeds(tune_seeds)
    configs = scenario_configs(scenario_places)
    model = load_forecaster(model_uri, tracking_uri=uri)
    check_held_out(model.meta_, seed_list, [name for name, _ in configs], tune_list)
    runs = plan(
        configs, seed_list, DEFAULT_KNOBS, model, model.horizon_minutes, overrides, tune_list
    )
    files: list[Path] = []
    if replay_places:
        files = real_files([str(p) for p in replay_places])
        if not files:
            raise EvaluationError(
                f"--replays {', '.join(map(str, replay_places))} holds no 1-minute bar files"
            )
        # Checked now (a malformed file is refused before any run); run after tuning.
        replay_plan(files, seed_list[0], model, model.horizon_minutes, replay_overrides or ())
    attest_options = None
    if attest is not None:
        from pipelines.attested import prepare

        markets = {len(r.cfg.markets) for r in runs}
        attest_options = prepare(log=progress, market_counts=markets, **attest)
    paths = len({(r.role, r.scenario, r.seed) for r in runs})
    settings = sum(len(k) for k in DEFAULT_KNOBS.values())
    progress(
        f"evaluating {len(runs)} runs: {paths} paths ({len(tune_list)} tuning and "
        f"{len(seed_list)} evaluation seeds x {len(configs)} families) x {settings} settings"
        + (f"; Dask's log: {WORKER_LOG}" if workers > 1 and scheduler is None else "")
    )
    rows, scored = [], {}
    eval_paths = len(configs) * len(seed_list)
    with counter(paths, "paths") as bar:
        for path_rows, forecasts, _ in execute(runs, workers, scheduler, fraction_paths=eval_paths):
            rows.extend(path_rows)
            first = path_rows[0]
            if first["role"] == "eval":
                scored[first["scenario"], first["seed"]] = forecasts
            bar.step(f"{first['scenario']} seed {first['seed']} ({first['role']})")
    results = pd.DataFrame(rows).sort_values(["role", "scenario", "seed", "policy", "knob"])
    results = results.reset_index(drop=True)
    head = headline(results, bootstrap)
    replays = None
    replay_series: dict[str, dict[str, pd.DataFrame]] = {}
    replay_runs = []
    if files:
        replay_runs = replay_plan(
            files,
            seed_list[0],
            model,
            model.horizon_minutes,
            overrides if replay_overrides is None else replay_overrides,
            # The reactive venue itself (static 1) is always replayed: the oracle foresees it.
            {**chosen_knobs(head), "static": 1.0},
        )
    if replay_runs:
        replay_rows = []
        groups = len({r.scenario for r in replay_runs})
        with counter(groups, "replays") as bar:
            for path_rows, _, series in execute(replay_runs, workers, scheduler, keep="timeline"):
                replay_rows.extend(path_rows)
                replay_series[path_rows[0]["scenario"]] = series
                bar.step(str(path_rows[0]["scenario"]))
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
        "tuning_seeds": tune_list,
        "scenarios": {
            r.scenario: r.cfg.hash() for r in runs if r.policy == "static" and r.role == "eval"
        },
        "knobs": {k: list(v) for k, v in DEFAULT_KNOBS.items()},
        "tracking_uri": uri,
    }

    attest_failure: list[str] = []

    def attested(options: Any) -> Callable[[Path], dict[str, Any]]:
        """Re-run the attested path keeping each policy's books, and attest them."""
        from pipelines.attested import PRIVATE, PUBLIC, attest_books, attested_path, path_runs

        def attest_into(folder: Path) -> dict[str, Any]:
            # A failure here keeps the evaluation: the report is written without the section
            # (and without any half-made attestation), and the command then says why.
            try:
                path = attested_path(results)
                chosen, skipped = path_runs(runs, path, chosen_knobs(head), options.policies)
                progress(f"re-running {path[0]} seed {path[1]} for its books")
                [(_, _, books)] = list(execute(chosen, workers, scheduler, keep="book"))
                section = attest_books(
                    folder,
                    path,
                    chosen,
                    books,
                    options,
                    workers,
                    scheduler,
                    # Said of the report's folder, not of its staging copy.
                    lambda message: progress(message.replace(str(folder), str(out))),
                )
            except PredliqError as e:
                for name in (PUBLIC, PRIVATE):
                    shutil.rmtree(folder / name, ignore_errors=True)
                attest_failure.append(str(e))
                return {"failed": str(e)}
            if skipped:
                section["not_attested"] = skipped
            return section

        return attest_into

    summary = write_summary(
        out,
        results,
        lineage,
        bootstrap,
        replays,
        # In path order, not finishing order: the same figures serially and on a cluster.
        forecast_quality(scored, forecast_fraction(eval_paths)),
        replay_series,
        head,
        None if attest_options is None else attested(attest_options),
    )
    try:
        run_id = log_evaluation(uri, out, summary)
    except TrackingError as e:
        raise TrackingError(f"the report is written to {out}, but logging it failed: {e}") from None
    if attest_failure:
        raise EvaluationError(
            f"the report is written to {out} and logged as run {run_id}, without attestations: "
            f"{attest_failure[0]}"
        )
    return summary, run_id
