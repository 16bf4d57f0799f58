"""Progress: a bar with an ETA on a terminal, dated lines when the output is not a terminal."""

from __future__ import annotations

import io
import re

from pipelines.progress import Progress, note


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gets_one_timestamped_line_per_step_with_an_eta():
    out = io.StringIO()
    with Progress(3, "paths", stream=out) as bar:
        for name in ("a", "b", "c"):
            bar.step(f"cascade seed {name}")
    lines = out.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(stamp + r" \[1/3 paths\] cascade seed a · ETA \d+ s", lines[0])
    assert re.fullmatch(stamp + r" \[3/3 paths\] cascade seed c", lines[2])  # no ETA when done
    note("trained", out)
    assert re.fullmatch(stamp + " trained", out.getvalue().splitlines()[-1])


def test_a_terminal_gets_a_bar_with_the_notes_above_it():
    out = _Terminal()
    with Progress(2, "seeds", stream=out) as bar:
        bar.step("seed 0: 12 liquidations")
        bar.step("seed 1: 9 liquidations")
    text = out.getvalue()
    assert "seed 0: 12 liquidations\n" in text and "seed 1: 9 liquidations\n" in text
    assert "2/2" in text and "seeds" in text and "\r" in text  # tqdm redraws its bar in place
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:", text)
