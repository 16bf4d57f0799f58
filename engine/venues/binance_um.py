"""Binance USD-M futures figures (from Binance's public pages; cited in ``docs/venues.md``).

The margin formula itself is the tiered model's: MM = notional x rate - maintenance amount,
where the amount is the deduction that makes MM continuous across brackets
(:func:`engine.config.margin.maintenance_amounts`). ADL ranks by profit % x effective leverage
for winners and profit % / effective leverage for losers, the ranking :mod:`engine.adl` uses;
Binance shows traders their place as a quintile (five lights), which changes nothing in the
order.
"""

from __future__ import annotations

BTCUSDT_BRACKETS: tuple[tuple[int, float, float, int], ...] = (
    # (notional floor USD, initial margin, maintenance margin, maintenance amount USD)
    (0, 0.008, 0.004, 0),
    (50_000, 0.010, 0.005, 50),
    (250_000, 0.020, 0.010, 1_300),
    (1_000_000, 0.050, 0.025, 16_300),
    (10_000_000, 0.100, 0.050, 266_300),
    (20_000_000, 0.200, 0.100, 1_266_300),
    (50_000_000, 0.250, 0.125, 2_516_300),
    (100_000_000, 0.333, 0.150, 5_016_300),
    (200_000_000, 0.500, 0.250, 25_016_300),
    (300_000_000, 1.000, 0.500, 100_016_300),
)
"""BTCUSDT perpetual brackets from Binance's announcement "Updates to Leverage and Margin Tiers
of Binance Futures Contracts (2021-03-18)": 125x to $50k ... 1x to $500M. That table gives
the rates; the maintenance amounts (Binance's "Maintenance Amount" column) are what the rates
imply, and the config checks each against them."""

CLEARANCE_FEE = 0.005
"""Liquidation clearance fee, to the insurance fund: "up to 0.5%" of the liquidated notional
(Binance Futures documentation, Insurance Fund)."""

BASIS_WINDOW_MS = 300_000
"""Mark price = index + the 5-minute moving average of the basis (mid - index)."""
