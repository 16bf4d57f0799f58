"""`predliq demo`: the built-in stress scenario, summarized (grows into the full pipeline later)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.config import SimConfig, load_config


def builtin_config_path(name: str = "stress") -> Path:
    """Return the path of a scenario config shipped inside the package."""
    return Path(str(resources.files("pipelines") / "builtin" / f"{name}.toml"))


def demo_config(overrides: tuple[str, ...] = ()) -> SimConfig:
    """Return the built-in stress scenario config, with optional overrides."""
    return load_config(builtin_config_path(), overrides)
