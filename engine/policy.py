"""Margin policies: requirements on top of each market's margin model, and early action.

A policy sets, every block, multipliers on the base requirements of the markets' margin models
(per market for ``static``, ``vol_scaled`` and ``oi_scaled``; per account for ``predictive``),
and the ``predictive`` policy also gates new leverage, de-risks accounts and sends margin calls
(see :class:`engine.config.PolicyConfig`). Every multiplier is >= 1: no policy loosens the
venue's own requirement.

Forecasts reach the engine through the :class:`Forecaster` protocol, so the engine never
imports a model: it hands the forecaster the market table so far and the sampled-account rows it
wants scored (the same columns as ``accounts.parquet``) and receives probabilities. Whatever a
forecaster does wrong — raises, times out, returns the wrong shape, NaN or values outside [0, 1],
or reports that its feature schema does not match its model — the block runs the reactive
policy instead (base requirements, no early action), the fallback is counted by reason in the
run's policy table, and each reason is logged once.

The budget allocation (``policy.allocation = "budget"``) asks a :class:`LossForecaster` for
expected bad debt as well, and spends a fixed number of actions per forecast on the accounts
whose action avoids the most of it per unit of cost; an expected loss that is not finite or is
negative is a fallback like a bad probability.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.config import PolicyConfig
from engine.draws import Draws, Purpose
from engine.units import as_int64

if TYPE_CHECKING:
    from engine.sim import Simulation

log = logging.getLogger("predliq.engine")


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


POLICY_COLUMNS = (
    "scored",
    "fallback",
    "warned",
    "derisked_notional",
    "gated",
    "addon_accounts",
    "mm_factor",
    "im_factor",
    "mm_held",
    "mm_base",
    "call_deposits",
    "derisk_paid",
    "refused_notional",
)
"""Columns of the per-(block, market) policy table. ``mm_held`` and ``mm_base`` are the
traders' maintenance margin in quote units under the policy and under the margin model alone,
measured every ``CAPITAL_EVERY_TICKS`` blocks and carried between measurements.
``call_deposits`` is the collateral traders deposited answering margin calls (cross deposits
booked to the first market), ``derisk_paid`` what pre-emptive reductions paid the book (each
fill's distance from the index the book quotes around, and taker fees) and
``refused_notional`` the notional of risk-increasing orders that passed initial margin but were
refused by gating, all in quote units."""

_COL = {c: i for i, c in enumerate(POLICY_COLUMNS)}

CAPITAL_EVERY_TICKS = 20
"""Blocks between measurements of the margin the policy makes traders hold (a full pass over
every account, so not every block)."""


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


class Policy:
    """The requirement multipliers and early actions of one run (``sim.policy``)."""

    def __init__(self, cfg: PolicyConfig, sim: Simulation, forecaster: Forecaster | None):
        if cfg.name == "predictive" and forecaster is None:
            raise ValueError("the predictive policy needs a forecaster")
        self.budget = cfg.name == "predictive" and cfg.allocation == "budget"
        if self.budget and not hasattr(forecaster, "predict_breach_and_loss"):
            raise ValueError(
                "the budget allocation needs a forecaster of losses as well as breaches "
                f"({type(forecaster).__name__} forecasts breaches only)"
            )
        self.cfg = cfg
        self.forecaster = forecaster
        m = sim.m
        n = sim.ledger.size.shape[0]
        self.mm_factor: np.ndarray | None = None
        """Per-market multiplier of MM, float64 (m,), or None for 1 everywhere."""
        self.im_factor: np.ndarray | None = None
        self.account_factor: np.ndarray | None = None
        """Per-account multiplier of MM and IM, float64 (n,), or None for 1 everywhere."""
        self.account_factor_bound = 1.0
        """An upper bound of account_factor (the breach screen's MM-growth bound uses it)."""
        self.gated = np.zeros(m, bool)
        self.derisk_rows = np.empty(0, np.int64)
        self.derisk_order = np.empty(0, np.float64)
        self.last_warned = np.full(n, -(10**9), np.int64)
        self.last_scored = np.full(n, -(10**9), np.int64)
        self.scored_rows = np.empty(0, np.int64)
        self.horizon_ticks = max(1, round(cfg.horizon_minutes * 60_000 / sim.cfg.tick_ms))
        self.onsets = 0
        self.onsets_in_band = 0
        """Breach onsets, and those whose account was scored within the horizon before them:
        the share of breaches the risk band (and cadence) leaves within the forecasts' reach."""
        self.fallbacks: dict[Fallback, int] = {r: 0 for r in Fallback if r != Fallback.NONE}
        self.forecasts = 0  # requests made to the forecaster, fallbacks included
        self.scored_total = 0
        self.mm_held = np.zeros(m)
        self.mm_base = np.zeros(m)
        self.steps = sim.steps
        self.table = np.zeros((sim.steps + 1, len(POLICY_COLUMNS), m))
        if cfg.name == "static" and cfg.knob != 1.0:
            self.mm_factor = np.full(m, cfg.knob)
            self.im_factor = np.full(m, cfg.knob)
        if cfg.name == "vol_scaled":
            self.base_mm_rate = np.array([_base_mm_rate(sim, k) for k in range(m)])
            self.mm_factor = np.ones(m)
            self.im_factor = np.ones(m)
        if cfg.name == "oi_scaled":
            self.opening_oi = sim.oi_notional.astype(np.float64)
            self.max_im_factor = np.array([1.0 / _base_im_rate(sim, k) for k in range(m)])
            self.im_factor = np.ones(m)
        if cfg.name == "predictive":
            self.account_factor = np.ones(n)
            self.account_factor_bound = 1.0 + cfg.addon_cap

    # ---- market multipliers, every block -----------------------------------------------------

    def begin_block(self, sim: Simulation) -> bool:
        """Update the market multipliers after prices moved; return True if MM rose anywhere
        (every account must then be re-evaluated)."""
        cfg = self.cfg
        if cfg.name == "vol_scaled" and self.mm_factor is not None:
            sigma = np.sqrt(sim.ewma_var * cfg.margin_period_ticks)
            target = np.maximum(1.0, cfg.knob * sigma / self.base_mm_rate)
            # Anti-procyclicality: the multiplier may rise by max_rise_per_step per block.
            new = np.minimum(target, self.mm_factor * (1.0 + cfg.max_rise_per_step))
            # A lower MM leaves every safe move valid (more headroom); a higher one does not.
            rose = bool((new > self.mm_factor).any())
            self.mm_factor = new
            self.im_factor = new
            return rose
        if cfg.name == "oi_scaled" and self.im_factor is not None:
            growth = np.zeros(sim.m)
            np.divide(sim.oi_notional, self.opening_oi, out=growth, where=self.opening_oi > 0)
            factor = 1.0 + cfg.knob * np.maximum(growth - 1.0, 0.0)
            self.im_factor = np.minimum(factor, self.max_im_factor)
        return False

    def scale(self, req: np.ndarray, rows: np.ndarray | slice, initial: bool) -> np.ndarray:
        """Return requirements ``req`` (r, m) of accounts ``rows`` under the multipliers,
        rounded up (a multiplier of 1 leaves them untouched)."""
        market = self.im_factor if initial else self.mm_factor
        account = self.account_factor
        if market is None and account is None:
            return req
        factor = np.ones(req.shape[1]) if market is None else market
        if account is not None:
            mine = account[rows]
            if not (mine != 1.0).any():
                if market is None:
                    return req
            else:
                factor = factor[None, :] * mine[:, None]
        return as_int64(np.ceil(req * factor))

    def mm_growth_bound(self) -> np.ndarray:
        """Return per market an upper bound of the MM multiplier of any account, (m,)."""
        market = self.mm_factor if self.mm_factor is not None else 1.0
        return np.ones(len(self.gated)) * market * self.account_factor_bound

    # ---- forecasts and early action ------------------------------------------------------------

    def end_block(self, sim: Simulation) -> None:
        """Score accounts on the forecast cadence and set the early actions that follow."""
        cfg = self.cfg
        if sim.t % CAPITAL_EVERY_TICKS == 0:
            self._measure_margin(sim)
        if cfg.name != "predictive" or sim.t % cfg.cadence_ticks:
            self._record(sim, None, 0, 0)
            return
        rows = self._triage(sim)
        accounts = sim.account_rows(rows)
        if not cfg.act_on_breached:
            # An account already in breach of the margin model's own requirement is the
            # reactive path's (keepers, liquidation): a forecast of it would only dress a
            # reaction up as anticipation, so it is neither scored nor acted on.
            keep = ~base_breach(accounts)
            rows = rows[keep]
            accounts = {k: v[keep] for k, v in accounts.items()}
        self.last_scored[rows] = sim.t
        self.scored_rows = rows
        reason, p, loss = self._forecast(sim, rows, accounts)
        warned = 0
        previous = self.account_factor
        assert previous is not None
        factor = np.ones_like(previous)
        self.gated[:] = False
        self.derisk_rows = np.empty(0, np.int64)
        if self.budget:
            if reason == Fallback.NONE and rows.size:
                warned = self._spend_budget(sim, rows, accounts, loss)
        elif reason == Fallback.NONE and rows.size:
            score = cfg.knob * p
            factor[rows] = 1.0 + np.minimum(score, cfg.addon_cap)
            self._gate(sim, rows, score)
            risky = score >= cfg.derisk_score
            order = np.argsort(-score[risky], kind="stable")
            self.derisk_rows = rows[risky][order]
            warned = self._warn(sim, rows[score >= cfg.warn_score])
        changed = np.flatnonzero(factor != previous)
        self.account_factor = factor
        sim.requirements_changed(changed)
        self._record(sim, reason, rows.size, warned)

    def _measure_margin(self, sim: Simulation) -> None:
        """Measure the traders' maintenance margin per market, with and without the policy."""
        traders = np.flatnonzero(~sim.ledger.is_maker)
        sizes = sim.ledger.size[traders]
        base = np.empty(sizes.shape, np.int64)
        notional = as_int64(np.rint(np.abs(sizes * sim.mark_q)))
        for k, r in enumerate(sim.requirements):
            base[:, k] = r.maintenance(notional[:, k], sizes[:, k], sim.margin_context(k))
        held = self.scale(base, traders, initial=False)
        self.mm_base = base.sum(axis=0) / 1e6
        self.mm_held = held.sum(axis=0) / 1e6

    def observe_onsets(self, t: int, accounts: np.ndarray) -> None:
        """Count breach onsets at block t and those the band had scored within the horizon."""
        if self.cfg.name != "predictive":
            return
        self.onsets += int(accounts.size)
        self.onsets_in_band += int((self.last_scored[accounts] >= t - self.horizon_ticks).sum())

    def _triage(self, sim: Simulation) -> np.ndarray:
        """Return the candidates to score: traders with an open position whose margin a move
        of risk_band_sigmas x sigma x sqrt(H) could use up (by the breach screen's
        conservative safe move). Accounts already in breach are dropped by the caller."""
        n = sim.ledger.size.shape[0]
        traders = np.arange(1, n)
        traders = traders[(sim.ledger.size[1:] != 0).any(axis=1)]
        band = self.cfg.risk_band_sigmas
        if band == 0 or sim.always_evaluate or not sim.screen:
            return traders
        horizon_ticks = self.cfg.horizon_minutes * 60_000 / sim.cfg.tick_ms
        move = band * float(np.sqrt(sim.ewma_var.max() * horizon_ticks))
        safe = sim.safe_move[traders] - np.float32(sim.current_drift())
        return traders[safe <= move]

    def _spend_budget(
        self, sim: Simulation, rows: np.ndarray, accounts: Mapping[str, np.ndarray], loss
    ) -> int:
        """Give this forecast's knob actions to the accounts whose best action avoids the most
        expected loss per unit of cost; return the margin calls sent."""
        cfg = self.cfg
        budget = int(cfg.knob)
        if budget == 0:
            return 0
        # A margin call: answered with the traders' top-up probability q, it avoids the
        # expected loss and costs the deposit back to the top-up target: per unit, loss / deposit
        # (q cancels). Accounts with a top-up pending or within the cooldown cannot be called.
        traders = sim.cfg.traders
        deposit = np.maximum(
            traders.topup_target_ratio * np.asarray(accounts["maintenance_margin"])
            - np.asarray(accounts["equity"]),
            0.0,
        )
        callable_ = (
            (traders.topup_probability > 0)
            & (sim.t - self.last_warned[rows] >= cfg.warn_cooldown_ticks)
            & ~sim.topup_pending[rows]
            & (deposit > 0)
        )
        call_value = np.zeros(rows.size)
        np.divide(loss, deposit, out=call_value, where=callable_)
        # A de-risk of fraction f: avoids about f of the expected loss and pays, per market,
        # the half spread, the square-root impact of f x notional and the taker fee.
        f = cfg.derisk_fraction
        notional = np.abs(sim.ledger.size[rows] * sim.mark_q) / 1e6  # (r, m) quote units
        side = np.maximum(sim.book.depth.mean(axis=0), 1.0)  # per 1% per side, (m,)
        fee = np.array([mk.taker_fee for mk in sim.cfg.markets])
        slip = sim.book.half_spread + (2.0 / 3.0) * 0.01 * np.sqrt(f * notional / side) + fee
        cost = (f * notional * slip).sum(axis=1)
        derisk_value = np.zeros(rows.size)
        np.divide(f * loss, cost, out=derisk_value, where=cost > 0)
        if cfg.budget_actions == "call":
            derisk_value[:] = 0.0
        elif cfg.budget_actions == "derisk":
            call_value[:] = 0.0
        value = np.maximum(call_value, derisk_value)
        ranked = np.argsort(-value, kind="stable")
        chosen = ranked[: min(budget, int((value > 0).sum()))]
        call = chosen[call_value[chosen] >= derisk_value[chosen]]
        derisk = chosen[call_value[chosen] < derisk_value[chosen]]
        self.derisk_rows = rows[derisk]  # in the order ranked: most value first
        due = rows[call]
        self.last_warned[due] = sim.t
        sim.margin_call(due)
        return int(due.size)

    def _forecast(
        self, sim: Simulation, rows: np.ndarray, accounts: Mapping[str, np.ndarray]
    ) -> tuple[Fallback, np.ndarray, np.ndarray]:
        """Ask the forecaster about ``rows`` (whose sampled columns are ``accounts``); return
        (fallback reason, probabilities, expected losses — empty unless the budget allocation
        asked for them)."""
        assert self.forecaster is not None
        self.forecasts += 1
        none = np.empty(0)
        request = ForecastRequest(
            tick=sim.t,
            tick_ms=sim.cfg.tick_ms,
            markets=tuple(mk.name for mk in sim.cfg.markets),
            market_history=sim.market_history(),
            accounts=accounts,
        )
        started = time.perf_counter()
        loss: object = none
        try:
            if self.budget:
                p, loss = self.forecaster.predict_breach_and_loss(request)  # type: ignore[attr-defined]
            else:
                p = self.forecaster.predict_breach(request)
        except ForecasterSchemaError as e:
            return self._fallback(sim, Fallback.SCHEMA, e), none, none
        except TimeoutError as e:
            return self._fallback(sim, Fallback.TIMEOUT, e), none, none
        except Exception as e:  # any failure of a forecaster is a fallback, never a crash
            return self._fallback(sim, Fallback.EXCEPTION, e), none, none
        limit = self.cfg.forecast_timeout_s
        if limit > 0 and time.perf_counter() - started > limit:
            return self._fallback(sim, Fallback.TIMEOUT, f"answer took over {limit} s"), none, none
        reason = validate_probabilities(p, rows.size)
        if reason != Fallback.NONE:
            return self._fallback(sim, reason, "unusable probabilities"), none, none
        if self.budget:
            reason = validate_losses(loss, rows.size)
            if reason != Fallback.NONE:
                return self._fallback(sim, reason, "unusable expected losses"), none, none
            loss = np.asarray(loss, np.float64)
        return Fallback.NONE, np.asarray(p, np.float64), loss  # type: ignore[return-value]

    def _fallback(self, sim: Simulation, reason: Fallback, detail: object) -> Fallback:
        if self.fallbacks[reason] == 0:
            log.warning(
                "forecaster failed at block %d (%s: %s); running the reactive policy for "
                "every block where this happens",
                sim.t,
                reason.name.lower(),
                detail,
            )
        self.fallbacks[reason] += 1
        return reason

    def _gate(self, sim: Simulation, rows: np.ndarray, score: np.ndarray) -> None:
        """Refuse new leverage in markets where forecast breach notional outgrows the book."""
        notional = np.abs(sim.ledger.size[rows] * sim.mark_q) / 1e6  # quote units, (r, m)
        forecast = np.minimum(score, 1.0) @ notional
        depth = sim.book.depth.sum(axis=0) / 2.0  # per 1%, mean of the two sides
        self.gated = forecast > self.cfg.gate_depth_multiple * depth

    def _warn(self, sim: Simulation, rows: np.ndarray) -> int:
        """Send margin calls (not to accounts with a top-up already pending); return how many
        went out."""
        due = rows[sim.t - self.last_warned[rows] >= self.cfg.warn_cooldown_ticks]
        due = due[~sim.topup_pending[due]]
        self.last_warned[due] = sim.t
        sim.margin_call(due)
        return int(due.size)

    def derisk_plan(self, sim: Simulation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (accounts, size changes) of this block's pre-emptive reductions in market k:
        derisk_fraction of each flagged position, riskiest first, within the depth budget."""
        rows = self.derisk_rows
        if rows.size == 0:
            return rows, rows
        size = sim.ledger.size[rows, k]
        keep = size != 0
        if not self.cfg.act_on_breached:
            keep &= ~sim.in_breach[rows]
        rows, size = rows[keep], size[keep]
        dsize = -np.sign(size) * as_int64(np.ceil(np.abs(size) * self.cfg.derisk_fraction))
        notional = np.abs(dsize * sim.mark_q[k]) / 1e6
        budget = self.cfg.derisk_depth_share * float(sim.book.depth[:, k].mean())
        fits = np.cumsum(notional) <= budget
        return rows[fits], dsize[fits]

    # ---- outputs -------------------------------------------------------------------------------

    def _record(self, sim: Simulation, reason: Fallback | None, scored: int, warned: int) -> None:
        row = self.table[sim.t]
        if reason is not None:
            row[0] = scored
            row[1] = int(reason)
            row[2] = warned
            self.scored_total += scored
        af = self.account_factor
        row[4] = self.gated
        row[5] = 0 if af is None else int((af > 1.0).sum())
        row[6] = 1.0 if self.mm_factor is None else self.mm_factor
        row[7] = 1.0 if self.im_factor is None else self.im_factor
        row[8] = self.mm_held
        row[9] = self.mm_base

    def add_derisked(self, t: int, k: int, notional: float, paid: float) -> None:
        self.table[t, _COL["derisked_notional"], k] += notional
        self.table[t, _COL["derisk_paid"], k] += paid

    def add_call_deposit(self, t: int, k: int, amount_q: float) -> None:
        """Book ``amount_q`` quote quantums deposited at block t answering margin calls."""
        self.table[t, _COL["call_deposits"], k] += amount_q / 1e6

    def add_refused(self, t: int, k: int, notional: float) -> None:
        self.table[t, _COL["refused_notional"], k] += notional

    def summary(self) -> dict[str, float | int]:
        """Return the policy's totals over the run."""
        t = self.table
        return {
            "policy_scored_rows": int(self.scored_total),
            "policy_forecasts": self.forecasts,
            "policy_fallbacks": int(sum(self.fallbacks.values())),
            **{f"policy_fallbacks_{r.name.lower()}": int(c) for r, c in self.fallbacks.items()},
            "policy_warnings": int(t[:, 2, 0].sum()),
            "policy_derisked_notional": float(t[:, 3, :].sum()),
            "policy_gated_blocks": int(t[:, 4, :].sum()),
            "policy_call_deposits": float(t[:, _COL["call_deposits"], :].sum()),
            "policy_derisk_paid": float(t[:, _COL["derisk_paid"], :].sum()),
            "policy_refused_notional": float(t[:, _COL["refused_notional"], :].sum()),
            "policy_breach_onsets": self.onsets,
            "policy_onsets_scored_within_horizon": self.onsets_in_band,
        }


def base_breach(accounts: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return bool (rows,): the account is in breach of its margin model's own maintenance
    requirement (equity below a positive MM), from sampled-account columns — the breach a
    reactive venue would liquidate, whatever add-on a policy holds on top. (An isolated
    account's pools are taken together here; one pool in breach while the others carry it is
    not excluded.)"""
    mm = np.asarray(accounts["maintenance_margin"])
    return (mm > 0) & (np.asarray(accounts["equity"]) < mm)


def _base_mm_rate(sim: Simulation, k: int) -> float:
    """Return market k's MM rate of a small ($1,000) position under its margin model."""
    notional, size = _probe(sim, k)
    mm = sim.requirements[k].maintenance(notional, size, sim.margin_context(k))
    return max(float(mm[0]) / float(notional[0]), 1e-9)


def _base_im_rate(sim: Simulation, k: int) -> float:
    notional, size = _probe(sim, k)
    im = sim.requirements[k].requirements(notional, size, sim.margin_context(k))[0]
    return min(max(float(im[0]) / float(notional[0]), 1e-9), 1.0)


def _probe(sim: Simulation, k: int) -> tuple[np.ndarray, np.ndarray]:
    size = max(1, math.floor(1e9 / float(sim.mark_q[k])))  # about $1,000 (1e9 quote quantums)
    notional = np.array([round(size * float(sim.mark_q[k]))], np.int64)
    return notional, np.array([size], np.int64)


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
    sim_cfg, horizon_minutes: float, index_path: np.ndarray | None = None, foresee: str = "loss"
):
    """Return an :class:`OracleForecaster` from a reactive (static, knob 1) run of ``sim_cfg``
    that foresees each account's bad debt (``"loss"``) or its breach onset (``"breach"``)."""
    import dataclasses

    from engine.events import EventKind
    from engine.sim import Simulation

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
