"""The Dask worker plugin that sends a worker's log records to predliq's log file, and the file
handler the scheduler's process uses too. Imports distributed: the cluster module imports it only
when it starts a local cluster."""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

_LOG_FORMAT = "%(asctime)s pid %(process)d %(name)s %(levelname)s %(message)s"


class LogToFile(WorkerPlugin):
    """A worker's own records (a failed task's traceback) go to the log file; its terminal
    handlers are muted, so the command alone reports the failure, in one line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def setup(self, worker: Any) -> None:
        logger = logging.getLogger("distributed")
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(logging.CRITICAL + 1)
        logger.addHandler(file_handler(self.path))


def file_handler(path: str) -> logging.Handler:
    """Return a handler appending records from warnings up to ``path`` (opened on first use)."""
    handler = logging.FileHandler(path, delay=True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    return handler
