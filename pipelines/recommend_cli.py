"""`predliq recommend`: thin glue over pipelines.recommend."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.errors import PredliqError
from pipelines.recommend import EXIT_INFEASIBLE, OBJECTIVES, POLICIES


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command()
@click.option(
    "--scenarios",
    "scenario_places",
    multiple=True,
    required=True,
    metavar="NAME|PATH",
    help="Scenario configs, folders of them or shipped names (repeatable).",
)
@click.option("--seeds", required=True, help="Search seeds, e.g. 0-7 (every scenario).")
@click.option(
    "--confirm-seeds",
    required=True,
    help="Fresh seeds the best candidates are confirmed on, e.g. 100-115.",
)
@click.option(
    "--budget",
    "budgets",
    multiple=True,
    required=True,
    metavar="STAT_OUTCOME<=X",
    help="A constraint (repeatable): mean_, max_, varQ_ or esQ_ of an outcome, <= or >= a "
    "number, e.g. es99_bad_debt<=250000, mean_if_exhausted<=0.05.",
)
@click.option(
    "--space",
    "spaces",
    multiple=True,
    required=True,
    metavar="KEY=LOW:HIGH",
    help="A config key to search (repeatable): KEY=LOW:HIGH, KEY=LOW:HIGH:log, KEY=LOW:HIGH:int "
    "or KEY=A,B,C; policy=static,predictive chooses the policy, policy.knob=0:8 its knob.",
)
@click.option(
    "--objective",
    type=click.Choice(sorted(OBJECTIVES)),
    default="all_in",
    show_default=True,
    help="What to minimise: all_in (margin held, deposits, de-risking, refused orders and the "
    "insurance fund), capital (margin and fund held) or trader (without the fund).",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default=None,
    help="Run every candidate under this policy (default: the scenario's own).",
)
@click.option("--model", default=None, help="The forecaster a predictive policy serves (URI).")
@click.option("--trials", type=click.IntRange(min=1), default=40, show_default=True)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Candidates re-run on the confirmation seeds.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Trials asked of the sampler at a time (run side by side); the study depends on it and "
    "on --seed, not on --workers.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The sampler's seed.")
@click.option(
    "--study",
    default=None,
    metavar="URL",
    help="Optuna storage of the study (default sqlite:///OUT.study.db beside --out); a rerun "
    "with the same storage and --study-name resumes it.",
)
@click.option("--study-name", default="recommend", show_default=True)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed config overrides."
)
@click.option("--workers", type=click.IntRange(min=1), default=1, help="Local Dask processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="An existing Dask scheduler.")
@click.option(
    "--sensitivity/--no-sensitivity",
    default=True,
    show_default=True,
    help="Sweep each key alone around the recommendation on the confirmation seeds.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db, or MLFLOW_TRACKING_URI).",
)
def recommend(
    scenario_places: tuple[str, ...],
    seeds: str,
    confirm_seeds: str,
    budgets: tuple[str, ...],
    spaces: tuple[str, ...],
    objective: str,
    policy: str | None,
    model: str | None,
    trials: int,
    top: int,
    batch: int,
    seed: int,
    study: str | None,
    study_name: str,
    overrides: tuple[str, ...],
    workers: int,
    scheduler: str | None,
    sensitivity: bool,
    out: Path,
    tracking_uri: str | None,
) -> None:
    """Search the config keys of --space for the cheapest setting whose budgets hold on the
    scenarios, confirm the best few on fresh seeds, and write recommendation.toml (a config
    overlay), recommendation.json (the evidence) and report.html into --out. Exit code 3 when
    no candidate keeps the budgets at the far end of their 95% intervals."""
    from pipelines.cluster import map_tasks
    from pipelines.evaluate import scenario_configs
    from pipelines.progress import note
    from pipelines.recommend import (
        OUTCOMES,
        RecommendError,
        Setting,
        parse_budget,
        parse_space,
        run_recommend,
    )
    from pipelines.shipped import scenarios_place
    from pipelines.simulate import parse_seeds

    try:
        parsed_budgets = [parse_budget(b, OUTCOMES) for b in budgets]
        dims = [parse_space(s) for s in spaces]
        keys = [d.key for d in dims]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise RecommendError(f"--space names {', '.join(twice)} more than once")
        if "policy" in keys and policy is not None:
            raise RecommendError("--policy and --space policy=... both choose the policy")
        search_seeds = parse_seeds(seeds)
        fresh = parse_seeds(confirm_seeds)
        forecaster = None
        if model is not None:
            from predictor.serving import load_forecaster

            forecaster = load_forecaster(model, tracking_uri=tracking_uri)
        configs = scenario_configs([scenarios_place(p) for p in scenario_places])
        # Trials load the configs where they run: absolute paths, whatever a worker's folder.
        configs = [(name, place.resolve()) for name, place in configs]
        setting = Setting(tuple(configs), overrides, policy, forecaster)

        def mapper(fn, items):
            return map_tasks(fn, items, workers, scheduler)

        evidence = run_recommend(
            setting,
            dims,
            parsed_budgets,
            objective,
            search_seeds,
            fresh,
            out,
            trials=trials,
            top=top,
            batch=batch,
            seed=seed,
            storage=study,
            study_name=study_name,
            mapper=mapper,
            tracking_uri=tracking_uri,
            sweep=sensitivity,
            progress=note,
        )
    except PredliqError as e:
        _fail(str(e))
    from pipelines.recommend_report import verdict

    click.echo(verdict(evidence))
    click.echo(f"wrote {out / 'recommendation.toml'}, recommendation.json and report.html")
    click.echo(f"logged recommend run {evidence['run_id']}")
    if not evidence["feasible"]:
        click.echo(
            "infeasible: no candidate keeps every budget at the far end of its 95% interval",
            err=True,
        )
        sys.exit(EXIT_INFEASIBLE)
