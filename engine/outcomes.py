"""What a run cost the venue and its traders: the figures policies are compared on.

All amounts are in quote units. ``run_outcomes`` reads a finished :class:`Simulation` (its market
and policy tables and its event log); nothing here changes a run.

**The all-in cost** prices every lever a policy pulls in one unit — a share of the run's mean
open-interest notional — so that policies pulling different levers are compared like for like:

* ``capital_cost``: the traders' maintenance margin held per unit of open interest,
  time-weighted (measured every 20 blocks) — what raising requirements costs;
* ``deposit_cost``: collateral deposited answering margin calls / mean open interest — capital
  the policy made traders post, counted in full (as if held for the whole run: a deposit is
  never cheaper than margin held);
* ``derisk_cost``: what pre-emptive reductions paid the book (each fill's distance from the
  index the book quotes around — impact and spread — and taker fees) / mean open interest —
  money the traders lost, counted in full;
* ``refusal_cost``: the notional of orders refused by gating (orders that passed initial
  margin), priced at the margin model's own maintenance rate (its margin per unit of open
  interest over the run) / mean open interest — the margin-equivalent of the exposure denied;
  a trader who retries is refused, and counted, again.

``all_in_cost`` is their sum. Breach top-ups are not a policy's cost (the reactive venue has
them too); only deposits answering the policy's own calls are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.events import EventKind

if TYPE_CHECKING:
    import pandas as pd

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
    mean_oi = float(oi.mean()) if oi.size else 0.0
    base_ratio = np.zeros_like(base)
    np.divide(base, oi, out=base_ratio, where=oi > 0)
    levers = {
        "call_deposits": float(table[:, columns["call_deposits"], :].sum()),
        "derisk_paid": float(table[:, columns["derisk_paid"], :].sum()),
        "refused_notional": float(table[:, columns["refused_notional"], :].sum()),
    }
    costs = all_in_cost(
        float(ratio.mean()),
        levers["call_deposits"],
        levers["derisk_paid"],
        levers["refused_notional"] * float(base_ratio.mean()),
        mean_oi,
    )
    left = sim.left_at_end()
    return {
        "bad_debt": float(r["bad_debt"][1:t_end].sum()),
        "deficit_at_end": float(left["deficit_at_end"]),
        "below_maintenance_at_end": float(left["below_maintenance_at_end"]),
        "liquidations": float(liqs.sum()),
        "liquidated_notional": float(r["liquidated_notional"][1:t_end].sum()),
        "cascade_size": cascade,
        "if_drawdown_max": drawdown,
        "if_drawdown_share": drawdown / opening if opening > 0 else 0.0,
        "if_exhausted": exhausted,
        "adl_notional": float(r["adl_notional"][1:t_end].sum() + r["socialized"][1:t_end].sum()),
        "liquidation_slippage": slippage,
        **costs,
        **levers,
        "trader_cost": float((held - base).sum() * tick_hours),
        "derisked_notional": derisked,
        "derisked_needless": needless,
        "fallbacks": float(summary["policy_fallbacks"]),
        "coverage_windows": float(windows),
        "coverage_exceedances": float(exceeded),
    }


def all_in_cost(
    capital_cost: float, deposits: float, derisk_paid: float, refused_margin: float, mean_oi: float
) -> dict[str, float]:
    """Return the all-in cost and its parts (see the module docstring): ``capital_cost`` is
    already a share of open interest; the other amounts are quote units over the run, divided
    by ``mean_oi`` (zero when there was no open interest)."""

    def share(x: float) -> float:
        return x / mean_oi if mean_oi > 0 else 0.0

    parts = {
        "capital_cost": capital_cost,
        "deposit_cost": share(deposits),
        "derisk_cost": share(derisk_paid),
        "refusal_cost": share(refused_margin),
    }
    return {**parts, "all_in_cost": float(sum(parts.values()))}


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


def _slippage(sim: Simulation, liq: pd.DataFrame) -> float:
    """Return the notional-weighted mean relative distance of liquidation fills from the mark."""
    if liq.empty:
        return 0.0
    tick = liq["tick"].to_numpy()
    k = liq["market"].to_numpy().astype(np.int64)
    mark_q = sim.records["mark_price"][tick, k] * sim.venue.price_scale[k]
    size = np.abs(liq["size"].to_numpy()).astype(np.float64)
    price = liq["price"].to_numpy()
    weight = size * mark_q
    total = weight.sum()
    return float((size * np.abs(price - mark_q)).sum() / total) if total > 0 else 0.0
