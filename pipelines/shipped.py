"""What ships inside the package, found by name: scenario, evaluation and training configs
(``configs/``, installed as ``predliq_configs``) and the real crash files (``pipelines/data``).

``predliq simulate --config cascade`` and ``predliq evaluate --scenarios eval`` work from any
folder after a wheel install; a path that exists always wins over a shipped name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.errors import PredliqError

CONFIGS = Path(str(resources.files("predliq_configs")))
"""The shipped configs: scenarios/, eval/ (held-out families), stress.toml, train.toml."""
REAL_CRASHES = Path(str(resources.files("pipelines"))) / "data" / "market"
"""Real 1-minute crash files shipped inside the package (provenance in PROVENANCE.md)."""

# The folders `--scenarios` takes by name, and what their configs are; a bare --config name is
# looked up in them, then beside them.
_FOLDERS = {"scenarios": "scenario", "eval": "evaluation family"}
_FILE_PLACES = (*_FOLDERS, ".")


class UnknownConfigError(PredliqError, ValueError):
    """A --config or --scenarios that is neither a path nor a shipped name."""


@dataclass(frozen=True)
class Shipped:
    """One shipped config: its name, what it is, its file and its one-line description."""

    name: str
    kind: str  # "scenario", "evaluation family", "stress scenario", "training", "example"
    path: Path
    about: str


def _is_name(place: str) -> bool:
    return "/" not in place and "\\" not in place and not place.endswith(".toml")


def config_path(place: str) -> Path:
    """Return the config file ``place`` names: an existing path, or a shipped config's name
    (``cascade``, ``short_squeeze``, ``stress``, ``train``)."""
    given = Path(place)
    if given.exists() or not _is_name(place):
        return given  # the loader reports a missing or unreadable path with its name
    for folder in _FILE_PLACES:
        candidate = CONFIGS / folder / f"{place}.toml"
        if candidate.is_file():
            return candidate
    raise UnknownConfigError(
        f"config {place!r} is neither a file nor a shipped config (predliq scenarios lists them)"
    )


def scenarios_place(place: str) -> Path:
    """Return the file or folder ``--scenarios place`` names: an existing path, a shipped
    folder (``eval``: the held-out families, ``scenarios``: the training scenarios) or a
    shipped scenario's name."""
    given = Path(place)
    if given.exists() or not _is_name(place):
        return given
    if place in _FOLDERS:
        return CONFIGS / place
    return config_path(place)


def _about(path: Path) -> str:
    """The first sentence of the file's leading comment."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def catalog() -> list[Shipped]:
    """Every shipped config, training scenarios first."""
    found = [
        Shipped(p.stem, kind, p, _about(p))
        for folder, kind in _FOLDERS.items()
        for p in sorted((CONFIGS / folder).glob("*.toml"))
    ]
    top = {"stress": "stress scenario", "train": "training", "example": "example"}
    found += [
        Shipped(n, k, CONFIGS / f"{n}.toml", _about(CONFIGS / f"{n}.toml")) for n, k in top.items()
    ]
    return found


def real_crash_files() -> list[Path]:
    """The shipped real crash files, by name."""
    return sorted(REAL_CRASHES.glob("*_1m_*.csv.gz"))


def replay_place(place: str) -> Path:
    """Return the file or folder ``--replays place`` names: ``real`` is the shipped crash
    files, anything else a path."""
    return REAL_CRASHES if place == "real" and not Path(place).exists() else Path(place)
