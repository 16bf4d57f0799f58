"""Socialized loss (Drift): what the insurance fund cannot pay, every open position pays.

After the insurance fund, a market that socializes losses first lets its fee pool pay what it
holds, when its rules say so (``fee_pool_absorbs``, Drift's ``resolve_perp_bankruptcy``); the
rest is advanced to the bankrupt account by the fee pool at once and charged at block end to
every open position, long and short, pro rata to base size, as Drift's cumulative-funding delta
does. Charging once per block keeps a cascade at O(accounts) per block.
"""

from __future__ import annotations

import numpy as np

from engine.events import FEE_POOL, NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger, exact_sum
from engine.venue import VenueModel
from engine.venues import drift_v2


class Socialization:
    """The fee pool's share of a loss, and the pro-rata charge of the rest."""

    def __init__(
        self, ledger: Ledger, events: EventLog, market: MarketState, venue: VenueModel
    ) -> None:
        self.ledger = ledger
        self.events = events
        self.market = market
        self.venue = venue
        self._pending = np.zeros(venue.m, np.int64)
        self.fee_pool_paid = np.zeros(venue.m, np.int64)
        """What each fee pool paid of losses for good, quote quantums (Drift)."""

    def cover(self, i: int, k: int, loss: int) -> int:
        """Make account i whole for ``loss`` in market k; return what will be charged to the
        open positions at block end (the rest the fee pool paid for good)."""
        led, t = self.ledger, self.market.t
        from_pool = 0
        if self.venue.markets[k].fee_pool_absorbs:
            from_pool = min(loss, max(int(led.fee_pool[k]), 0))
            if from_pool:
                led.add_fee_pool(k, -from_pool)
                led.credit_one(i, k, from_pool)
                self.events.add_one(t, EventKind.FEE_POOL_PAYOUT, i, k, FEE_POOL, 0, from_pool)
                self.fee_pool_paid[k] += from_pool
        rest = loss - from_pool
        if rest:
            # The fee pool advances it; end_block charges it back to the open positions.
            led.credit_one(i, k, rest)
            led.add_fee_pool(k, -rest)
            self._pending[k] += rest
            self.events.add_one(t, EventKind.SOCIALIZED_LOSS, i, k, FEE_POOL, 0, rest)
        return rest

    def end_block(self) -> None:
        """Charge this block's socialized losses to all open positions, pro rata to base size."""
        led = self.ledger
        for k in np.flatnonzero(self._pending).tolist():
            loss = int(self._pending[k])
            self._pending[k] = 0
            col = led.size[:, k]
            holders = np.nonzero(col)[0]
            exponent = self.venue.markets[k].base_quantum_exponent
            drift_base = _to_drift_base(col[holders], exponent)
            longs = int(np.maximum(drift_base, 0).sum())
            shorts = int(drift_base.sum()) - longs
            delta = drift_v2.calculate_funding_rate_deltas_to_resolve_bankruptcy(
                -loss, longs, shorts
            )
            # Every holder pays ceil(|base| x delta); the rounding surplus stays in the fee pool.
            # With no open position left, the fee pool keeps the loss (a visible deficit).
            pays = drift_v2.socialized_loss_payments_array(loss, drift_base, delta)
            led.charge(holders, k, pays)
            led.add_fee_pool(k, exact_sum(pays))
            self.events.add_one(
                self.market.t,
                EventKind.SOCIALIZED_LOSS,
                NOBODY,
                int(k),
                FEE_POOL,
                0,
                -int(pays.sum()),
                delta / 1e9,
            )


def _to_drift_base(size: np.ndarray, exponent: int) -> np.ndarray:
    shift = 9 + exponent
    if shift >= 0:
        return size * 10**shift
    return np.sign(size) * (np.abs(size) // 10**-shift)
