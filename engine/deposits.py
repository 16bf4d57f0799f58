"""Collateral top-ups: traders who answer a breach, or a margin call, by depositing.

:class:`TopUps` owns the schedule of pending top-ups. A breach onset and a policy's margin call
both roll, per account, whether it tops up (keyed draws, so paired runs stay paired); a
deposit arrives ``topup_delay_ticks`` later and restores the target margin ratio per pool.
"""

from __future__ import annotations

import numpy as np

from engine.config import TradersConfig
from engine.draws import Draws, Purpose
from engine.events import NOBODY, EventKind, EventLog
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.rows import row_sum
from engine.state import Ledger
from engine.units import as_int64
from engine.valuation import margin_of
from engine.venue import VenueModel


class TopUps:
    """Pending top-ups and when each account last topped up."""

    def __init__(self, cfg: TradersConfig, draws: Draws, n: int) -> None:
        self.cfg = cfg
        self.draws = draws
        self.scheduled: list[tuple[int, np.ndarray]] = []
        """(block due, accounts) of the top-ups rolled and not yet made."""
        self.pending = np.zeros(n, bool)
        """Accounts with a top-up scheduled and not yet made: nobody rolls a second one."""
        self.called = np.zeros(n, bool)
        """Accounts whose pending top-up answers a margin call (its deposit is the policy's)."""
        self.last_tick = np.full(n, -1, np.int64)
        """Block of each account's last top-up (-1: never)."""

    def schedule(self, t: int, accounts: np.ndarray, purpose: Purpose) -> np.ndarray:
        """Roll, for each of ``accounts`` (unique ids) without a pending top-up, whether it
        tops up after the traders' delay; schedule and return those that will."""
        p = self.cfg.topup_probability
        accounts = accounts[~self.pending[accounts]]
        if accounts.size == 0 or p <= 0:
            return accounts[:0]
        answer = accounts[self.draws.account_uniforms(purpose, accounts) < p]
        if answer.size:
            self.scheduled.append((t + self.cfg.topup_delay_ticks, answer))
            self.pending[answer] = True
            self.called[answer] = purpose == Purpose.CALL_TOPUP
        return answer

    def apply(
        self,
        ledger: Ledger,
        events: EventLog,
        market: MarketState,
        venue: VenueModel,
        scale: RequirementScale,
    ) -> list[tuple[int, float]]:
        """Deposit collateral for the accounts whose top-up is due, back to the target margin
        ratio (per pool: the cross pool, or each isolated position).

        Returns the deposits that answered margin calls, as (market, quote quantums) in the
        order made (cross deposits sit in the quote pool and are booked to market 0, last).
        """
        t = market.t
        due = [acc for tick, acc in self.scheduled if tick <= t]
        if not due:
            return []
        self.scheduled = [(tick, acc) for tick, acc in self.scheduled if tick > t]
        accounts = np.unique(np.concatenate(due))
        called = self.called[accounts]
        self.pending[accounts] = False
        self.called[accounts] = False
        led = ledger
        value, _, mm = margin_of(led.size[accounts], accounts, False, market, venue, scale)
        target = self.cfg.topup_target_ratio
        cross = led.cross[accounts]
        equity = led.quote[accounts] + row_sum(value)
        need = np.ceil(target * row_sum(mm) - equity)
        amount = as_int64(np.where(cross & (row_sum(mm) > 0), np.maximum(need, 0), 0))
        paid = amount > 0
        forced = np.where(called, amount, 0).sum(axis=0)
        calls: list[tuple[int, float]] = []
        if paid.any():
            led.deposit(accounts[paid], 0, amount[paid])
            events.add(t, EventKind.DEPOSIT, accounts[paid], 0, NOBODY, 0, amount[paid])
        for k in range(venue.m):
            pool = led.iso_quote[accounts, k] + value[:, k]
            need_k = np.ceil(target * mm[:, k] - pool)
            amount_k = as_int64(np.where(~cross & (mm[:, k] > 0), np.maximum(need_k, 0), 0))
            iso_paid = amount_k > 0
            if iso_paid.any():
                led.deposit(accounts[iso_paid], k, amount_k[iso_paid])
                calls.append((k, float(amount_k[iso_paid & called].sum())))
                events.add(
                    t, EventKind.DEPOSIT, accounts[iso_paid], k, NOBODY, 0, amount_k[iso_paid]
                )
                paid |= iso_paid
        self.last_tick[accounts[paid]] = t
        if forced:
            calls.append((0, float(forced)))
        return calls
