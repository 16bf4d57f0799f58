"""Scale-out on Dask: simulation and evaluation throughput with 1 and 2 workers.

    python tests/perf/bench_scale.py [--seeds 4] [--model models/breach-forecaster]

Prints, on this machine:

1. seed sweeps of the cascade scenario (full size) written as partitions: serial (in this
   process), and on a LocalCluster of 1 and of 2 worker processes — seeds per minute and the
   speed-up of 2 workers over 1;
2. evaluation paths (every policy and knob of ``predliq evaluate`` on one scenario and seed):
   the same, a path's own time alone and beside another (contention between the processes),
   the bytes each path sends the driver, and the projected wall time of a 10,000-path
   evaluation at 2 workers;
3. where the time goes that does not scale: cluster start-up, and the share of a sweep's time
   spent writing Parquet and the bytes written per seed (measured on the serial run).

The evaluation part needs ``models/breach-forecaster`` (``predliq train --data data/histories``).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

from engine.config import load_config
from engine.history import write_run
from engine.sim import Simulation
from pipelines.cluster import map_tasks
from pipelines.evaluate import run_path
from pipelines.methodology import DEFAULT_KNOBS, by_path, plan
from pipelines.simulate import run_sweep
from predictor.model import BreachForecaster

ROOT = Path(__file__).resolve().parents[2]
CASCADE = ROOT / "configs" / "scenarios" / "cascade.toml"


def sweep_time(cfgs, workers: int | None) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        list(run_sweep(cfgs, out, False, workers or 1, None))
        return time.perf_counter() - t0


def cluster_start_time() -> float:
    """Return the time to start and stop a LocalCluster of 2 worker processes."""
    from distributed import LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None):
        pass
    return time.perf_counter() - t0


def write_share(cfg) -> tuple[float, int]:
    """Return the share of one seed's time spent writing its partition, and its bytes."""
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    sim.run()
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_run(sim, out)
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    return (t2 - t1) / (t2 - t0), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--model", default=str(ROOT / "models" / "breach-forecaster"))
    args = ap.parse_args()
    cfgs = [load_config(CASCADE, [f"seed={s}"]) for s in range(args.seeds)]
    n = len(cfgs)
    serial = sweep_time(cfgs, None)
    one, _ = _on_cluster(lambda address, out: list(run_sweep(cfgs, out, False, 1, address)), 1)
    two, _ = _on_cluster(lambda address, out: list(run_sweep(cfgs, out, False, 1, address)), 2)
    print(f"seed sweep, cascade at full size, {n} seeds (partitions written):")
    print(f"  serial:      {serial:6.1f} s  {60 * n / serial:5.1f} seeds/min")
    print(f"  1 worker:    {one:6.1f} s  {60 * n / one:5.1f} seeds/min")
    print(f"  2 workers:   {two:6.1f} s  {60 * n / two:5.1f} seeds/min: {one / two:.2f} x 1 worker")
    share, size = write_share(cfgs[0])
    print(f"  writing Parquet: {share:.0%} of a seed's time (serial), {size / 1e6:.0f} MB per seed")
    print(f"  starting a 2-process LocalCluster: {cluster_start_time():.1f} s")

    model = BreachForecaster.load(args.model)
    paths = plan([("cascade", CASCADE)], list(range(5000, 5000 + n)), DEFAULT_KNOBS, model, 5.0, ())
    groups = by_path(paths)
    settings = sum(len(k) for k in DEFAULT_KNOBS.values())
    t_one, alone = _on_cluster(lambda a, _: list(map_tasks(timed_path, groups, 1, a)), 1)
    t_two, busy = _on_cluster(lambda a, _: list(map_tasks(timed_path, groups, 1, a)), 2)
    per_path = t_two / n
    print(f"evaluation paths (cascade, {settings} policy settings each), {n} paths:")
    print(f"  1 worker:    {t_one:6.1f} s  {t_one / n:5.1f} s per path")
    print(f"  2 workers:   {t_two:6.1f} s  {per_path:5.1f} s per path: {t_one / t_two:.2f} x")
    # A path's own time with the other core idle and with both busy: the difference is what
    # the two processes take from each other (shared cache and memory bandwidth), not Dask.
    alone_s, busy_s = sum(t for t, _ in alone), sum(t for t, _ in busy)
    print(
        f"  one path's time inside its task: {alone_s / n:.1f} s alone, "
        f"{busy_s / n:.1f} s beside another ({busy_s / alone_s:.2f} x); "
        f"2 workers busy {busy_s / (2 * t_two):.0%} of the wall time"
    )
    gathered = sum(b for _, b in busy) / n
    print(f"  result gathered by the driver: {gathered / 1e6:.1f} MB per path")
    hours = 10_000 * per_path / 3600
    print(
        f"  a 10,000-path evaluation at 2 workers: about {hours:.1f} h here; "
        f"{hours * 2 / 64:.1f} h on 64 workers if it kept scaling"
    )


def timed_path(group) -> tuple[float, int]:
    """Run one evaluation path (a task on a worker); return its time on the worker and the
    size of the result the driver gathers."""
    t0 = time.perf_counter()
    result = run_path(group)
    return time.perf_counter() - t0, len(pickle.dumps(result))


def _on_cluster(fn, workers: int) -> tuple[float, object]:
    """Return the wall time and the result of ``fn(scheduler address, output folder)`` on a
    fresh LocalCluster of ``workers`` processes (start-up excluded)."""
    from distributed import LocalCluster

    with (
        tempfile.TemporaryDirectory() as out,
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        t0 = time.perf_counter()
        result = fn(cluster.scheduler_address, out)
        return time.perf_counter() - t0, result


if __name__ == "__main__":
    main()
