"""`predliq demo`: the whole pipeline on a built-in default, small enough for a laptop.

1. the built-in stress scenario, summarized (what reactive liquidation costs a venue);
2. a small training set: shipped crash scenarios at demo size, seeds 0-3;
3. a breach forecaster trained, validated and registered — in the demo's own MLflow store
   (``<out>/mlruns``), so a demo never becomes the champion of a real registry;
4. an evaluation of every policy and control arm: knobs chosen on tuning seeds 90-91, reported
   on held-out seeds 100-103, including a scenario family the model never saw and the real crash
   replays shipped with the package, with its headline and report.

Every step resumes: partitions already written are kept, so a second run mostly re-trains and
re-evaluates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import SimConfig, load_config
from pipelines.shipped import CONFIGS, REAL_CRASHES

STRESS_CONFIG = CONFIGS / "stress.toml"
"""The built-in stress scenario (shipped with the package, like every config)."""


def demo_config(overrides: tuple[str, ...] = ()) -> SimConfig:
    """Return the built-in stress scenario config, with optional overrides."""
    return load_config(STRESS_CONFIG, overrides)


@dataclass(frozen=True)
class DemoScale:
    """How big the demo's pipeline is."""

    accounts: int
    steps: int
    train_scenarios: tuple[str, ...]
    train_seeds: tuple[int, ...]
    eval_seeds: str
    tune_seeds: str
    bootstrap: int
    replay_steps: int  # 0: whole files


FULL = DemoScale(
    accounts=3_000,
    steps=720,
    train_scenarios=("cascade", "flash_crash", "volatile", "correlated_crash"),
    train_seeds=(0, 1, 2, 3),
    eval_seeds="100-103",
    tune_seeds="90-91",
    bootstrap=1000,
    replay_steps=0,
)
QUICK = DemoScale(
    accounts=400,
    steps=200,
    train_scenarios=("cascade", "flash_crash"),
    train_seeds=(0, 1, 2, 3),
    eval_seeds="100",
    tune_seeds="90",
    bootstrap=200,
    replay_steps=200,
)
"""A smoke-test size (the tests run it): every step, tiny runs."""


def run_pipeline(
    out: Path,
    scale: DemoScale,
    echo: Callable[[str], None],
    workers: int = 2,
    counter: Callable[[int, str], Any] | None = None,
) -> dict[str, Any]:
    """Simulate, train, register and evaluate into ``out``; return the evaluation summary.
    ``counter(total, unit)`` tracks counted work (pipelines.progress.Progress: a bar with an
    ETA on a terminal); by default ``[i/n unit]`` lines to ``echo``."""
    import time

    from pipelines.evaluate import run_evaluation
    from pipelines.progress import Steps
    from pipelines.simulate import run_sweep
    from pipelines.train import format_result
    from predictor.tracking import log_training
    from predictor.train import load_train_config
    from predictor.train import train as run_training

    out = out.resolve()
    uri = f"sqlite:///{out / 'mlruns' / 'mlflow.db'}"
    (out / "mlruns").mkdir(parents=True, exist_ok=True)
    size = (f"accounts.count={scale.accounts}", f"steps={scale.steps}")
    t0 = time.perf_counter()

    def stamp(message: str) -> None:
        echo(f"[{time.perf_counter() - t0:6.1f}s] {message}")

    if counter is None:

        def counter(total: int, unit: str) -> Steps:
            return Steps(total, unit, stamp)

    histories = out / "histories"
    cfgs = [
        load_config(CONFIGS / "scenarios" / f"{name}.toml", (*size, f"seed={seed}"))
        for name in scale.train_scenarios
        for seed in scale.train_seeds
    ]
    stamp(
        f"simulating the training set: {', '.join(scale.train_scenarios)} x seeds "
        f"{scale.train_seeds[0]}-{scale.train_seeds[-1]}, {scale.accounts:,} accounts, "
        f"{scale.steps} blocks each"
    )
    with counter(len(cfgs), "runs") as bar:
        for result in run_sweep(cfgs, str(histories), False, workers, None):
            bar.step(f"{result['scenario']} seed {result['seed']} ({result['status']})")
    stamp("training the 5-minute breach forecaster")
    train_cfg = load_train_config(None, {"horizon": "5m"})
    result = run_training(
        histories, train_cfg, progress=lambda m: None, log_every=0, counter=counter
    )
    echo(format_result(result))
    outcome = log_training(result, uri, train_cfg.experiment, out / "models")
    stamp(f"registered {outcome.name} v{outcome.version} as {outcome.alias} in {uri}")

    replays = [REAL_CRASHES]  # shipped with the package: a missing file is an error, not a skip
    replay_size: tuple[str, ...] = (f"accounts.count={scale.accounts}",)
    if scale.replay_steps:
        replay_size = (*replay_size, f"steps={scale.replay_steps}")
    summary, run_id = run_evaluation(
        f"models:/{outcome.name}@champion",
        [CONFIGS / "eval", CONFIGS / "scenarios" / "cascade.toml"],
        scale.eval_seeds,
        replays,
        out / "report",
        size,
        workers=workers,
        bootstrap=scale.bootstrap,
        tracking_uri=uri,
        progress=stamp,
        replay_overrides=replay_size,
        tune_seeds=scale.tune_seeds,
        counter=counter,
    )
    stamp(f"evaluation logged as run {run_id}")
    return summary
