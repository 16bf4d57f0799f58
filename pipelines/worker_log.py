"""The Dask worker plugin that sends a worker's log records to predliq's log file."""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from pipelines.cluster import file_handler


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
