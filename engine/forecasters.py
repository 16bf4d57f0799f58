"""Forecasters that ship with the engine: the evaluation's control arms and its upper bound.

None of them is a model: :class:`OracleForecaster` foresees the reactive run's own future
(perfect foresight), :class:`BreachedOnlyForecaster` flags accounts already in breach (no
forecast at all) and :class:`RandomRankingForecaster` shuffles another forecaster's answers (the
same budget, no ranking). Each speaks the :class:`engine.forecast.Forecaster` protocol.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.config import PolicyConfig, SimConfig
from engine.draws import Draws, Purpose
from engine.events import EventKind
from engine.forecast import (
    Fallback,
    Forecaster,
    ForecastRequest,
    validate_losses,
    validate_probabilities,
)
from engine.policy import base_breach
from engine.sim import Simulation


class OracleForecaster:
    """Perfect foresight, for evaluation only: p = 1 for accounts with a foreseen event within
    the horizon — by default the bad debt their liquidation leaves in the reactive run of the
    same config and seed (``foresee="loss"``), or their breach onset (``"breach"``) — else 0:
    the upper bound of what a forecast could give the predictive policy."""

    def __init__(
        self,
        event_ticks: np.ndarray,
        event_accounts: np.ndarray,
        horizon_ticks: int,
        event_amounts: np.ndarray | None = None,
    ):
        order = np.lexsort((event_ticks, event_accounts))
        self.accounts = event_accounts[order]
        self.ticks = event_ticks[order]
        self.horizon_ticks = horizon_ticks
        amounts = np.ones(order.size) if event_amounts is None else event_amounts[order]
        self.total = np.concatenate([[0.0], np.cumsum(amounts)])
        """Running sum of the events' amounts in (account, tick) order."""

    def _window(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return, per requested account, the positions in the sorted events of its first event
        after t and of its first after t + H."""
        acct = np.asarray(request.accounts["account"], np.int64)
        t = request.tick
        span = max(int(self.ticks.max(initial=0)), t) + self.horizon_ticks + 2
        keys = self.accounts * span + self.ticks
        lo = np.searchsorted(keys, acct * span + t, side="right")
        hi = np.searchsorted(keys, acct * span + t + self.horizon_ticks, side="right")
        return lo, hi

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        lo, hi = self._window(request)
        return (hi > lo).astype(np.float64)

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return (1 where an event is foreseen within H, the foreseen amounts within H)."""
        lo, hi = self._window(request)
        return (hi > lo).astype(np.float64), self.total[hi] - self.total[lo]


class BreachedOnlyForecaster:
    """The ``breached_only`` control arm: p = 1 for accounts already in breach, else 0 — no
    forecast at all. Run with ``act_on_breached``, it measures what the predictive mechanics
    buy as reactive extras (margin calls, add-ons and de-risking of breached accounts)."""

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        return base_breach(request.accounts).astype(np.float64)

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return (1 for breached accounts, their shortfall below maintenance margin)."""
        accounts = request.accounts
        p = self.predict_breach(request)
        shortfall = np.asarray(accounts["maintenance_margin"]) - np.asarray(accounts["equity"])
        return p, p * np.maximum(shortfall, 0.0)


class RandomRankingForecaster:
    """The ``random`` control arm: each forecast of ``inner`` shuffled among the accounts it
    scored, so that the same number of accounts get each action (the same budget) but the
    forecast no longer says which. Shuffles are keyed by block (paired across runs)."""

    def __init__(self, inner: Forecaster, seed: int) -> None:
        self.inner = inner
        self.draws = Draws(np.random.SeedSequence([seed, 7]), 1)

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        p = self.inner.predict_breach(request)
        if validate_probabilities(p, len(request.accounts["account"])) != Fallback.NONE:
            return p  # let the policy see the inner forecaster's failure as it is
        return self.draws.block(Purpose.RANDOM_RANKING, request.tick).permutation(p)

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return the inner forecast's (p, loss) pairs shuffled together among the accounts."""
        p, loss = self.inner.predict_breach_and_loss(request)  # type: ignore[attr-defined]
        rows = len(request.accounts["account"])
        if validate_probabilities(p, rows) != Fallback.NONE:
            return p, loss
        if validate_losses(loss, rows) != Fallback.NONE:
            return p, loss
        order = self.draws.block(Purpose.RANDOM_RANKING, request.tick).permutation(rows)
        return p[order], loss[order]


def oracle_forecaster(
    sim_cfg: SimConfig,
    horizon_minutes: float,
    index_path: np.ndarray | None = None,
    foresee: str = "loss",
) -> OracleForecaster:
    """Return an :class:`OracleForecaster` from a reactive (static, knob 1) run of ``sim_cfg``
    that foresees each account's bad debt (``"loss"``) or its breach onset (``"breach"``)."""
    reactive = dataclasses.replace(
        sim_cfg,
        policy=PolicyConfig(),
        history=dataclasses.replace(sim_cfg.history, sample_every_ticks=0),
    )
    sim = Simulation(reactive, index_path=index_path)
    sim.run()
    amounts = None
    if foresee == "breach":
        ticks, accounts = sim.onsets()
    else:
        events = sim.events.to_frame()
        loss = events[(events["kind"] == int(EventKind.BAD_DEBT)) & (events["account"] > 0)]
        ticks = loss["tick"].to_numpy(np.int64)
        accounts = loss["account"].to_numpy(np.int64)
        amounts = -loss["amount"].to_numpy(np.float64) / 1e6  # bad debt, quote units
    horizon_ticks = max(1, round(horizon_minutes * 60_000 / sim_cfg.tick_ms))
    return OracleForecaster(ticks, accounts, horizon_ticks, amounts)
