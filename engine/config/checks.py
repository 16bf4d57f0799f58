"""What every config section shares: the error, the engine's bounds, and declared field ranges.

A field's range is declared once, in its annotation — ``tick_size: Positive = 0.01`` or
``penalty: Annotated[float, Range(ge=0, lt=1)] = 0.01`` — and :func:`check_ranges` (called by
each section's ``__post_init__``) refuses a value outside it with the message every config
error has: the key, what it must be, and what it was
(``markets.0.tick_size must be positive, was 0.0``). Checks that tie fields together stay
written out in the section's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from engine.errors import PredliqError


class ConfigError(PredliqError, ValueError):
    """An invalid config: the message names the key and the offending value."""


# Bounds that keep every ledger amount inside int64 quote quantums (1e-6 of the quote): the
# ledger holds 2**63 / 1e6 = 9.2e12 quote units, so a single amount may be at most 1e12 and the
# money a run starts with (maker collateral and insurance funds) at most 1e12 in all, leaving a
# 9x margin for PnL, fees and sums. Prices are bounded so that a position's notional is too.
MAX_USD = 1e12
"""The largest amount in quote units any ``*_usd`` key (and their total) may hold."""
MAX_PRICE = 1e9
"""The largest price (initial price, replay bar) in quote units."""
MAX_ANNUAL = 1e3
"""The largest annualized rate (``*_annual``: drift, volatility), as a fraction (100,000%)."""
MAX_INT = 2**53
"""The largest integer a config may hold (exact in JSON and float64)."""
MAX_ACCOUNTS = 10_000_000
MAX_STEPS = 10_000_000


@dataclass(frozen=True, slots=True)
class Range:
    """The values a number field may take: above ``gt`` or at least ``ge``, below ``lt`` or at
    most ``le`` (each optional); ``note`` follows the range in the message (``(0 = no cap)``)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    note: str = ""

    def holds(self, x: float) -> bool:
        return (
            (self.gt is None or x > self.gt)
            and (self.ge is None or x >= self.ge)
            and (self.lt is None or x < self.lt)
            and (self.le is None or x <= self.le)
        )

    def describe(self) -> str:
        """Return what a value must be, as the messages say it: ``positive``, ``>= 1``,
        ``in [0, 1)``."""
        low = self.gt if self.gt is not None else self.ge
        high = self.lt if self.lt is not None else self.le
        if low is not None and high is not None:
            opening = "(" if self.gt is not None else "["
            closing = ")" if self.lt is not None else "]"
            text = f"in {opening}{low:g}, {high:g}{closing}"
        elif self.gt == 0:
            text = "positive"
        elif self.gt is not None:
            text = f"above {self.gt:g}"
        elif self.ge is not None:
            text = f">= {self.ge:g}"
        elif self.lt is not None:
            text = f"below {self.lt:g}"
        elif self.le is not None:
            text = f"<= {self.le:g}"
        else:
            text = "a number"
        return f"{text} {self.note}" if self.note else text


Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Share = Annotated[float, Range(ge=0, le=1)]
"""A fraction from 0 to 1, both included."""
PositiveShare = Annotated[float, Range(gt=0, le=1)]
"""A fraction above 0, at most 1."""
Count = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]

_RANGES: dict[type, tuple[tuple[str, Range], ...]] = {}


def declared_ranges(cls: type) -> tuple[tuple[str, Range], ...]:
    """Return (field, range) of every field of ``cls`` whose annotation declares a Range, in
    field order (read once per class)."""
    found = _RANGES.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = tuple(
            (f.name, meta)
            for f in dataclasses.fields(cls)
            for meta in getattr(hints[f.name], "__metadata__", ())
            if isinstance(meta, Range)
        )
        _RANGES[cls] = found
    return found


def check_ranges(obj: Any) -> None:
    """Refuse the first field of ``obj`` (a config dataclass) outside its declared Range."""
    for name, allowed in declared_ranges(type(obj)):
        value = getattr(obj, name)
        require(allowed.holds(value), name, f"must be {allowed.describe()}, was {value}")


def require(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError("<key> <message>") unless ``cond``."""
    if not cond:
        raise ConfigError(f"{key} {message}")


def sci(x: float) -> str:
    """1e12, 2.5e13, 300: numbers in messages as a person writes them."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.6g}")


def bound_number(key: str, x: float) -> None:
    """Refuse a number outside what the engine can hold (see MAX_USD, MAX_PRICE, MAX_ANNUAL)."""
    leaf = key.rsplit(".", 1)[-1]
    # The book's depth is a float of the impact model, never a ledger amount: a test's "no
    # impact" book is 1e20 deep. It must only be finite.
    if leaf.endswith("_usd") and leaf != "depth_usd":
        limit, what = MAX_USD, "the int64 ledger holds 9.2e12 quote units"
    elif leaf == "initial_price":
        limit, what = MAX_PRICE, "prices are bounded so notionals fit the ledger"
    elif leaf.endswith("_annual"):
        limit, what = MAX_ANNUAL, "an annual rate as a fraction"
    else:
        return
    require(abs(x) <= limit, key, f"must be at most {sci(limit)} ({what}), was {sci(x)}")


def physical_memory() -> int | None:
    """Return this machine's memory in bytes, or None where it cannot be read."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
