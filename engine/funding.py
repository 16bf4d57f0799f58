"""Funding: longs and shorts pay each other the mark-oracle premium every funding interval."""

from __future__ import annotations

import numpy as np

from engine.config import MarketConfig
from engine.events import FEE_POOL, NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger, exact_sum
from engine.units import as_int64
from engine.venue import VenueModel

MS_PER_HOUR = 3_600_000


def payment_rate(premium: float, interval_ms: int, mk: MarketConfig) -> float:
    """Return the share of notional paid at one settlement, from the mark-oracle premium.

    With ``funding_rate_hours`` set, the premium is a rate over that period (dYdX and
    Hyperliquid quote 8-hour rates) and a settlement every ``interval_ms`` pays that share of
    it; ``funding_clamp`` bounds the quoted rate (dYdX) or each payment (Hyperliquid, and every
    market without a rate period).
    """
    clamp = mk.funding_clamp
    if mk.funding_rate_hours == 0:
        return float(np.clip(premium, -clamp, clamp))
    share = interval_ms / (mk.funding_rate_hours * MS_PER_HOUR)
    if mk.funding_clamp_on == "rate":
        return float(np.clip(premium, -clamp, clamp)) * share
    return float(np.clip(premium * share, -clamp, clamp))


def settle_funding(
    ledger: Ledger, events: EventLog, market: MarketState, venue: VenueModel
) -> None:
    """Settle funding from the mark-oracle premium (see :func:`payment_rate`); payers round up,
    receivers down, and the rounding dust goes to the fee pool. Sets ``market.funding_rate``."""
    led = ledger
    t = market.t
    market.funding_rate = np.zeros(venue.m)
    for k, mk in enumerate(venue.markets):
        if mk.funding_interval_ticks == 0 or t % mk.funding_interval_ticks:
            continue
        premium = market.mark[k] / market.oracle[k] - 1.0
        rate = payment_rate(premium, mk.funding_interval_ticks * venue.tick_ms, mk)
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
