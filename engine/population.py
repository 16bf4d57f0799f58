"""The starting snapshot of a run: traders already holding positions against the maker."""

from __future__ import annotations

import numpy as np

from engine.config import SimConfig
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.state import Ledger, exact_sum
from engine.traders import Traders
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64, base_to_quantums, usd_to_quote_quantums
from engine.valuation import margin_of
from engine.venue import MAKER, VenueModel


def populate(
    cfg: SimConfig,
    market: MarketState,
    venue: VenueModel,
    traders: Traders,
    rng: np.random.Generator,
) -> tuple[Ledger, np.ndarray]:
    """Return (the opening ledger, each account's trader type, int8 (n,)).

    Sizes ~ N(0, position_sigma_base) per market at the initial price; collateral so that
    leverage ~ U(leverage_min, leverage_max). By default a snapshot is not gated by initial
    margin (it is the venue's state when the simulation starts); new orders are. With
    ``accounts.opening_margin = "initial"`` collateral is at least the venue's initial margin
    of each position (no extra draws: the same seed gives the same positions and leverage).
    """
    acc = cfg.accounts
    n_traders = acc.count
    n = n_traders + 1
    m = len(cfg.markets)
    led = Ledger.empty(n, m, cfg.keepers.count)
    led.is_maker[MAKER] = True
    trader_type = np.zeros(n, np.int8)
    rows = np.arange(1, n)
    led.cross[rows] = rng.random(n_traders) < acc.cross_fraction
    types, leverage = traders.assign(rng)
    trader_type[1:] = types
    sizes = np.empty((n_traders, m), np.int64)
    scale = np.ones(n_traders)
    scale[: acc.whales] = acc.whale_size_multiple
    for k, mk in enumerate(cfg.markets):
        base = rng.normal(0.0, mk.position_sigma_base, n_traders) * scale
        sizes[:, k] = base_to_quantums(base, mk.base_quantum_exponent)
    cost = as_int64(np.floor(sizes * market.mark_q))  # quote paid to open, per market
    notional = np.abs(sizes * market.mark_q)
    collateral = usd_to_quote_quantums(notional / leverage[:, None] / QUOTE_QUANTUMS_PER_UNIT, "up")
    if acc.opening_margin == "initial":
        _, _, im = margin_of(sizes, rows, True, market, venue, RequirementScale(m))
        collateral = np.maximum(collateral, im)
    # Collateral: cross accounts post one deposit, isolated ones one per position.
    cross = led.cross[rows]
    for k in range(m):
        led.deposit(rows[~cross], k, collateral[~cross, k])
    led.deposit(rows[cross], 0, collateral[cross].sum(axis=1))
    led.deposit(np.array([MAKER]), 0, usd_to_quote_quantums(acc.maker_collateral_usd, "down"))
    for k, mk in enumerate(cfg.markets):
        if_seed = usd_to_quote_quantums(mk.insurance_fund_usd, "down")
        led.add_insurance(k, int(if_seed))
        led.net_deposits += int(if_seed)
        led.trade(rows, k, sizes[:, k], -cost[:, k])
        led.trade(np.array([MAKER]), k, -exact_sum(sizes[:, k]), exact_sum(cost[:, k]))
    return led, trader_type
