"""Many independent tasks (seeds, paths) run here or on Dask, results yielded as they finish."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import PredliqError

CONNECT_TIMEOUT_S = 10
"""How long to wait for a scheduler before giving up (Dask's own default is 30 s)."""
WORKER_LOG = Path(tempfile.gettempdir()) / f"predliq-{os.getuid()}-dask.log"
"""Where a local cluster's workers and scheduler log (appended): a task that fails on bad input
is reported by the command as one line, as in a serial run, and its traceback lands here."""


class ClusterError(PredliqError, RuntimeError):
    """A scheduler that cannot be reached; the message is one line naming it."""


def map_tasks(
    fn: Callable[..., Any],
    items: Iterable[Any],
    workers: int = 1,
    scheduler: str | None = None,
    *args: Any,
) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item: in this process, in order, when ``workers`` is 1
    and no scheduler is given; else on a dask.distributed client — a LocalCluster of
    ``workers`` processes, or the scheduler at ``scheduler`` — in the order they finish."""
    items = list(items)
    if workers <= 1 and scheduler is None:
        for item in items:
            yield fn(item, *args)
        return
    from distributed import as_completed

    with dask_client(workers, scheduler) as client:
        futures = [client.submit(fn, item, *args, pure=False) for item in items]
        for fut in as_completed(futures):
            yield fut.result()


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """Yield a dask.distributed Client: of the scheduler at ``scheduler`` (ClusterError when it
    does not answer within CONNECT_TIMEOUT_S), or of a LocalCluster of ``workers`` processes
    with one thread each, closed afterwards."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ClusterError(f"Dask scheduler {scheduler} is unreachable: {reason}") from None
        with client:
            yield client
        return
    from pipelines.worker_log import LogToFile  # imports distributed: only when needed

    with (
        _logs_to(WORKER_LOG),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # Even without a dashboard the scheduler serves its health and metrics routes,
            # by default on port 8787 of every interface: a second cluster on the machine then
            # warns on the terminal, and the port is open to the network. A free loopback port.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # Dask's terminal logging is muted; the worker plugin and _logs_to send everything
            # from warnings up to the log file instead.
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(LogToFile(str(WORKER_LOG)), name="predliq-log-to-file")
        yield client


@contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Send this process's Dask log records (the scheduler's, the nannies') to ``path``."""
    from pipelines.worker_log import file_handler

    handler = file_handler(str(path))
    logger = logging.getLogger("distributed")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
