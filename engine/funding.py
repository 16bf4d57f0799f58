"""Funding: longs and shorts pay each other the mark-oracle premium every funding interval."""

from __future__ import annotations

import numpy as np

from engine.events import FEE_POOL, NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger, exact_sum
from engine.units import as_int64
from engine.venue import VenueModel


def settle_funding(
    ledger: Ledger, events: EventLog, market: MarketState, venue: VenueModel
) -> None:
    """Settle funding from the mark-oracle premium (clamped per market); payers round up,
    receivers down, and the rounding dust goes to the fee pool. Sets ``market.funding_rate``."""
    led = ledger
    t = market.t
    market.funding_rate = np.zeros(venue.m)
    for k, mk in enumerate(venue.markets):
        if mk.funding_interval_ticks == 0 or t % mk.funding_interval_ticks:
            continue
        premium = market.mark[k] / market.oracle[k] - 1.0
        rate = float(np.clip(premium, -mk.funding_clamp, mk.funding_clamp))
        market.funding_rate[k] = rate
        if rate == 0.0:
            continue
        holders = np.nonzero(led.size[:, k])[0]
        owed = led.size[holders, k] * (market.oracle[k] * venue.price_scale[k] * rate)
        amount = as_int64(np.floor(-owed))  # = -ceil(owed): payers pay at least owed
        led.credit(holders, k, amount)
        dust = -exact_sum(amount)
        led.add_fee_pool(k, dust)
        paid = int(-amount[amount < 0].sum())
        events.add(t, EventKind.FUNDING, NOBODY, k, NOBODY, 0, paid, rate)
        if dust:
            events.add(t, EventKind.FEE, FEE_POOL, k, NOBODY, 0, dust)
