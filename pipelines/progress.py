"""Progress of long work: a bar with an ETA on a terminal, plain timestamped lines otherwise.

A person at a terminal wants to know how long is left; a CI log or a file wants one dated line
per step it can grep. Both go to standard error, so standard output keeps only results.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import IO, Any


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def stamped(message: str, stream: IO[str] | None = None) -> None:
    """Write ``message`` as one line with the date and time in front."""
    stream = stream or sys.stderr
    print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {message}", file=stream, flush=True)


def note(message: str, stream: IO[str] | None = None) -> None:
    """A one-off message: as it is on a terminal, timestamped otherwise."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        print(message, file=stream, flush=True)
    else:
        stamped(message, stream)


class Progress:
    """``total`` steps of work: a tqdm bar with rate and ETA when ``stream`` is a terminal (each
    step's note written above it), else one timestamped line per step (``[3/12 paths] note ·
    ETA 40 s``). ``note`` writes a message without advancing."""

    def __init__(
        self, total: int, unit: str, stream: IO[str] | None = None, tty: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, file=self.stream, dynamic_ncols=True)

    def step(self, note: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            if note:
                self.bar.write(note, file=self.stream)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.started
        eta = ""
        if 0 < self.done < self.total:
            eta = f" · ETA {_duration(elapsed / self.done * (self.total - self.done))}"
        stamped(f"[{self.done}/{self.total} {self.unit}] {note}{eta}", self.stream)

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            stamped(message, self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Steps:
    """The same interface as Progress over a plain message callback (a library caller's, or
    the demo's own stamped echo): ``[i/n unit] note`` per step."""

    def __init__(self, total: int, unit: str, echo: Any) -> None:
        self.total, self.unit, self.echo, self.done = total, unit, echo, 0

    def step(self, note: str = "") -> None:
        self.done += 1
        self.echo(f"[{self.done}/{self.total} {self.unit}] {note}")

    def note(self, message: str) -> None:
        self.echo(message)

    def close(self) -> None:
        pass

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
