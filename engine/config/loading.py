"""Reading a config: TOML under venue preset defaults, then ``--set`` overrides, built into the
frozen sections strictly — an unknown key, a value of the wrong type or out of range is a
ConfigError naming the key and the value."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from engine.config.checks import MAX_INT, ConfigError, bound_number, require
from engine.config.margin import MARGIN_MODELS, MarginModel
from engine.config.run import SimConfig


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is float:
        require(
            isinstance(value, int | float) and not isinstance(value, bool),
            key,
            f"must be a number, was {value!r}",
        )
        try:
            x = float(value)
        except OverflowError:  # an integer beyond float64 (10**400)
            x = math.inf
        shown = (
            repr(value)
            if len(repr(value)) <= 30
            else f"{repr(value)[:12]}... ({len(repr(value))} digits)"
        )
        require(math.isfinite(x), key, f"must be a finite number, was {shown}")
        bound_number(key, x)
        return x
    if tp is int:
        require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, was {value!r}",
        )
        require(abs(value) <= MAX_INT, key, f"must be at most 2**53 in size, was {value!r}")
        return value
    if tp is bool:
        require(isinstance(value, bool), key, f"must be true or false, was {value!r}")
        return value
    if tp is str:
        require(isinstance(value, str), key, f"must be a string, was {value!r}")
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        require(value in allowed, key, f"must be one of {list(allowed)}, was {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        require(isinstance(value, list | tuple), key, f"must be a list, was {value!r}")
        return tuple(_build(item_tp, v, f"{key}.{i}") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union) and tp == MarginModel:
        require(isinstance(value, dict), key, f"must be a table, was {value!r}")
        model = value.get("model")
        require(
            model in MARGIN_MODELS,
            f"{key}.model",
            f"must be one of {sorted(MARGIN_MODELS)}, was {model!r}",
        )
        return _build(MARGIN_MODELS[model], value, key)
    if dataclasses.is_dataclass(tp):
        require(isinstance(value, dict), key, f"must be a table, was {value!r}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        for k in value:
            require(
                k in known,
                f"{key}.{k}" if key else str(k),
                f"is not a known key (known: {', '.join(sorted(known))}), was {value[k]!r}",
            )
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{key}.{f.name}" if key else f.name
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{sub} is required, was missing")
        try:
            return typing.cast(Any, tp)(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{key}.{e}" if key else str(e)) from None
    raise TypeError(f"unsupported config type {_type_name(tp)} at {key}")  # a bug, not user input


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_BARE_WORD = re.compile(r"^[A-Za-z_./~][A-Za-z0-9_./~\-]*$")
"""A value taken as a string when it is not TOML: a name (``dydx_v4``) or a file path
(``data/crash.csv.gz``, ``./x.csv``, ``/abs/x.csv``); never one that starts with a digit or a
sign, so a mistyped number (``1.5.2``) is refused rather than read as text."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value`` where value is a TOML value or a bare word (taken as a string)."""
    if "=" not in text:
        raise ConfigError(f"--set must look like key=value, was {text!r}")
    path, raw = text.split("=", 1)
    path = path.strip()
    raw = raw.strip()
    if not path or any(not p for p in path.split(".")):
        raise ConfigError(f"--set key must be a dotted path, was {path!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw in ("true", "false") or not _BARE_WORD.match(raw):
            raise ConfigError(f"--set {path} value does not parse, was {raw!r}") from None
        value = raw
    return path.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` in ``data``; list items by index or by their ``name``."""
    node: Any = data
    dotted = ".".join(path)
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(path[: i + 1]))
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(path[:i])} is not a table, was {node!r}")
    last = path[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, dotted)
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {dotted}: parent is not a table, was {node!r}")


def _list_index(items: list[Any], part: str, key: str) -> int:
    if part.isdigit():
        idx = int(part)
        if idx >= len(items):
            raise ConfigError(f"--set {key}: index {idx} is out of range, was {len(items)} items")
        return idx
    for idx, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    raise ConfigError(f"--set {key}: no item named {part!r}")


def _list_item(items: list[Any], part: str, key: str) -> Any:
    return items[_list_index(items, part, key)]


def resolve(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> SimConfig:
    """Merge venue presets under raw config data, apply overrides, and validate.

    Overrides are applied after the presets are merged, so ``--set`` can reach a preset's values
    (``markets.0.margin.brackets.0.maintenance_margin=0.03``); the venue they name (``--set
    venue=dydx_v4``) picks the presets.
    """
    parsed = [parse_override(text) for text in overrides]
    with_overrides = copy.deepcopy(data)
    for path, value in parsed:
        apply_override(with_overrides, path, value)
    merged = _merge_presets(data, with_overrides)
    for path, value in parsed:
        apply_override(merged, path, value)
    return _build(SimConfig, merged, "")


def _merge_presets(data: dict[str, Any], venues_from: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` over the defaults of the venues that ``venues_from`` names."""
    from engine.venues import PRESETS, preset_defaults

    venue = venues_from.get("venue", "generic")
    require(venue in PRESETS, "venue", f"must be one of {sorted(PRESETS)}, was {venue!r}")
    top_defaults = {k: v for k, v in preset_defaults(venue).items() if k != "market"}
    merged = _deep_merge(top_defaults, data)
    markets = data.get("markets")
    named = venues_from.get("markets")
    if not isinstance(markets, list):
        return merged
    out = []
    for i, m in enumerate(markets):
        require(isinstance(m, dict), f"markets.{i}", f"must be a table, was {m!r}")
        own = named[i] if isinstance(named, list) and i < len(named) else m
        mv = (own.get("venue") if isinstance(own, dict) else None) or venue
        require(
            mv in PRESETS, f"markets.{i}.venue", f"must be one of {sorted(PRESETS)}, was {mv!r}"
        )
        base = preset_defaults(mv)["market"]
        # A market's own margin table replaces the preset's whole (a different model's keys
        # would otherwise be merged in and rejected as unknown).
        mm = _deep_merge({k: v for k, v in base.items() if k != "margin"}, m)
        mm.setdefault("margin", copy.deepcopy(base["margin"]))
        mm["venue"] = mv
        out.append(mm)
    merged["markets"] = out
    return merged


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SimConfig:
    """Read a TOML config file, apply ``--set`` overrides, validate, and return it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte {e.start}: {e.reason})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    # A replay file named in a config file is relative to that file (a --set one to the
    # current folder), so scenario files work from wherever they are run.
    index = data.get("index")
    if isinstance(index, dict) and isinstance(index.get("replay_file"), str):
        replay = Path(index["replay_file"])
        if index["replay_file"] and not replay.is_absolute():
            index["replay_file"] = str((p.parent / replay).resolve())
    return resolve(data, overrides)
