"""Recording a run: the per-block market table, sampled account rows, breach onsets, and the
tables a finished run is written as.

:class:`Recorder` reads the run's state and never changes it. It owns what it writes: the
market table (one float array, (block, column, market)), the liquidation map carried between
its measurements, the sampled account rows, and the breach onsets with each account's
in-breach flag (the labels' source). pandas is used only to assemble the finished tables, never
in the step loop.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from engine.book import Book
from engine.config import SimConfig
from engine.events import EventKind
from engine.labels import breach_labels, episode_sums, next_onset
from engine.liquidation import STAT_FIELDS, BlockStats
from engine.market import MarketState
from engine.prices import IndexPath
from engine.rows import row_sum
from engine.state import Ledger
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64
from engine.valuation import equity, exposure
from engine.venue import VenueModel

STATE_COLUMNS = (
    "index_price",
    "oracle_price",
    "oracle_age",
    "mark_price",
    "sigma_annual",
    "vol_mmf",
    "open_interest",
    "oi_notional",
    "insurance_fund",
    "fee_pool",
    "breached",
    "paused",
    "funding_rate",
    "orders_accepted",
    "orders_rejected",
    "regime",
    "taker_flow",
    "congestion",
    "keeper_capacity",
    "keeper_latency",
    "half_spread",
    "bid_depth",
    "ask_depth",
    "taker_buy_usd",
    "taker_sell_usd",
)
LIQUIDATION_MAP_DISTANCES = (0.01, 0.025, 0.05, 0.10)
"""Rungs of the liquidation map: uniform adverse moves of the marks (relative)."""
LIQUIDATION_MAP_EVERY_TICKS = 4
"""Blocks between measurements of the liquidation map (a pass over every account), carried
between measurements."""
MAP_COLUMNS = tuple(
    f"crowded_{side}_{d * 100:g}pct"
    for side in ("long", "short")
    for d in LIQUIDATION_MAP_DISTANCES
)
"""Notional (quote units) of each market's long / short positions held by accounts that a
uniform adverse move of at most d would bring to maintenance margin (those already in breach
included): the forced flow waiting at each distance, as a venue's liquidation heat map shows."""
MARKET_COLUMNS = STATE_COLUMNS + MAP_COLUMNS + STAT_FIELDS
"""Columns of the per-tick market table (amounts in quote units, sizes in base units)."""
INT_COLUMNS = (
    "regime",
    "keeper_capacity",
    "keeper_latency",
    "oracle_age",
    "breached",
    "liquidations",
    "unfilled",
    "orders_accepted",
    "orders_rejected",
)
_FIRST_MAP = len(STATE_COLUMNS)
_FIRST_STAT = _FIRST_MAP + len(MAP_COLUMNS)
_STAT_SCALE = np.array(
    [
        1.0 if f in ("liquidations", "unfilled") else 1.0 / QUOTE_QUANTUMS_PER_UNIT
        for f in STAT_FIELDS
    ]
)[:, None]


class Recorder:
    """Reads a run's state every block and keeps its records."""

    def __init__(
        self,
        cfg: SimConfig,
        venue: VenueModel,
        market: MarketState,
        ledger: Ledger,
        book: Book,
        index: IndexPath,
        index_path: np.ndarray,
        trader_type: np.ndarray,
        last_order_tick: np.ndarray,
        last_topup_tick: np.ndarray,
        steps: int,
    ) -> None:
        self.cfg = cfg
        self.venue = venue
        self.market = market
        self.ledger = ledger
        self.book = book
        self.index = index
        self.index_path = index_path
        """The index the run follows (shocks included; ``index.prices`` is the drawn path)."""
        self.trader_type = trader_type
        self.last_order_tick = last_order_tick
        self.last_topup_tick = last_topup_tick
        m = venue.m
        n = ledger.size.shape[0]
        # One array (tick, column, market); ``records[column]`` is a (tick, market) view of it.
        self.history = np.zeros((steps + 1, len(MARKET_COLUMNS), m))
        self.records = {c: self.history[:, i, :] for i, c in enumerate(MARKET_COLUMNS)}
        self.liquidation_map = np.zeros((len(MAP_COLUMNS), m))
        self.in_breach = np.zeros(n, bool)
        """Accounts in breach at the last evaluation of their margin."""
        self._onsets: list[tuple[int, np.ndarray]] = []
        self._samples: list[dict[str, np.ndarray]] = []

    # ---- every block ---------------------------------------------------------------------------

    def record(
        self, stats: BlockStats, orders: np.ndarray, breached: np.ndarray | None = None
    ) -> None:
        """Write this block's row of the market table."""
        market = self.market
        t = market.t
        row = self.history[t]
        usd = 1.0 / QUOTE_QUANTUMS_PER_UNIT
        book = self.book
        # Positions in STATE_COLUMNS order (integer indices: this runs every block).
        row[0] = self.index_path[t]
        row[1] = market.oracle
        row[2] = t - market.oracle_updated
        row[3] = market.mark
        row[4] = np.sqrt(market.ewma_var / self.venue.dt_years)
        row[5] = market.vol_mmf_ppm * 1e-6
        row[6] = market.open_interest * self.venue.base_unit
        row[7] = market.oi_notional * usd
        row[8] = self.ledger.insurance * usd
        row[9] = self.ledger.fee_pool * usd
        row[10] = 0 if breached is None else breached
        row[11] = market.paused
        row[12] = market.funding_rate
        row[13:15] = orders
        row[15] = self.index.regime[t]
        row[16] = self.index.taker_flow[t]
        row[17] = market.congestion
        row[18] = market.keeper_capacity
        row[19] = market.keeper_latency
        row[20] = book.half_spread
        row[21:23] = book.depth
        row[23] = book.bought
        row[24] = book.sold
        if t % LIQUIDATION_MAP_EVERY_TICKS == 0:
            self.liquidation_map = self._liquidation_map()
        row[_FIRST_MAP:_FIRST_STAT] = self.liquidation_map
        row[_FIRST_STAT:] = stats.data * _STAT_SCALE

    def track_onsets(self, rows: np.ndarray | slice, in_breach: np.ndarray) -> np.ndarray | None:
        """Record the accounts of ``rows`` that entered breach at this block; return their ids
        (None when nobody did)."""
        if not in_breach.any():  # the usual block: nobody in breach among the evaluated
            self.in_breach[rows] = False
            return None
        onset = in_breach & ~self.in_breach[rows]
        ids = None
        if onset.any():
            ids = np.flatnonzero(onset) if isinstance(rows, slice) else rows[onset]
            self._onsets.append((self.market.t, ids))
        self.in_breach[rows] = in_breach
        return ids

    def sample(self) -> None:
        """Record one row per trader with its margin state at the end of this block."""
        self._samples.append(self.account_rows(np.flatnonzero(~self.ledger.is_maker)))

    def account_rows(self, accounts: np.ndarray) -> dict[str, np.ndarray]:
        """Return the sampled-account columns of ``accounts`` (trader ids) at this block.

        Requirements are the margin models' base requirements, without the policy's
        multipliers: the state a reactive venue would report, which forecasts are trained on.
        """
        led = self.ledger
        market = self.market
        sizes = led.size[accounts]
        value = sizes * market.mark_q
        notional = as_int64(np.rint(np.abs(value)))
        im = np.empty(sizes.shape, np.int64)
        mm = np.empty(sizes.shape, np.int64)
        for k, req in enumerate(self.venue.requirements):
            im[:, k], mm[:, k] = req.requirements(
                notional[:, k], sizes[:, k], market.margin_context(k)
            )
        usd = 1.0 / QUOTE_QUANTUMS_PER_UNIT
        equity_usd = equity(led, accounts, value) * usd
        mm_acct = row_sum(mm) * usd
        gross = row_sum(notional) * usd
        exposure_usd = exposure(sizes, notional, self.venue) * usd
        topup = self.last_topup_tick[accounts]
        t = market.t
        with np.errstate(divide="ignore", invalid="ignore"):
            row = {
                "tick": np.full(sizes.shape[0], t, np.int64),
                "account": accounts.astype(np.int64),
                "equity": equity_usd,
                "maintenance_margin": mm_acct,
                "initial_margin": row_sum(im) * usd,
                "margin_ratio": np.where(mm_acct > 0, equity_usd / mm_acct, np.nan),
                "leverage": np.where(equity_usd > 0, gross / equity_usd, np.nan),
                "notional": gross,
                "unrealized_pnl": row_sum(value - led.entry[accounts]) * usd,
                "cross": led.cross[accounts],
                "breached_now": self.in_breach[accounts],
                # The uniform adverse move of every mark that would bring equity to MM.
                "distance_to_liquidation": np.where(
                    exposure_usd > 0, (equity_usd - mm_acct) / exposure_usd, np.nan
                ),
                "ticks_since_order": t - self.last_order_tick[accounts],
                "ticks_since_topup": np.where(topup >= 0, t - topup, -1),
                "trader_type": self.trader_type[accounts],
            }
        for k, mk in enumerate(self.venue.markets):
            row[f"notional_{mk.name}"] = value[:, k] * usd
        return row

    def _liquidation_map(self) -> np.ndarray:
        """Return MAP_COLUMNS per market, (len(MAP_COLUMNS), m): the notional of long and short
        positions whose account a uniform adverse move of at most each rung would bring to
        maintenance margin (distance as in ``account_rows``; base requirements)."""
        led = self.ledger
        market = self.market
        # Market by market over contiguous columns (the makers' rows get no weight below); the
        # sums run in the order of row_sum and exposure, so the numbers are theirs.
        columns = np.ascontiguousarray(led.size.T)
        n = columns.shape[1]
        mm = np.zeros(n)
        reach = np.zeros(n)
        value_total = np.zeros(n)
        notional = []
        for k, req in enumerate(self.venue.requirements):
            value = columns[k] * market.mark_q[k]
            notional.append(as_int64(np.rint(np.abs(value))))
            mm_k, rate = req.maintenance_and_rate(notional[k], columns[k], market.margin_context(k))
            mm += mm_k
            reach += notional[k] * (1.0 + np.minimum(rate, 1.0))
            value_total = value + 0.0 if k == 0 else value_total + value
        head = led.quote + row_sum(led.iso_quote) + value_total - mm
        distance = np.full(head.shape, np.inf)
        np.divide(head, reach, out=distance, where=reach > 0)
        rungs = LIQUIDATION_MAP_DISTANCES
        r = len(rungs) + 1
        # Bin j holds the accounts with distance in (rung j-1, rung j] (j = r - 1: beyond the
        # last rung); longs in bins 0..r-1, shorts in r..2r-1: one bincount per market. A bin
        # is the count of rungs below the distance (never NaN: head is finite, reach > 0).
        rung = np.zeros(distance.shape, np.intp)
        for d in rungs:
            rung += distance > d
        makers = np.flatnonzero(led.is_maker)  # they get no weight
        m = self.venue.m
        out = np.zeros((2, len(rungs), m))
        for k in range(m):
            weight = notional[k] / QUOTE_QUANTUMS_PER_UNIT
            weight[makers] = 0.0
            short = columns[k] < 0
            sums = np.bincount(rung + r * short, weight, minlength=2 * r).reshape(2, r)
            out[:, :, k] = np.cumsum(sums[:, : len(rungs)], axis=1)
        return out.reshape(2 * len(rungs), m)

    def market_history(self) -> dict[str, np.ndarray]:
        """Return the market table so far as (tick + 1, m) read-only views, one per column."""
        out = {}
        for c, arr in self.records.items():
            view = arr[: self.market.t + 1]
            view.flags.writeable = False
            out[c] = view
        return out

    # ---- the finished run ----------------------------------------------------------------------

    def _market_keys(self, t_end: int) -> dict[str, np.ndarray]:
        m = self.venue.m
        return {
            "tick": np.repeat(np.arange(t_end), m),
            "market": np.tile(np.array(self.venue.names), t_end),
        }

    def market_frame(self) -> pd.DataFrame:
        """Return the per-tick market state recorded so far, one row per (tick, market)."""
        t_end = self.market.t + 1
        m = self.venue.m
        ticks = np.repeat(np.arange(t_end), m)
        time_ms = ticks * self.cfg.tick_ms
        if self.index.time_ms is not None:  # a replay keeps the bars' wall-clock time
            time_ms = np.repeat(self.index.time_ms[:t_end], m)
        data = {
            "tick": ticks,
            "time_ms": time_ms,
            "market": np.tile(np.array(self.venue.names), t_end),
        }
        for c in MARKET_COLUMNS:
            data[c] = self.records[c][:t_end].ravel()
        df = pd.DataFrame(data)
        for c in INT_COLUMNS:
            df[c] = df[c].astype(np.int64)
        df["paused"] = df["paused"].astype(bool)
        return df

    def policy_frame(self, table: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
        """Return a policy's table (block, column, market) as one row per (tick, market)."""
        t_end = self.market.t + 1
        data = self._market_keys(t_end)
        for i, c in enumerate(columns):
            data[c] = table[:t_end, i, :].ravel()
        df = pd.DataFrame(data)
        for c in ("scored", "fallback", "warned", "addon_accounts"):
            df[c] = df[c].astype(np.int64)
        df["gated"] = df["gated"].astype(bool)
        return df

    def onsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (ticks, accounts) of every breach onset so far, int64 arrays."""
        if not self._onsets:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        ticks = np.concatenate([np.full(a.size, t, np.int64) for t, a in self._onsets])
        accounts = np.concatenate([a for _, a in self._onsets]).astype(np.int64)
        return ticks, accounts

    def labelled_accounts(self, events: pd.DataFrame, steps: int) -> pd.DataFrame:
        """Return the sampled account rows with their breach and loss labels per horizon (see
        :meth:`engine.sim.Simulation.labelled_accounts`); ``events`` is the run's event table."""
        if not self._samples:
            raise ValueError("history.sample_every_ticks is 0: this run sampled no accounts")
        frame = pd.DataFrame(
            {k: np.concatenate([s[k] for s in self._samples]) for k in self._samples[0]}
        )
        onset_tick, onset_account = self.onsets()
        row_tick = frame["tick"].to_numpy()
        row_account = frame["account"].to_numpy()
        span = steps + 2
        nxt = next_onset(row_tick, row_account, onset_tick, onset_account, span)
        horizons = self.cfg.history.horizons_minutes
        ticks = [max(1, round(h * 60_000 / self.cfg.tick_ms)) for h in horizons]
        labels = breach_labels(row_tick, nxt, ticks, self.market.t)
        frame.insert(1, "time_ms", self.time_ms(row_tick))
        losses = self._loss_events(events)
        start = np.where(nxt >= 0, nxt, span - 1)
        for j, h in enumerate(horizons):
            frame[f"label_{h:g}m"] = labels[:, j]
            after = next_onset(row_tick + ticks[j], row_account, onset_tick, onset_account, span)
            stop = np.where(after >= 0, after, span - 1)
            known = labels[:, j] >= 0
            for name, (ev_tick, ev_account, amount) in losses.items():
                total = episode_sums(
                    row_tick, row_account, start, stop, ev_tick, ev_account, amount, span
                )
                frame[f"{name}_{h:g}m"] = np.where(known, total, np.nan)
        frame["ticks_to_breach"] = np.where(nxt >= 0, nxt - row_tick, -1)
        return frame

    def _loss_events(self, events: pd.DataFrame) -> dict[str, tuple[np.ndarray, ...]]:
        """Return (tick, account, quote units) of the traders' bad debt and liquidation impact
        events, for the loss labels."""
        kind = events["kind"].to_numpy()
        account = events["account"].to_numpy()
        traders = account > 0
        out: dict[str, tuple[np.ndarray, ...]] = {}
        bad = traders & (kind == int(EventKind.BAD_DEBT))
        out["loss"] = (
            events["tick"].to_numpy()[bad],
            account[bad],
            -events["amount"].to_numpy()[bad] / QUOTE_QUANTUMS_PER_UNIT,
        )
        liq = traders & (kind == int(EventKind.LIQUIDATION))
        tick = events["tick"].to_numpy()[liq]
        market = events["market"].to_numpy()[liq].astype(np.int64)
        reference_q = self.index_path[tick, market] * self.venue.price_scale[market]
        fill_q = events["price"].to_numpy()[liq]
        size = np.abs(events["size"].to_numpy()[liq]).astype(np.float64)
        impact = size * np.abs(fill_q - reference_q) / QUOTE_QUANTUMS_PER_UNIT
        out["impact"] = (tick, account[liq], impact)
        return out

    def time_ms(self, ticks: np.ndarray) -> np.ndarray:
        """Return the wall-clock time of blocks (a replay's bar times, else tick x tick_ms)."""
        if self.index.time_ms is not None:
            return self.index.time_ms[ticks]
        return ticks * self.cfg.tick_ms

    def account_frame(self) -> pd.DataFrame:
        """Return every account's final balances and positions (quote/base quantums)."""
        led = self.ledger
        data = {
            "account": np.arange(led.size.shape[0]),
            "is_maker": led.is_maker,
            "cross": led.cross,
            "quote": led.quote,
        }
        for k, mk in enumerate(self.venue.markets):
            data[f"size_{mk.name}"] = led.size[:, k]
            data[f"iso_quote_{mk.name}"] = led.iso_quote[:, k]
        return pd.DataFrame(data)

    def summary(self, policy: Mapping[str, float | int]) -> dict[str, float | int]:
        """Return headline totals of the run, in quote units, with the policy's totals."""
        r = self.records
        t_end = self.market.t + 1
        usd = QUOTE_QUANTUMS_PER_UNIT
        if_start = sum(mk.insurance_fund_usd for mk in self.venue.markets)
        index = self.index_path[:t_end]
        mark = r["mark_price"][:t_end]
        return {
            "steps": int(self.market.t),
            "accounts": int((~self.ledger.is_maker).sum()),
            "liquidations": int(r["liquidations"][1:t_end].sum()),
            "liquidated_notional": float(r["liquidated_notional"][1:t_end].sum()),
            "bad_debt": float(r["bad_debt"][1:t_end].sum()),
            "insurance_fund_start": float(if_start),
            "insurance_fund_end": float(self.ledger.insurance.sum() / usd),
            "insurance_paid": float(r["insurance_paid"][1:t_end].sum()),
            "adl_notional": float(r["adl_notional"][1:t_end].sum()),
            "socialized_loss": float(r["socialized"][1:t_end].sum()),
            "keeper_rewards": float(self.ledger.keepers.sum() / usd),
            "unfilled_liquidations": int(r["unfilled"][1:t_end].sum()),
            "orders_rejected": int(r["orders_rejected"][1:t_end].sum()),
            "index_drawdown": float((index.min(axis=0) / index[0] - 1.0).min()),
            "mark_drawdown": float((mark[1:].min(axis=0) / index[0] - 1.0).min())
            if t_end > 1
            else 0.0,
            "conservation_error": int(self.ledger.conservation_error()),
            **policy,
        }
