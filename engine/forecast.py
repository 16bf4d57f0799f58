"""Where the engine meets a forecaster: what it asks, what it accepts, and why it falls back.

Forecasts reach the engine through the :class:`Forecaster` protocol, so the engine never
imports a model: it hands the forecaster the market table so far and the sampled-account rows it
wants scored (the same columns as ``accounts.parquet``) and receives probabilities (and, from a
:class:`LossForecaster`, expected bad debt). An answer that is not usable is a
:class:`Fallback` reason: the policy (:mod:`engine.policy`) then runs the reactive policy for
that block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class ForecastRequest:
    """What a forecaster sees at the end of block ``tick``: nothing from later blocks."""

    tick: int
    tick_ms: int
    markets: tuple[str, ...]
    market_history: Mapping[str, np.ndarray]
    """Market-table columns, each (tick + 1, markets): every block up to and including tick."""
    accounts: Mapping[str, np.ndarray]
    """Sampled-account columns (as in ``accounts.parquet``) of the accounts to score, (rows,)."""


class Forecaster(Protocol):
    """Anything that turns a request into breach probabilities, one per account row."""

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        """Return float (rows,): P(the account breaches MM within the horizon)."""
        ...


class LossForecaster(Forecaster, Protocol):
    """A forecaster that also forecasts what a breach would cost (the budget allocation)."""

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return (P(breach within H), expected bad debt within H in quote units), each
        float (rows,)."""
        ...


class ForecasterSchemaError(ValueError):
    """Raised by a forecaster whose features do not match its model's feature schema."""


class Fallback(IntEnum):
    """Why a block ran the reactive policy instead of acting on forecasts."""

    NONE = 0
    EXCEPTION = 1
    TIMEOUT = 2
    BAD_SHAPE = 3
    NOT_FINITE = 4
    OUT_OF_RANGE = 5
    SCHEMA = 6


def validate_losses(loss: object, rows: int) -> Fallback:
    """Return why ``loss`` is not a usable expected-loss answer (NONE when it is)."""
    if not isinstance(loss, np.ndarray) or loss.shape != (rows,) or loss.dtype.kind not in "fiu":
        return Fallback.BAD_SHAPE
    if not np.isfinite(loss).all():
        return Fallback.NOT_FINITE
    if rows and loss.min() < 0.0:
        return Fallback.OUT_OF_RANGE
    return Fallback.NONE


def validate_probabilities(p: object, rows: int) -> Fallback:
    """Return why ``p`` is not a usable answer for ``rows`` accounts (NONE when it is)."""
    if not isinstance(p, np.ndarray) or p.shape != (rows,) or p.dtype.kind not in "fiu":
        return Fallback.BAD_SHAPE
    if not np.isfinite(p).all():
        return Fallback.NOT_FINITE
    if rows and (p.min() < 0.0 or p.max() > 1.0):
        return Fallback.OUT_OF_RANGE
    return Fallback.NONE
