"""The `predliq` command line. Each command is thin glue over engine/ and predictor/.

Errors in the user's input (config, overrides, output folder) print one line and exit with
code 2; nothing is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from attest.toolchain import AGGREGATE_ARITY, ARITIES, BATCH_SIZES
from engine.config import load_config
from engine.errors import PredliqError
from engine.history import check_writable_root
from pipelines.attest_cli import attest, verify
from pipelines.cluster import WORKER_LOG
from pipelines.recommend_cli import recommend
from pipelines.shipped import config_path as config_path_of
from pipelines.shipped import replay_place, scenarios_place
from pipelines.simulate import POLICY_CHOICES

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI; models:/ and runs:/ resolve there (default "
    "sqlite:///mlruns/mlflow.db, or MLFLOW_TRACKING_URI).",
)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """predliq: predictive liquidation for leveraged perpetual-futures venues.

    Simulate a venue's margin and liquidation engine under stress, train forecasters of margin
    breaches and of the bad debt they leave on the simulated histories, run the venue under
    margin policies that act on those forecasts (simulate --policy, serve), and evaluate
    anticipatory against reactive liquidation at matched all-in cost (evaluate).
    """


@main.command()
@click.option(
    "--config",
    "config_paths",
    required=True,
    multiple=True,
    metavar="NAME|PATH",
    help="Scenario config: a shipped name (cascade, stress, short_squeeze...; predliq "
    "scenarios lists them) or a TOML file. A second --config is an overlay of [set] keys "
    "(recommendation.toml of predliq recommend), applied before --set.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set markets.BTC-PERP.sigma_annual=1.2 (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Seed (overrides the config's).")
@click.option(
    "--seeds",
    default=None,
    metavar="RANGE",
    help="Many seeds, one partition each: 0-99, 1,5,7 or a mix.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Processes for --seeds (a local Dask cluster).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run --seeds on an existing Dask scheduler instead of a local cluster.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Output root; the run goes to OUT/scenario=NAME/seed=SEED/ (required unless --describe).",
)
@click.option("--overwrite", is_flag=True, help="Replace a partition that holds another run.")
@click.option(
    "--describe",
    is_flag=True,
    help="Print the run's stylized facts (volatility, fat tails, clustering, taker-flow "
    "correlation, drawdowns) and its cascade amplification instead of writing it.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICY_CHOICES),
    default=None,
    help="Margin policy (default: the config's [policy], static). predictive needs --model; "
    "analytic and oracle are the predictive policy fed by the first-passage probability or by "
    "perfect foresight of the bad debt of the reactive run (evaluation only).",
)
@click.option("--knob", type=float, default=None, help="The policy's aggressiveness setting.")
@click.option(
    "--model",
    "model_uri",
    default=None,
    metavar="URI",
    help="Forecaster for --policy predictive: models:/breach-forecaster@champion, "
    "runs:/RUN_ID/model, or an export folder such as models/breach-forecaster.",
)
@tracking_uri_option
@click.option(
    "--forecaster-url",
    default=None,
    metavar="URL",
    help="Forecaster for --policy predictive served over HTTP by `predliq serve` "
    "(http://127.0.0.1:PORT); its horizon is the config's policy.horizon_minutes.",
)
@click.option(
    "--forecaster-timeout",
    type=click.FloatRange(min=0.001, max=3600.0),
    default=2.0,
    show_default=True,
    help="Seconds to wait for --forecaster-url (0.001 to 3600); a late answer falls back to "
    "the reactive policy.",
)
@click.option(
    "--max-fallback-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    metavar="SHARE",
    help="Largest share of forecasts (0 to 1) that may fall back to the reactive policy; a run "
    "with more is refused with the count, exit 3, and nothing is written (0: any fallback).",
)
@click.option(
    "--allow-fallback",
    is_flag=True,
    help="Keep a run however many forecasts fell back (--max-fallback-share 1).",
)
@click.option(
    "--no-compile",
    is_flag=True,
    help="Score with Booster.predict instead of the compiled trees (same outputs, slower).",
)
def simulate(
    config_paths: tuple[str, ...],
    overrides: tuple[str, ...],
    seed: int | None,
    seeds: str | None,
    workers: int,
    scheduler: str | None,
    out: str | None,
    overwrite: bool,
    describe: bool,
    policy: str | None,
    knob: float | None,
    model_uri: str | None,
    tracking_uri: str | None,
    forecaster_url: str | None,
    forecaster_timeout: float,
    max_fallback_share: float,
    allow_fallback: bool,
    no_compile: bool,
) -> None:
    """Run a scenario through the engine and write Parquet histories plus a manifest."""
    import math

    from pipelines.simulate import FallbackError, format_summary, parse_seeds, simulate_to

    if not math.isfinite(forecaster_timeout):
        _fail(f"--forecaster-timeout must be a finite number of seconds, was {forecaster_timeout}")
    if math.isnan(max_fallback_share):
        _fail("--max-fallback-share must be a share from 0 to 1, was nan")
    if allow_fallback:
        # Both given would silently drop the share the user asked for: refuse instead.
        source = click.get_current_context().get_parameter_source("max_fallback_share")
        if source is click.core.ParameterSource.COMMANDLINE:
            _fail(
                "--allow-fallback and --max-fallback-share exclude each other "
                "(--allow-fallback is --max-fallback-share 1)"
            )
        max_fallback_share = 1.0

    if seed is not None and seeds is not None:
        _fail("--seed and --seeds exclude each other")
    if seed is not None:
        overrides = (*overrides, f"seed={seed}")
    if out is None and not describe:
        _fail("--out is required (or --describe to print statistics instead)")
    try:
        config_path = str(config_path_of(config_paths[0]))
        if len(config_paths) > 1:
            from pipelines.recommend import load_overlay

            layers = [load_overlay(Path(p)) for p in config_paths[1:]]
            overrides = (*(o for layer in layers for o in layer), *overrides)
    except PredliqError as e:
        _fail(str(e))
    overrides, source = _policy_overrides(
        overrides,
        policy,
        knob,
        model_uri,
        tracking_uri,
        compiled=not no_compile,
        url=forecaster_url,
        timeout_s=forecaster_timeout,
    )
    try:
        cfg = load_config(config_path, overrides)
        if cfg.policy.name == "predictive" and source.kind == "none":
            _fail("the predictive policy needs a forecaster: give --policy predictive --model URI")
        if source.kind == "remote":
            _check_remote(cfg, source)
        if describe:
            _describe(cfg)
            return
        assert out is not None
        if seeds is not None:
            seed_list = parse_seeds(seeds)
            _sweep(
                config_path,
                overrides,
                seed_list,
                out,
                overwrite,
                workers,
                scheduler,
                source,
                max_fallback_share,
            )
            return
        sim, path = simulate_to(cfg, Path(out), overwrite, source, max_fallback_share)
    except FallbackError as e:
        _fail(str(e), 3)
    except PredliqError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write {out}: {e.strerror or e}", 1)
    if sim is None:
        click.echo(f"{path} is already complete for this config; nothing to do")
        return
    click.echo(format_summary(sim))
    click.echo(f"wrote {path}")


def _policy_overrides(
    overrides: tuple[str, ...],
    policy: str | None,
    knob: float | None,
    model_uri: str | None,
    tracking_uri: str | None,
    compiled: bool = True,
    url: str | None = None,
    timeout_s: float = 2.0,
):
    """Return (config overrides, forecast source) for --policy/--knob/--model; a model is
    loaded and checked here, before anything runs."""
    from pipelines.simulate import NO_FORECASTS, ForecastSource

    if (model_uri is not None or url is not None) and policy != "predictive":
        _fail("--model and --forecaster-url are only used by --policy predictive")
    if model_uri is not None and url is not None:
        _fail("--model and --forecaster-url exclude each other")
    if policy is None:
        extra: tuple[str, ...] = ()
        source = NO_FORECASTS
    else:
        engine_policy = "predictive" if policy in ("analytic", "oracle") else policy
        extra = (f'policy.name="{engine_policy}"',)
        source = ForecastSource(policy) if policy in ("analytic", "oracle") else NO_FORECASTS
    if knob is not None:
        extra = (*extra, f"policy.knob={knob!r}")
    if policy == "predictive" and url is not None:
        if not url.startswith(("http://", "https://")):
            _fail(f"--forecaster-url must be an http(s) URL, was {url!r}")
        return (*overrides, *extra), ForecastSource("remote", url, timeout_s=timeout_s)
    if policy == "predictive":
        if model_uri is None:
            _fail(
                "--policy predictive needs --model (a registry URI or an export folder) or "
                "--forecaster-url"
            )
        from predictor.serving import load_forecaster

        try:
            model = load_forecaster(model_uri, tracking_uri=tracking_uri)
        except PredliqError as e:
            _fail(str(e))
        source = ForecastSource("model", model, compiled)
        extra = (*extra, f"policy.horizon_minutes={float(model.horizon_minutes)!r}")
    return (*overrides, *extra), source


def _check_remote(cfg, source) -> None:
    """Refuse a served forecaster the run cannot use, before the run (like the tracking URI):
    one that does not answer, or the budget allocation, which needs expected losses too."""
    from predictor.serving import check_remote

    if cfg.policy.allocation == "budget":
        _fail(
            "the budget allocation needs a forecaster of losses as well as breaches "
            "(--forecaster-url serves breach probabilities only)"
        )
    try:
        check_remote(source.model, source.timeout_s)
    except PredliqError as e:
        _fail(str(e))


def _sweep(
    config_path: str,
    overrides: tuple[str, ...],
    seeds: list[int],
    out: str,
    overwrite: bool,
    workers: int,
    scheduler: str | None,
    source=None,
    max_fallback_share: float = 0.0,
) -> None:
    """Validate every seed's config and output first, then run them (in parallel)."""
    from engine.history import check_partition
    from pipelines.simulate import NO_FORECASTS, run_sweep

    cfgs = [load_config(config_path, (*overrides, f"seed={s}")) for s in seeds]
    for cfg in cfgs:
        check_partition(out, cfg, overwrite)  # refuse before running anything
    click.echo(
        f"{cfgs[0].name}: {len(cfgs)} seeds ({seeds[0]}..{seeds[-1]}) into {out} with "
        + (
            f"the scheduler at {scheduler}"
            if scheduler
            else f"{workers} worker(s)" + (f" (Dask's log: {WORKER_LOG})" if workers > 1 else "")
        )
    )
    from pipelines.progress import Progress

    with Progress(len(cfgs), "seeds") as bar:
        for result in run_sweep(
            cfgs, out, overwrite, workers, scheduler, source or NO_FORECASTS, max_fallback_share
        ):
            if result["status"] == "written":
                bar.step(
                    f"seed {result['seed']}: {result['liquidations']:,} liquidations, bad debt "
                    f"{result['bad_debt']:,.0f}, {result['breach_onsets']:,} breach onsets"
                )
            else:
                bar.step(f"seed {result['seed']}: already complete")


def _describe(cfg) -> None:
    from pipelines.describe import describe, format_table

    sim, rows = describe(cfg)
    click.echo(
        f"{cfg.name} seed {cfg.seed}: {sim.t} blocks of {cfg.tick_ms / 1000:g}s, "
        f"{cfg.accounts.count:,} accounts, index model {cfg.index.model}"
    )
    click.echo(format_table([mk.name for mk in cfg.markets], rows))


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="real|PATH...")
def facts(paths: tuple[str, ...]) -> None:
    """Print the stylized facts of real 1-minute bar files (files or folders of them; 'real':
    the crash files shipped with predliq)."""
    from pipelines.describe import facts_table, real_files

    files = real_files([str(replay_place(p)) for p in paths])
    if not files:
        _fail(f"no 1-minute bar files (*_1m_*.csv[.gz]) in {', '.join(paths)}")
    try:
        click.echo(facts_table(files))
    except PredliqError as e:
        _fail(str(e))


@main.command()
def scenarios() -> None:
    """List the configs and real crash files that ship with predliq, one line each; pass a
    name to --config (simulate, train) or --scenarios (evaluate)."""
    from pipelines.shipped import catalog, real_crash_files

    shipped = catalog()
    width = max(len(s.name) for s in shipped)
    kind_width = max(len(s.kind) for s in shipped)
    for s in shipped:
        click.echo(f"{s.name:<{width}}  {s.kind:<{kind_width}}  {s.about}")
    held_out = ", ".join(s.name for s in shipped if s.kind == "evaluation family")
    click.echo(
        f"\n--scenarios eval: the held-out evaluation families ({held_out}); "
        "--scenarios scenarios: the training scenarios"
    )
    crashes = real_crash_files()
    click.echo(f"--replays real: {len(crashes)} real 1-minute crash files in {crashes[0].parent}")
    for f in crashes:
        click.echo(f"  {f.name}")


@main.command()
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the built-in scenario (repeatable).",
)
@click.option(
    "--out",
    default="predliq-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's histories, MLflow store, models and report.",
)
@click.option(
    "--stress-only",
    is_flag=True,
    help="Only the built-in stress scenario (seconds), not the whole pipeline.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="The whole pipeline at smoke-test size (tiny runs; the tests use it).",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
def demo(
    overrides: tuple[str, ...], out: str, stress_only: bool, quick: bool, workers: int
) -> None:
    """Run the whole pipeline on built-in defaults: the stress scenario, a small training set,
    a registered forecaster, and an evaluation of every policy with its report."""
    from pipelines.demo import FULL, QUICK, STRESS_CONFIG, demo_config, run_pipeline
    from pipelines.evaluate import format_headline
    from pipelines.progress import Progress, note
    from pipelines.simulate import format_summary, run

    try:
        cfg = demo_config(overrides)
        if not stress_only:
            check_writable_root(out)
    except PredliqError as e:
        _fail(str(e))
    click.echo(
        f"predliq demo: scenario '{cfg.name}' ({STRESS_CONFIG.name}): "
        f"{cfg.accounts.count:,} accounts on {len(cfg.markets)} markets, {cfg.steps} blocks; "
        + "; ".join(
            f"{s.market} index {s.log_return:+.0%} (log) over {s.over_ticks} blocks "
            f"from block {s.tick}"
            for s in cfg.shocks
        )
    )
    sim = run(cfg)
    click.echo(format_summary(sim))
    if stress_only:
        return
    click.echo("\nthe whole pipeline: simulate -> train -> register -> evaluate")
    try:
        summary = run_pipeline(Path(out), QUICK if quick else FULL, note, workers, counter=Progress)
    except PredliqError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write {out}: {e.strerror or e}", 1)
    click.echo("\nheadline: the predictive policy and the control arms against each baseline")
    click.echo(format_headline(summary))
    click.echo(f"\nreport: {Path(out).resolve() / 'report' / 'report.html'}")


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="History root written by predliq simulate.",
)
@click.option("--horizon", default=None, help="Forecast horizon, e.g. 5m, 15m, 1h (default 5m).")
@click.option(
    "--config",
    "config_path",
    default=None,
    metavar="NAME|PATH",
    help="Training config: a TOML file, or 'train' for the shipped one (the defaults).",
)
@click.option("--seed", type=int, default=None, help="Training seed (sampling, LightGBM).")
@click.option("--experiment", default=None, help="MLflow experiment (default breach-forecaster).")
@tracking_uri_option
@click.option(
    "--export-dir",
    default="models",
    type=click.Path(file_okay=False),
    help="Where the champion is exported (default models/).",
)
@click.option(
    "--dask",
    "use_dask",
    is_flag=True,
    help="Build the features and grow the trees (lightgbm.dask) on a Dask cluster: --workers "
    "local processes, or --scheduler.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Local Dask worker processes for --dask.",
)
@click.option(
    "--scheduler", default=None, metavar="ADDRESS", help="A Dask scheduler (implies --dask)."
)
def train(
    data: str,
    horizon: str | None,
    config_path: str | None,
    seed: int | None,
    experiment: str | None,
    tracking_uri: str | None,
    export_dir: str,
    use_dask: bool,
    workers: int,
    scheduler: str | None,
) -> None:
    """Train a breach forecaster with its expected-loss heads and its baselines, log them to
    MLflow, promote a champion."""
    import time

    from pipelines.progress import Progress, note
    from pipelines.train import format_result
    from predictor.tracking import DEFAULT_TRACKING_URI, connect, log_training
    from predictor.train import load_train_config
    from predictor.train import train as run_training

    uri = tracking_uri or DEFAULT_TRACKING_URI
    try:
        if config_path is not None:
            config_path = str(config_path_of(config_path))
        cfg = load_train_config(
            config_path, {"horizon": horizon, "seed": seed, "experiment": experiment}
        )
        connect(uri)  # fail before hours of work, not after
        check_writable_root(export_dir)  # and the export folder too
        t0 = time.perf_counter()

        def progress(message: str) -> None:
            note(f"[{time.perf_counter() - t0:6.1f}s] {message}")

        if use_dask or scheduler is not None:
            from pipelines.cluster import dask_client

            with dask_client(workers, scheduler) as client:
                result = run_training(data, cfg, progress=progress, client=client, counter=Progress)
        else:
            result = run_training(data, cfg, progress=progress, log_every=50, counter=Progress)
    except PredliqError as e:
        _fail(str(e))
    click.echo(format_result(result))
    try:
        outcome = log_training(result, uri, cfg.experiment, Path(export_dir))
    except PredliqError as e:
        _fail(str(e))
    click.echo(
        f"\nlogged run {outcome.run_id} in experiment {outcome.experiment!r} ({uri}); "
        f"registered {outcome.name} v{outcome.version} as {outcome.alias}: {outcome.reason}"
    )
    if outcome.exported_to is not None:
        click.echo(f"exported the champion to {outcome.exported_to}")


@main.command()
@click.option(
    "--model",
    "model_uri",
    default="models:/breach-forecaster@champion",
    show_default=True,
    metavar="URI",
    help="Registered forecaster to serve: models:/NAME@ALIAS, models:/NAME/VERSION or runs:/...",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (127.0.0.1: this machine only).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=5001, show_default=True)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Listen on an address other than this machine's loopback (the endpoint has no "
    "authentication: anyone who reaches it can query the model).",
)
@tracking_uri_option
def serve(
    model_uri: str, host: str, port: int, allow_remote: bool, tracking_uri: str | None
) -> None:
    """Serve a registered forecaster over HTTP for --forecaster-url.

    Only the forecaster's own files are read (model.txt and model.json, SHA-256 checked); a
    registered version's other contents, a pickle included, are never loaded. SIGTERM, SIGHUP
    and Ctrl-C stop the server and free the port.
    """
    import signal
    import threading

    from predictor.server import ForecastServer
    from predictor.serving import load_forecaster
    from predictor.tracking import DEFAULT_TRACKING_URI

    if not model_uri.startswith(("models:/", "runs:/")):
        _fail(f"serve takes a registry or run URI (models:/... or runs:/...), was {model_uri!r}")
    if not _is_loopback(host):
        if not allow_remote:
            _fail(
                f"--host {host} is reachable from other machines and the endpoint has no "
                "authentication; pass --allow-remote to serve there anyway"
            )
        click.echo(
            f"warning: serving on {host}, beyond this machine, with no authentication: anyone "
            "who reaches the port can query the model",
            err=True,
        )
    uri = tracking_uri or DEFAULT_TRACKING_URI
    try:
        model = load_forecaster(model_uri, tracking_uri=uri)  # verified, features checked
    except PredliqError as e:
        _fail(str(e))
    try:
        server = ForecastServer(model, (host, port), name=model_uri)
    except OSError as e:
        _fail(f"cannot listen on {host}:{port} ({e.strerror})")
    stopped_by: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, so it must run off this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)
    click.echo(f"serving {model_uri} at http://{host}:{port}/invocations (Ctrl-C stops)")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    click.echo(f"stopped ({stopped_by[0] if stopped_by else 'server ended'})")


def _is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


@main.command()
@click.option(
    "--model",
    "model_uri",
    default="models:/breach-forecaster@champion",
    show_default=True,
    metavar="URI",
    help="Forecaster of the predictive policy: registry URI, runs:/... or an export folder.",
)
@click.option(
    "--scenarios",
    "scenario_places",
    required=True,
    multiple=True,
    metavar="NAME|PATH",
    help="Scenario families to evaluate on (repeatable): 'eval' (the shipped held-out "
    "families), 'scenarios', a shipped scenario's name, a folder of *.toml or a file.",
)
@click.option(
    "--seeds", required=True, metavar="RANGE", help="Evaluation seeds (reported), e.g. 1000-1099."
)
@click.option(
    "--tune-seeds",
    "tune_seeds",
    required=True,
    metavar="RANGE",
    help="Tuning seeds on which each policy's knob is chosen at the matched cost (never "
    "reported; must not overlap --seeds or the model's training seeds), e.g. 900-919.",
)
@click.option(
    "--replays",
    "replay_places",
    multiple=True,
    metavar="real|PATH",
    help="Real 1-minute bar files, or folders of them (*_1m_*.csv[.gz]), to replay under every "
    "policy with the same population (repeatable); 'real' is the crash files shipped with "
    "predliq.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of every scenario (repeatable), e.g. --set accounts.count=2000.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, help="Local Dask processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="An existing Dask scheduler.")
@click.option(
    "--bootstrap",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Paired bootstrap draws for the confidence intervals.",
)
@click.option(
    "--attest",
    "attest_policies",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[POLICY,...]",
    help="Also prove each policy's health at its worst block of the path with the most "
    "reactive bad debt (default static,predictive), verify it and show it in the report; "
    "needs `predliq attest setup` or --attest-ptau. Minutes per policy for large books.",
)
@click.option(
    "--attest-ptau",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A prepared powers-of-tau file for --attest (default: the largest local one).",
)
@click.option(
    "--attest-batch-size",
    type=click.Choice([str(n) for n in BATCH_SIZES]),
    default="16",
    show_default=True,
    help="Accounts per batch proof for --attest (as predliq attest's: 16 fits the default "
    "setup's 2^14; 64, as benchmarked, needs predliq attest setup --power 16).",
)
@click.option(
    "--attest-arity",
    type=click.Choice([str(n) for n in ARITIES]),
    default=str(AGGREGATE_ARITY),
    show_default=True,
    help="Children per aggregate proof for --attest.",
)
@tracking_uri_option
def evaluate(
    model_uri: str,
    scenario_places: tuple[str, ...],
    seeds: str,
    tune_seeds: str,
    replay_places: tuple[str, ...],
    out: str,
    overrides: tuple[str, ...],
    workers: int,
    scheduler: str | None,
    bootstrap: int,
    attest_policies: str | None,
    attest_ptau: Path | None,
    attest_batch_size: str,
    attest_arity: str,
    tracking_uri: str | None,
) -> None:
    """Compare anticipatory with reactive liquidation on held-out paths, at matched all-in
    cost: every policy and control arm on the same paths, knobs chosen on tuning seeds and
    reported on evaluation seeds, per family and pooled, with paired bootstrap intervals; writes
    summary.json, runs.parquet and a self-contained report.html that opens with the verdict."""
    from pipelines.evaluate import format_headline, run_evaluation
    from pipelines.progress import Progress, note

    try:
        summary, run_id = run_evaluation(
            model_uri,
            [scenarios_place(p) for p in scenario_places],
            seeds,
            [replay_place(p) for p in replay_places],
            Path(out),
            overrides,
            workers,
            scheduler,
            bootstrap,
            tracking_uri,
            progress=note,
            tune_seeds=tune_seeds,
            counter=Progress,
            attest=None
            if attest_policies is None
            else {
                "policies": attest_policies,
                "ptau_file": attest_ptau,
                "batch_size": int(attest_batch_size),
                "arity": int(attest_arity),
            },
        )
    except PredliqError as e:
        _fail(str(e))
    click.echo(format_headline(summary))
    click.echo(f"report: {Path(out) / 'report.html'}")
    click.echo(f"wrote {Path(out) / 'summary.json'}; logged evaluation run {run_id}")


main.add_command(attest)
main.add_command(verify)
main.add_command(recommend)

if __name__ == "__main__":
    main()
