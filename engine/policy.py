"""Margin policies: requirements on top of each market's margin model, and early action.

A policy sets, every block, multipliers on the base requirements of the markets' margin models
(per market for ``static``, ``vol_scaled`` and ``oi_scaled``; per account for ``predictive``),
and the ``predictive`` policy also gates new leverage, de-risks accounts and sends margin calls
(see :class:`engine.config.PolicyConfig`). Every multiplier is >= 1: no policy loosens the
venue's own requirement.

Forecasts reach the policy through the protocol of :mod:`engine.forecast`. Whatever a
forecaster does wrong — raises, times out, returns the wrong shape, NaN or values outside [0, 1],
or reports that its feature schema does not match its model — the block runs the reactive
policy instead (base requirements, no early action), the fallback is counted by reason in the
run's policy table, and each reason is logged once.

The budget allocation (``policy.allocation = "budget"``) asks a
:class:`~engine.forecast.LossForecaster` for expected bad debt as well, and spends a fixed number
of actions per forecast on the accounts whose action avoids the most of it per unit of cost; an
expected loss that is not finite or is negative is a fallback like a bad probability.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import numpy as np

from engine.book import Book
from engine.config import ConfigError, PolicyConfig, TradersConfig
from engine.deposits import TopUps
from engine.draws import Purpose
from engine.forecast import (
    Fallback,
    Forecaster,
    ForecasterSchemaError,
    ForecastRequest,
    validate_losses,
    validate_probabilities,
)
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.recorder import Recorder
from engine.rows import row_any, row_sum
from engine.screen import BreachScreen
from engine.state import Ledger
from engine.units import as_int64
from engine.venue import VenueModel

log = logging.getLogger("predliq.engine")


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


class Policy:
    """The requirement multipliers and early actions of one run.

    It writes the requirement multipliers (``requirement_scale``), the breach screen's
    invalidations (accounts whose requirements it changed), margin calls (as top-ups) and its
    own table; it reads the market, the ledger, the book and the recorder's account rows.
    """

    def __init__(
        self,
        cfg: PolicyConfig,
        forecaster: Forecaster | None,
        venue: VenueModel,
        market: MarketState,
        ledger: Ledger,
        book: Book,
        requirement_scale: RequirementScale,
        screen: BreachScreen,
        recorder: Recorder,
        topups: TopUps,
        traders: TradersConfig,
        steps: int,
    ) -> None:
        if cfg.name == "predictive" and forecaster is None:
            raise ConfigError("the predictive policy needs a forecaster")
        self.budget = cfg.name == "predictive" and cfg.allocation == "budget"
        if self.budget and not hasattr(forecaster, "predict_breach_and_loss"):
            raise ConfigError(
                "the budget allocation needs a forecaster of losses as well as breaches "
                f"({type(forecaster).__name__} forecasts breaches only)"
            )
        self.cfg = cfg
        self.forecaster = forecaster
        self.venue = venue
        self.market = market
        self.ledger = ledger
        self.book = book
        self.screen = screen
        self.recorder = recorder
        self.topups = topups
        self.traders = traders
        m = venue.m
        n = ledger.size.shape[0]
        self.requirement_scale = requirement_scale
        rs = requirement_scale
        self.gated = np.zeros(m, bool)
        self.derisk_rows = np.empty(0, np.int64)
        self.derisk_order = np.empty(0, np.float64)
        self.last_warned = np.full(n, -(10**9), np.int64)
        self.last_scored = np.full(n, -(10**9), np.int64)
        self.scored_rows = np.empty(0, np.int64)
        self.horizon_ticks = max(1, round(cfg.horizon_minutes * 60_000 / venue.tick_ms))
        self.onsets = 0
        self.onsets_in_band = 0
        """Breach onsets, and those whose account was scored within the horizon before them:
        the share of breaches the risk band (and cadence) leaves within the forecasts' reach."""
        self.fallbacks: dict[Fallback, int] = {r: 0 for r in Fallback if r != Fallback.NONE}
        self.forecasts = 0  # requests made to the forecaster, fallbacks included
        self.scored_total = 0
        self.mm_held = np.zeros(m)
        self.mm_base = np.zeros(m)
        self.steps = steps
        self.table = np.zeros((steps + 1, len(POLICY_COLUMNS), m))
        if cfg.name == "static" and cfg.knob != 1.0:
            rs.mm_factor = np.full(m, cfg.knob)
            rs.im_factor = np.full(m, cfg.knob)
        if cfg.name == "vol_scaled":
            self.base_mm_rate = np.array([_base_mm_rate(venue, market, k) for k in range(m)])
            rs.mm_factor = np.ones(m)
            rs.im_factor = np.ones(m)
        if cfg.name == "oi_scaled":
            self.opening_oi = market.oi_notional.astype(np.float64)
            self.max_im_factor = np.array([1.0 / _base_im_rate(venue, market, k) for k in range(m)])
            rs.im_factor = np.ones(m)
        if cfg.name == "predictive":
            rs.account_factor = np.ones(n)
            rs.account_factor_bound = 1.0 + cfg.addon_cap

    @property
    def account_factor(self) -> np.ndarray | None:
        """Per-account multiplier of MM and IM (predictive policy), or None."""
        return self.requirement_scale.account_factor

    # ---- market multipliers, every block -----------------------------------------------------

    def begin_block(self) -> bool:
        """Update the market multipliers after prices moved; return True if MM rose anywhere
        (every account must then be re-evaluated)."""
        cfg = self.cfg
        rs = self.requirement_scale
        market = self.market
        if cfg.name == "vol_scaled" and rs.mm_factor is not None:
            sigma = np.sqrt(market.ewma_var * cfg.margin_period_ticks)
            target = np.maximum(1.0, cfg.knob * sigma / self.base_mm_rate)
            # Anti-procyclicality: the multiplier may rise by max_rise_per_step per block.
            new = np.minimum(target, rs.mm_factor * (1.0 + cfg.max_rise_per_step))
            # A lower MM leaves every safe move valid (more headroom); a higher one does not.
            rose = bool((new > rs.mm_factor).any())
            rs.mm_factor = new
            rs.im_factor = new
            return rose
        if cfg.name == "oi_scaled" and rs.im_factor is not None:
            growth = np.zeros(self.venue.m)
            np.divide(market.oi_notional, self.opening_oi, out=growth, where=self.opening_oi > 0)
            factor = 1.0 + cfg.knob * np.maximum(growth - 1.0, 0.0)
            rs.im_factor = np.minimum(factor, self.max_im_factor)
        return False

    # ---- forecasts and early action ------------------------------------------------------------

    def end_block(self) -> None:
        """Score accounts on the forecast cadence and set the early actions that follow."""
        cfg = self.cfg
        if self.market.t % CAPITAL_EVERY_TICKS == 0:
            self._measure_margin()
        if cfg.name != "predictive" or self.market.t % cfg.cadence_ticks:
            self._record(None, 0, 0)
            return
        rows = self._triage()
        accounts = self.recorder.account_rows(rows)
        if not cfg.act_on_breached:
            # An account already in breach of the margin model's own requirement is the
            # reactive path's (keepers, liquidation): a forecast of it would only dress a
            # reaction up as anticipation, so it is neither scored nor acted on.
            keep = ~base_breach(accounts)
            rows = rows[keep]
            accounts = {k: v[keep] for k, v in accounts.items()}
        self.last_scored[rows] = self.market.t
        self.scored_rows = rows
        reason, p, loss = self._forecast(rows, accounts)
        warned = 0
        previous = self.account_factor
        assert previous is not None
        factor = np.ones_like(previous)
        self.gated[:] = False
        self.derisk_rows = np.empty(0, np.int64)
        if self.budget:
            if reason == Fallback.NONE and rows.size:
                warned = self._spend_budget(rows, accounts, loss)
        elif reason == Fallback.NONE and rows.size:
            score = cfg.knob * p
            factor[rows] = 1.0 + np.minimum(score, cfg.addon_cap)
            self._gate(rows, score)
            risky = score >= cfg.derisk_score
            order = np.argsort(-score[risky], kind="stable")
            self.derisk_rows = rows[risky][order]
            warned = self._warn(rows[score >= cfg.warn_score])
        changed = np.flatnonzero(factor != previous)
        self.requirement_scale.account_factor = factor
        self.screen.requirements_changed(changed)
        self._record(reason, rows.size, warned)

    def _measure_margin(self) -> None:
        """Measure the traders' maintenance margin per market, with and without the policy."""
        traders = np.flatnonzero(~self.ledger.is_maker)
        sizes = self.ledger.size[traders]
        base = np.empty(sizes.shape, np.int64)
        notional = as_int64(np.rint(np.abs(sizes * self.market.mark_q)))
        for k, r in enumerate(self.venue.requirements):
            base[:, k] = r.maintenance(notional[:, k], sizes[:, k], self.market.margin_context(k))
        held = self.requirement_scale.scale(base, traders, initial=False)
        self.mm_base = base.sum(axis=0) / 1e6
        self.mm_held = held.sum(axis=0) / 1e6

    def observe_onsets(self, t: int, accounts: np.ndarray) -> None:
        """Count breach onsets at block t and those the band had scored within the horizon."""
        if self.cfg.name != "predictive":
            return
        self.onsets += int(accounts.size)
        self.onsets_in_band += int((self.last_scored[accounts] >= t - self.horizon_ticks).sum())

    def _triage(self) -> np.ndarray:
        """Return the candidates to score: traders with an open position whose margin a move
        of risk_band_sigmas x sigma x sqrt(H) could use up (by the breach screen's
        conservative safe move). Accounts already in breach are dropped by the caller."""
        n = self.ledger.size.shape[0]
        traders = np.arange(1, n)
        traders = traders[row_any(self.ledger.size[1:] != 0)]
        band = self.cfg.risk_band_sigmas
        if band == 0 or not self.screen.active:
            return traders
        horizon_ticks = self.cfg.horizon_minutes * 60_000 / self.venue.tick_ms
        move = band * float(np.sqrt(self.market.ewma_var.max() * horizon_ticks))
        safe = self.screen.safe_move[traders] - np.float32(self.screen.drift(self.market))
        return traders[safe <= move]

    def _spend_budget(
        self, rows: np.ndarray, accounts: Mapping[str, np.ndarray], loss: np.ndarray
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
        traders = self.traders
        deposit = np.maximum(
            traders.topup_target_ratio * np.asarray(accounts["maintenance_margin"])
            - np.asarray(accounts["equity"]),
            0.0,
        )
        callable_ = (
            (traders.topup_probability > 0)
            & (self.market.t - self.last_warned[rows] >= cfg.warn_cooldown_ticks)
            & ~self.topups.pending[rows]
            & (deposit > 0)
        )
        call_value = np.zeros(rows.size)
        np.divide(loss, deposit, out=call_value, where=callable_)
        # A de-risk of fraction f: avoids about f of the expected loss and pays, per market,
        # the half spread, the square-root impact of f x notional and the taker fee.
        f = cfg.derisk_fraction
        notional = np.abs(self.ledger.size[rows] * self.market.mark_q) / 1e6  # (r, m) quote units
        side = np.maximum(self.book.depth.mean(axis=0), 1.0)  # per 1% per side, (m,)
        fee = np.array([mk.taker_fee for mk in self.venue.markets])
        slip = self.book.half_spread + (2.0 / 3.0) * 0.01 * np.sqrt(f * notional / side) + fee
        cost = row_sum(f * notional * slip)
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
        self.last_warned[due] = self.market.t
        self.topups.schedule(self.market.t, due, Purpose.CALL_TOPUP)
        return int(due.size)

    def _forecast(
        self, rows: np.ndarray, accounts: Mapping[str, np.ndarray]
    ) -> tuple[Fallback, np.ndarray, np.ndarray]:
        """Ask the forecaster about ``rows`` (whose sampled columns are ``accounts``); return
        (fallback reason, probabilities, expected losses — empty unless the budget allocation
        asked for them)."""
        assert self.forecaster is not None
        self.forecasts += 1
        none = np.empty(0)
        request = ForecastRequest(
            tick=self.market.t,
            tick_ms=self.venue.tick_ms,
            markets=tuple(mk.name for mk in self.venue.markets),
            market_history=self.recorder.market_history(),
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
            return self._fallback(Fallback.SCHEMA, e), none, none
        except TimeoutError as e:
            return self._fallback(Fallback.TIMEOUT, e), none, none
        except Exception as e:  # any failure of a forecaster is a fallback, never a crash
            return self._fallback(Fallback.EXCEPTION, e), none, none
        limit = self.cfg.forecast_timeout_s
        if limit > 0 and time.perf_counter() - started > limit:
            return self._fallback(Fallback.TIMEOUT, f"answer took over {limit} s"), none, none
        reason = validate_probabilities(p, rows.size)
        if reason != Fallback.NONE:
            return self._fallback(reason, "unusable probabilities"), none, none
        if self.budget:
            reason = validate_losses(loss, rows.size)
            if reason != Fallback.NONE:
                return self._fallback(reason, "unusable expected losses"), none, none
            loss = np.asarray(loss, np.float64)
        return Fallback.NONE, np.asarray(p, np.float64), loss  # type: ignore[return-value]

    def _fallback(self, reason: Fallback, detail: object) -> Fallback:
        if self.fallbacks[reason] == 0:
            log.warning(
                "forecaster failed at block %d (%s: %s); running the reactive policy for "
                "every block where this happens",
                self.market.t,
                reason.name.lower(),
                detail,
            )
        self.fallbacks[reason] += 1
        return reason

    def _gate(self, rows: np.ndarray, score: np.ndarray) -> None:
        """Refuse new leverage in markets where forecast breach notional outgrows the book."""
        notional = np.abs(self.ledger.size[rows] * self.market.mark_q) / 1e6  # quote units, (r, m)
        forecast = np.minimum(score, 1.0) @ notional
        depth = self.book.depth.sum(axis=0) / 2.0  # per 1%, mean of the two sides
        self.gated = forecast > self.cfg.gate_depth_multiple * depth

    def _warn(self, rows: np.ndarray) -> int:
        """Send margin calls (not to accounts with a top-up already pending); return how many
        went out."""
        due = rows[self.market.t - self.last_warned[rows] >= self.cfg.warn_cooldown_ticks]
        due = due[~self.topups.pending[due]]
        self.last_warned[due] = self.market.t
        self.topups.schedule(self.market.t, due, Purpose.CALL_TOPUP)
        return int(due.size)

    def derisk_plan(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (accounts, size changes) of this block's pre-emptive reductions in market k:
        derisk_fraction of each flagged position, riskiest first, within the depth budget."""
        rows = self.derisk_rows
        if rows.size == 0:
            return rows, rows
        size = self.ledger.size[rows, k]
        keep = size != 0
        if not self.cfg.act_on_breached:
            keep &= ~self.recorder.in_breach[rows]
        rows, size = rows[keep], size[keep]
        dsize = -np.sign(size) * as_int64(np.ceil(np.abs(size) * self.cfg.derisk_fraction))
        notional = np.abs(dsize * self.market.mark_q[k]) / 1e6
        budget = self.cfg.derisk_depth_share * float(self.book.depth[:, k].mean())
        fits = np.cumsum(notional) <= budget
        return rows[fits], dsize[fits]

    # ---- outputs -------------------------------------------------------------------------------

    def _record(self, reason: Fallback | None, scored: int, warned: int) -> None:
        row = self.table[self.market.t]
        if reason is not None:
            row[0] = scored
            row[1] = int(reason)
            row[2] = warned
            self.scored_total += scored
        af = self.account_factor
        row[4] = self.gated
        row[5] = 0 if af is None else int((af > 1.0).sum())
        rs = self.requirement_scale
        row[6] = 1.0 if rs.mm_factor is None else rs.mm_factor
        row[7] = 1.0 if rs.im_factor is None else rs.im_factor
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


def _base_mm_rate(venue: VenueModel, market: MarketState, k: int) -> float:
    """Return market k's MM rate of a small ($1,000) position under its margin model."""
    notional, size = _probe(market, k)
    mm = venue.requirements[k].maintenance(notional, size, market.margin_context(k))
    return max(float(mm[0]) / float(notional[0]), 1e-9)


def _base_im_rate(venue: VenueModel, market: MarketState, k: int) -> float:
    notional, size = _probe(market, k)
    im = venue.requirements[k].requirements(notional, size, market.margin_context(k))[0]
    return min(max(float(im[0]) / float(notional[0]), 1e-9), 1.0)


def _probe(market: MarketState, k: int) -> tuple[np.ndarray, np.ndarray]:
    mark_q = float(market.mark_q[k])
    size = max(1, math.floor(1e9 / mark_q))  # about $1,000 (1e9 quote quantums)
    notional = np.array([round(size * mark_q)], np.int64)
    return notional, np.array([size], np.int64)
