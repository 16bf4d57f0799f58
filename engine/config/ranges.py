"""Field ranges declared once, in the annotation, and the decorator that makes a config section.

A section is a frozen, slotted dataclass made with :func:`section`; a field's range is part of
its type — ``tick_size: Positive = 0.01`` or ``penalty: Annotated[float, Range(ge=0, lt=1)]`` —
and is checked when the section is built (directly, by ``dataclasses.replace`` or from TOML),
before the section's own ``__post_init__``, which keeps only the checks that tie fields together.
A value outside its range is refused with the key, the range and the value
(``tick_size must be positive, was 0.0``; the loader puts the section's key in front).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from engine.config.checks import require

T = TypeVar("T")


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


@typing.dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def section(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, slotted config dataclass whose declared ranges are checked on
    construction, before its own ``__post_init__`` (if it has one)."""
    own: Callable[[Any], None] | None = cls.__dict__.get("__post_init__")

    def __post_init__(self: Any) -> None:
        check_ranges(self)
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    return dataclass(frozen=True, slots=True)(cls)
