"""What a run cost the venue and its traders: the figures policies are compared on.

All amounts are in quote units. ``run_outcomes`` reads a finished :class:`Simulation` (its market
and policy tables and its event log); nothing here changes a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.events import EventKind

if TYPE_CHECKING:
    from engine.sim import Simulation

CASCADE_WINDOW_MINUTES = 30.0
"""A cascade is the liquidations within this long after the run's first one."""
COVERAGE_PERIOD_MINUTES = 15.0
"""Margin coverage is tested over consecutive windows this long (a liquidation period)."""
EXHAUSTED_SHARE = 0.01
"""The insurance fund counts as exhausted once it falls below this share of its opening size."""


def run_outcomes(sim: Simulation, reactive_breachers: np.ndarray | None = None) -> dict[str, float]:
    """Return the run's outcomes.

    ``reactive_breachers`` (account ids that breached in the reactive run of the same seed)
    lets the notional de-risked on accounts that would not have breached be counted.
    """
    r = sim.records
    t_end = sim.t + 1
    tick_hours = sim.cfg.tick_ms / 3_600_000.0
    liqs = r["liquidations"][1:t_end].sum(axis=1)
    cascade_ticks = max(1, round(CASCADE_WINDOW_MINUTES * 60_000 / sim.cfg.tick_ms))
    first = np.flatnonzero(liqs > 0)
    cascade = float(liqs[first[0] : first[0] + cascade_ticks].sum()) if first.size else 0.0
    fund = r["insurance_fund"][:t_end].sum(axis=1)
    opening = float(fund[0])
    drawdown = float(np.max(np.maximum.accumulate(fund) - fund)) if fund.size else 0.0
    exhausted = float(opening > 0 and fund.min() < EXHAUSTED_SHARE * opening)

    table = sim.policy.table[:t_end]
    columns = {c: i for i, c in enumerate(_policy_columns())}
    held = table[:, columns["mm_held"], :].sum(axis=1)
    base = table[:, columns["mm_base"], :].sum(axis=1)
    oi = r["oi_notional"][:t_end].sum(axis=1)
    ratio = np.zeros_like(held)
    np.divide(held, oi, out=ratio, where=oi > 0)

    events = sim.events.to_frame()
    liq = events[events["kind"] == int(EventKind.LIQUIDATION)]
    slippage = _slippage(sim, liq)
    derisk = events[events["kind"] == int(EventKind.DERISK)]
    derisked = float((derisk["amount"].abs()).sum()) / 1e6
    needless = float("nan")
    if reactive_breachers is not None:
        spared = ~np.isin(derisk["account"].to_numpy(), reactive_breachers)
        needless = float(derisk["amount"].abs().to_numpy()[spared].sum()) / 1e6
    windows, exceeded = margin_coverage(sim, held, oi)
    summary = sim.policy.summary()
    return {
        "bad_debt": float(r["bad_debt"][1:t_end].sum()),
        "liquidations": float(liqs.sum()),
        "liquidated_notional": float(r["liquidated_notional"][1:t_end].sum()),
        "cascade_size": cascade,
        "if_drawdown_max": drawdown,
        "if_drawdown_share": drawdown / opening if opening > 0 else 0.0,
        "if_exhausted": exhausted,
        "adl_notional": float(r["adl_notional"][1:t_end].sum() + r["socialized"][1:t_end].sum()),
        "liquidation_slippage": slippage,
        "capital_cost": float(ratio.mean()),
        "trader_cost": float((held - base).sum() * tick_hours),
        "derisked_notional": derisked,
        "derisked_needless": needless,
        "fallbacks": float(summary["policy_fallbacks"]),
        "coverage_windows": float(windows),
        "coverage_exceedances": float(exceeded),
    }


def margin_coverage(sim: Simulation, held: np.ndarray, oi: np.ndarray) -> tuple[int, int]:
    """Return (windows, exceedances): over consecutive windows of COVERAGE_PERIOD_MINUTES, how
    often the mark moved by more than the maintenance margin held per unit of open interest at
    the window's start (the share of a position's value the margin was there to cover).

    ``held`` and ``oi`` are the traders' total MM and open-interest notional per block.
    """
    period = max(1, round(COVERAGE_PERIOD_MINUTES * 60_000 / sim.cfg.tick_ms))
    mark = sim.records["mark_price"][: sim.t + 1]
    starts = np.arange(0, mark.shape[0] - period, period)
    if starts.size == 0:
        return 0, 0
    rate = np.zeros(starts.size)
    np.divide(held[starts], oi[starts], out=rate, where=oi[starts] > 0)
    move = np.abs(mark[starts + period] / mark[starts] - 1.0).max(axis=1)
    return int(starts.size), int((move > rate).sum())


def _policy_columns() -> tuple[str, ...]:
    from engine.policy import POLICY_COLUMNS

    return POLICY_COLUMNS


def _slippage(sim: Simulation, liq) -> float:
    """Return the notional-weighted mean relative distance of liquidation fills from the mark."""
    if liq.empty:
        return 0.0
    tick = liq["tick"].to_numpy()
    k = liq["market"].to_numpy().astype(np.int64)
    mark_q = sim.records["mark_price"][tick, k] * sim.price_scale[k]
    size = np.abs(liq["size"].to_numpy()).astype(np.float64)
    price = liq["price"].to_numpy()
    weight = size * mark_q
    total = weight.sum()
    return float((size * np.abs(price - mark_q)).sum() / total) if total > 0 else 0.0
