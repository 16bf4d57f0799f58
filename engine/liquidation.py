"""Liquidation: sizing, execution against the book, penalties, and the loss waterfall.

A breached *unit* is an account's cross pool or one isolated position; a liquidation closes (part
of) one position of it. Keepers reach units in priority order; the units of one market that a
block reaches are planned together as arrays (:class:`Batch`) and executed as a vectorized
prefix, so a cascade of thousands of liquidations costs a handful of numpy calls. Units that
will be deleveraged are deleveraged together, in order; a unit that socializes a loss is
handled on its own at its place in the order and the units after it are planned again. The
result is the same as processing units one at a time (a property test checks it).

Waterfall for a fill with quote proceeds Q and bankruptcy quote BP (dYdX's convention):
``d = Q - BP``. If d >= 0 the account pays a penalty of at most d, split between keeper and
insurance fund. If d < 0 the account is bankrupt on this fill: the insurance fund pays |d| (within
its balance and per-block cap); if it cannot, the market's ``loss_resolution`` decides:
``adl`` offsets the position against opposite-side accounts at the bankruptcy price (dYdX,
Hyperliquid, BitMEX), ``socialized`` fills on the book, lets the fund pay what it can and charges
the rest to every open position pro rata (Drift).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from engine.config import MarketConfig
from engine.events import FEE_POOL, INSURANCE_FUND, KEEPER_BASE, NOBODY, EventKind
from engine.fixedpoint import PPM, mul_ppm
from engine.margin import to_ppm
from engine.state import exact_sum
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64
from engine.venues import drift_v2, dydx_v4


@dataclass(slots=True)
class Batch:
    """Units of one market in the order keepers reach them. Arrays of shape (u,), quote
    quantums unless stated."""

    rows: np.ndarray
    """Account ids."""
    size: np.ndarray
    """Signed position in the market, base quantums."""
    notional: np.ndarray
    value: np.ndarray
    """Signed position value at the mark."""
    position_mm: np.ndarray
    tnc: np.ndarray
    """Total net collateral of the unit's pool (equity, floored)."""
    tmmr: np.ndarray
    """Total maintenance margin of the pool."""
    total_notional: np.ndarray
    """Notional of every position the pool margins."""
    ticks_in_breach: np.ndarray
    mark_q: float
    """Mark price, quote quantums per base quantum."""
    oracle_usd: float
    dsize: np.ndarray | None = None
    """Planned size change (set by :meth:`Liquidator.plan`; depends only on the unit itself)."""
    bankruptcy: np.ndarray | None = None
    """Bankruptcy quote of the planned close."""

    def __len__(self) -> int:
        return int(self.rows.size)

    def take(self, sel) -> Batch:
        """Return the units selected by a mask, index array or slice."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v[sel] if isinstance(v, np.ndarray) else v
        return Batch(**out)

    def shortage(self, buffer_ratio: float) -> np.ndarray:
        """Return Drift's margin shortage, MM + buffer x notional - TNC, at least 0."""
        need = self.tmmr + buffer_ratio * self.total_notional - self.tnc.astype(np.float64)
        return as_int64(np.maximum(0, np.ceil(need)))


class VenueRules:
    """Generic rules: Drift-style sizing to restore margin plus a buffer, dYdX-style block caps."""

    def __init__(self, market: MarketConfig, tick_ms: int) -> None:
        self.market = market
        liq = market.liquidation
        self.penalty_ppm = to_ppm(liq.penalty)
        self.keeper_share_ppm = to_ppm(liq.keeper_share)
        self.min_notional = int(round(liq.min_notional_usd * QUOTE_QUANTUMS_PER_UNIT))
        self.max_portion_ppm = to_ppm(liq.max_portion)
        self.tick_ms = tick_ms

    def block_bounds(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Return (max, min) notional this block may liquidate (dYdX's per-position rule)."""
        return dydx_v4.max_and_min_position_notional_liquidatable_array(
            b.notional, self.min_notional, self.max_portion_ppm
        )

    def target_notional(self, b: Batch) -> np.ndarray:
        """Return the notional to close so that equity >= MM + buffer x notional again (Drift).

        Closing x notional frees x * (mmf + buffer) of requirement and costs x * penalty; a pool
        with no equity left, or rules without partial liquidation, close the whole position.
        """
        liq = self.market.liquidation
        if not liq.partial:
            return b.notional
        mmf = b.position_mm / np.maximum(b.notional, 1)
        net = mmf + liq.buffer_ratio - liq.penalty
        ok = (net > 0) & (b.tnc > 0) & (b.notional > 0)
        target = np.ceil(b.shortage(liq.buffer_ratio) / np.where(ok, net, 1.0))
        return as_int64(np.where(ok, np.minimum(target, b.notional), b.notional))

    def close_notional(self, b: Batch) -> np.ndarray:
        """Return the notional to close now: the target, within the block bounds and the floor."""
        max_liq, min_liq = self.block_bounds(b)
        want = np.minimum(np.maximum(self.target_notional(b), min_liq), max_liq)
        # Never leave a remainder too small to liquidate later.
        rest = b.notional - want
        return np.where(
            (rest > 0) & (rest < self.min_notional) & (max_liq >= b.notional), b.notional, want
        )

    def close_size(self, b: Batch) -> np.ndarray:
        """Return base quantums to close, in [1, |size|]."""
        want = self.close_notional(b)
        q = np.ceil(want / b.mark_q) if b.mark_q > 0 else np.abs(b.size).astype(np.float64)
        return as_int64(np.clip(q, 1, np.abs(b.size)))

    def fees(
        self, b: Batch, quote: np.ndarray, headroom: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (keeper fee, insurance fee), their sum at most ``headroom = max(Q - BP, 0)``."""
        total = np.minimum(mul_ppm(np.abs(quote), self.penalty_ppm, "down"), headroom)
        keeper = mul_ppm(total, self.keeper_share_ppm, "down")
        return keeper, total - keeper

    def accepts_fill(self, b: Batch, fill_q: np.ndarray) -> np.ndarray:
        """Return whether each book fill is within the venue's limit for liquidation orders."""
        return np.ones(len(b), bool)


class DydxRules(VenueRules):
    """dYdX v4: fill no worse than the fillable price; insurance-fund delta as the fee."""

    def close_notional(self, b):
        # dYdX liquidates as much as the per-block limits allow, not just enough.
        return self.block_bounds(b)[0]

    def fees(self, b, quote, headroom):
        # liquidation_insurance_fund_delta with BP = Q - headroom: min(fee x |Q|, d) when d >= 0.
        if_delta = dydx_v4.liquidation_insurance_fund_delta_array(
            quote, quote - headroom, self.penalty_ppm
        )
        if_delta = np.maximum(if_delta, 0)
        keeper = mul_ppm(if_delta, self.keeper_share_ppm, "down")
        return keeper, if_delta - keeper

    def accepts_fill(self, b, fill_q):
        fp = dydx_v4.fillable_price_array(b.size, b.value, b.position_mm, b.tnc, b.tmmr)
        return np.where(b.size > 0, fill_q >= fp, fill_q <= fp)


class DriftRules(VenueRules):
    """Drift v2: base to cover the shortage, liquidator-fee ramp, implied IF fee, time throttle."""

    INITIAL_PCT_TO_LIQUIDATE = 1_000  # 10%, LIQUIDATION_PCT precision
    LIQUIDATION_DURATION_SLOTS = 150
    SLOT_MS = 400

    def __init__(self, market: MarketConfig, tick_ms: int) -> None:
        super().__init__(market, tick_ms)
        self.liquidator_fee = self.penalty_ppm * self.keeper_share_ppm // PPM
        self.max_if_fee = self.penalty_ppm - self.liquidator_fee

    def _drift_terms(self, b: Batch):
        """Return Drift's inputs: oracle price (PRICE precision), MM ratio (MARGIN precision),
        shortage (QUOTE), liquidator fee and IF fee (LIQUIDATION_FEE precision)."""
        price = int(round(b.oracle_usd * drift_v2.PRICE_PRECISION))
        mm_ratio = np.maximum(
            1, b.position_mm * drift_v2.MARGIN_PRECISION // np.maximum(b.notional, 1)
        )
        shortage = b.shortage(self.market.liquidation.buffer_ratio)
        slots = b.ticks_in_breach * self.tick_ms // self.SLOT_MS
        liq_fee = drift_v2.get_liquidation_fee_array(
            self.liquidator_fee, 2 * self.liquidator_fee, slots
        )
        drift_base = np.floor(b.notional * (drift_v2.BASE_PRECISION / max(price, 1)))
        if_fee = drift_v2.calculate_perp_if_fee_array(
            shortage, drift_base, mm_ratio, liq_fee, price, self.max_if_fee
        )
        return price, mm_ratio, shortage, slots, liq_fee, if_fee

    def close_notional(self, b):
        price, mm_ratio, shortage, slots, liq_fee, if_fee = self._drift_terms(b)
        if not self.market.liquidation.partial:
            return b.notional
        base = drift_v2.calculate_base_asset_amount_to_cover_margin_shortage_array(
            shortage, mm_ratio, liq_fee, if_fee, price
        )
        pct = drift_v2.calculate_max_pct_to_liquidate_array(
            shortage, slots, self.INITIAL_PCT_TO_LIQUIDATE, self.LIQUIDATION_DURATION_SLOTS
        )
        with np.errstate(invalid="ignore"):
            notional = np.floor(base * price / drift_v2.BASE_PRECISION)  # QUOTE == quote quantums
            notional = np.floor(notional * pct / drift_v2.LIQUIDATION_PCT_PRECISION)
        full = ~np.isfinite(base) | (b.tnc <= 0)
        notional = np.where(full, b.notional, np.minimum(np.maximum(notional, 1), b.notional))
        return as_int64(notional)

    def fees(self, b, quote, headroom):
        _, _, _, _, liq_fee, if_fee = self._drift_terms(b)
        keeper = mul_ppm(np.abs(quote), liq_fee, "down")
        insurance = mul_ppm(np.abs(quote), if_fee, "down")
        total = keeper + insurance
        # A fee may never push the account past bankruptcy: scale both down to the headroom.
        over = total > headroom
        scaled = as_int64(np.floor(keeper * (headroom / np.maximum(total, 1))))
        keeper = np.where(over, scaled, keeper)
        insurance = np.where(over, headroom - keeper, insurance)
        return keeper, insurance


class HyperliquidRules(VenueRules):
    """Hyperliquid: market orders into the book (20% at a time above $100k); an account whose
    equity has fallen below 2/3 of its maintenance margin is taken over by the backstop
    (liquidator vault, the insurance fund here): its whole position closes and the margin it
    has left above bankruptcy goes to the vault."""

    BACKSTOP_NUMERATOR, BACKSTOP_DENOMINATOR = 2, 3

    def backstop(self, b: Batch) -> np.ndarray:
        """Return where equity < 2/3 x MM (exact integers)."""
        return b.tnc * self.BACKSTOP_DENOMINATOR < b.tmmr * self.BACKSTOP_NUMERATOR

    def close_notional(self, b):
        return np.where(self.backstop(b), b.notional, super().close_notional(b))

    def fees(self, b, quote, headroom):
        keeper, insurance = super().fees(b, quote, headroom)
        insurance = np.where(self.backstop(b), headroom - keeper, insurance)
        return keeper, insurance


RULES = {
    "generic": VenueRules,
    "dydx_v4": DydxRules,
    "drift_v2": DriftRules,
    "hyperliquid": HyperliquidRules,
}


def make_rules(market: MarketConfig, tick_ms: int) -> VenueRules:
    """Return the liquidation rules of a market's venue preset."""
    return RULES[market.venue](market, tick_ms)


STAT_FIELDS = (
    "liquidations",
    "liquidated_notional",
    "bad_debt",
    "insurance_paid",
    "adl_notional",
    "socialized",
    "unfilled",
    "keeper_fees",
    "insurance_fees",
)
"""Per-market tallies of a block: counts (liquidations, unfilled) and quote quantums (the rest)."""


class BlockStats:
    """Per-market tallies of one block: one int64 array (len(STAT_FIELDS), m) with a named view
    per row (``stats.bad_debt[k] += loss``)."""

    __slots__ = ("data", *STAT_FIELDS)
    data: np.ndarray
    liquidations: np.ndarray
    liquidated_notional: np.ndarray
    bad_debt: np.ndarray
    insurance_paid: np.ndarray
    adl_notional: np.ndarray
    socialized: np.ndarray
    unfilled: np.ndarray
    keeper_fees: np.ndarray
    insurance_fees: np.ndarray

    def __init__(self, m: int) -> None:
        self.data = np.zeros((len(STAT_FIELDS), m), np.int64)
        for i, name in enumerate(STAT_FIELDS):
            setattr(self, name, self.data[i])

    @classmethod
    def zeros(cls, m: int) -> BlockStats:
        """Return empty tallies for m markets."""
        return cls(m)


@dataclass(slots=True)
class Plan:
    """What liquidating each unit of a batch would do, given the units before it (arrays (u,))."""

    dsize: np.ndarray
    bankruptcy: np.ndarray
    fill_q: np.ndarray
    taker_usd: np.ndarray
    """Signed quote notional each fill takes from the book."""
    quote: np.ndarray
    d: np.ndarray
    keeper_fee: np.ndarray
    insurance_fee: np.ndarray
    payout: np.ndarray
    """Insurance payout when bankrupt on the fill (d < 0) and the fund can cover it."""
    accepted: np.ndarray
    fast: np.ndarray
    """True where the unit needs nothing beyond the book and the insurance fund."""


class Liquidator:
    """Executes liquidations on a simulation's ledger, book and insurance funds.

    The ADL ranking of each (market, side) is computed every ``ADL_REFRESH_TICKS`` blocks
    (counterparties' live sizes are re-read at each use), and socialized losses are advanced by
    the fee pool at once and charged to all open positions at block end, so a cascade costs
    O(accounts) per block at most.
    """

    def __init__(self, sim) -> None:
        self.sim = sim
        self._adl_rank: dict[tuple[int, int], _Ranking] = {}
        self._pending_social = np.zeros(sim.m, np.int64)
        self.count = 0
        """Liquidations so far; keeper rewards rotate with it."""
        self._scratch: np.ndarray | None = None

    def _mask(self) -> np.ndarray:
        """Return an all-False bool array over accounts, for set tests (kept all-False)."""
        if self._scratch is None:
            self._scratch = np.zeros(self.sim.ledger.size.shape[0], bool)
        return self._scratch

    def begin_block(self) -> None:
        """Refresh the ADL rankings every ``ADL_REFRESH_TICKS`` blocks.

        Venues publish the ADL queue periodically rather than per trade; between refreshes the
        ranking's accounts are re-read live (a position closed or flipped since is skipped, and
        the maker backs up whatever the ranked accounts cannot take).
        """
        if self.sim.t % ADL_REFRESH_TICKS == 0:
            self._adl_rank.clear()

    # ---- state of the units ------------------------------------------------------------------

    def batch(self, rows: np.ndarray, k: int, ticks_in_breach: np.ndarray) -> Batch:
        """Return the current margin state of the pools that margin ``rows`` in market ``k``."""
        sim = self.sim
        led = sim.ledger
        value, notional, mm = sim.margin_rows(rows)
        cross = led.cross[rows]
        tnc = np.where(
            cross, led.quote[rows] + value.sum(axis=1), led.iso_quote[rows, k] + value[:, k]
        )
        return Batch(
            rows=rows,
            size=led.size[rows, k],
            notional=notional[:, k],
            value=as_int64(np.rint(value[:, k])),
            position_mm=mm[:, k],
            tnc=as_int64(np.floor(tnc)),
            tmmr=np.where(cross, mm.sum(axis=1), mm[:, k]),
            total_notional=np.where(cross, notional.sum(axis=1), notional[:, k]),
            ticks_in_breach=ticks_in_breach,
            mark_q=float(sim.mark_q[k]),
            oracle_usd=float(sim.oracle[k]),
        )

    def pool_margin(self, i: int, k: int) -> tuple[int, int]:
        """Return (TNC, TMMR) of the pool that margins account i's position in market k."""
        b = self.batch(np.array([i]), k, np.zeros(1, np.int64))
        return int(b.tnc[0]), int(b.tmmr[0])

    # ---- planning ----------------------------------------------------------------------------

    def plan(self, b: Batch, k: int, off_book: np.ndarray | None = None) -> Plan:
        """Size, price and settle every unit of ``b`` as if each ran after the ones before it.

        ``off_book`` marks units expected to settle without the book or the insurance fund
        (deleveraged, or unfilled): they are priced, but move neither for the units after them.
        """
        sim = self.sim
        rules: VenueRules = sim.rules[k]
        if b.dsize is None or b.bankruptcy is None:
            # Sizing depends on each unit alone, so a re-plan of the same units reuses it.
            dsize = -np.sign(b.size) * rules.close_size(b)
            new_notional = as_int64(np.rint(np.abs((b.size + dsize) * b.mark_q)))
            mm_after = sim.requirements[k].maintenance(
                new_notional, b.size + dsize, sim.margin_context(k)
            )
            mm_after = sim.policy.scale(mm_after[:, None], b.rows, initial=False)[:, 0]
            dnnv = as_int64(np.rint(dsize * b.mark_q))
            bankruptcy = dydx_v4.bankruptcy_price_quote_quantums_array(
                dnnv, mm_after - b.position_mm, b.tnc, b.tmmr
            )
            b.dsize, b.bankruptcy = dsize, bankruptcy
        else:
            dsize, bankruptcy = b.dsize, b.bankruptcy
        sent = None if off_book is None else ~off_book
        fill_q, taker_usd = sim.book_fills(k, dsize, sent)
        quote = as_int64(np.floor(-dsize * fill_q))  # rounded against the account
        d = quote - bankruptcy
        keeper_fee, insurance_fee = rules.fees(b, quote, np.maximum(d, 0))
        payout = np.maximum(-d, 0)
        # The fund before each unit: its balance plus the fees and less the payouts of the units
        # before it; the per-block cap counts payouts only.
        flow = insurance_fee - payout
        paid = payout
        if off_book is not None:
            flow = np.where(off_book, 0, flow)
            paid = np.where(off_book, 0, payout)
        fund_before = int(sim.ledger.insurance[k]) + np.cumsum(flow) - flow
        available = fund_before
        cap = int(sim.if_cap[k])
        if cap > 0:
            paid_before = int(sim.insurance_paid_block[k]) + np.cumsum(paid) - paid
            available = np.minimum(available, cap - paid_before)
        accepted = rules.accepts_fill(b, fill_q)
        fast = accepted & ((d >= 0) | (payout <= available))
        return Plan(
            dsize,
            bankruptcy,
            fill_q,
            taker_usd,
            quote,
            d,
            keeper_fee,
            insurance_fee,
            np.where(d < 0, payout, 0),
            accepted,
            fast,
        )

    # ---- execution ---------------------------------------------------------------------------

    def liquidate_market(
        self, rows: np.ndarray, k: int, ticks_in_breach: np.ndarray, stats: BlockStats
    ) -> None:
        """Liquidate the units ``rows`` of market ``k``, in order, each as far as the rules say.

        The result is the same as liquidating the units one at a time. Units are planned as a
        batch; units that will be deleveraged or stay unfilled are found by re-planning with
        them kept off the book until the expectation holds (``_plan_settled``); the batch is then
        executed in order, fills in vectorized runs, the others one by one. A unit whose
        expectation did not settle, or that socializes a loss (which uses the book and the fund
        beyond the plan), ends the batch after itself; so does an ADL that reaches a later unit.
        """
        adl_market = self.sim.cfg.markets[k].loss_resolution == "adl"
        pending, ticks = rows, ticks_in_breach
        b: Batch | None = None
        while pending.size:
            if b is None:
                b = self.batch(pending, k, ticks)
            live = (b.tmmr > 0) & (b.tnc < b.tmmr) & (b.size != 0)
            if not live.all():  # earlier liquidations in the block may have helped them
                b, pending, ticks = b.take(live), pending[live], ticks[live]
                if not len(b):
                    return
            p, off, settled = self._plan_settled(b, k, adl_market)
            # Units up to ``last`` are planned exactly (each on the state the ones before it
            # leave); the plan of the units after a surprise or a socialized loss is not.
            surprise = np.flatnonzero(~settled | (~p.fast & ~off))
            last = int(surprise[0]) if surprise.size else len(b) - 1
            # Units that will be deleveraged: unfillable with negative equity, or bankrupt
            # beyond the fund in an ADL market.
            deleverage = ~p.fast & ((~p.accepted & (b.tnc < 0)) | (p.accepted & adl_market))
            i = 0
            rebatch = False
            while i <= last:
                if p.fast[i]:
                    j = i
                    while j + 1 <= last and p.fast[j + 1]:
                        j += 1
                    self._execute(b.take(slice(i, j + 1)), _slice(p, i, j + 1), k, stats)
                    i = j + 1
                    continue
                if deleverage[i]:
                    j = i
                    side = np.sign(p.dsize[i])
                    while j + 1 <= last and deleverage[j + 1] and np.sign(p.dsize[j + 1]) == side:
                        j += 1
                    changed = self._deleverage_units(
                        b.take(slice(i, j + 1)), _slice(p, i, j + 1), k, stats
                    )
                    i = j + 1
                else:
                    changed = self._waterfall(b.take(slice(i, i + 1)), _at(p, i), k, stats)
                    i += 1
                if changed.size and _intersects(pending[i:], changed, self._mask()):
                    rebatch = True  # ADL reached a later unit: its margin state is stale
                    break
            pending, ticks = pending[i:], ticks[i:]
            b = None if rebatch else b.take(slice(i, None))

    def _plan_settled(
        self, b: Batch, k: int, adl_market: bool
    ) -> tuple[Plan, np.ndarray, np.ndarray]:
        """Return (plan, units kept off the book, units whose expectation held).

        Re-plans (at most four times) until the units expected to settle off the book are
        exactly those the plan finds unfilled or, in an ADL market, bankrupt beyond the fund.
        """
        off = np.zeros(len(b), bool)
        for attempt in range(4):
            p = self.plan(b, k, off)
            found = ~p.fast & (~p.accepted | adl_market)
            if (found == off).all() or attempt == 3:
                return p, off, found == off
            off = found
        raise AssertionError("unreachable")

    def _execute(self, b: Batch, p: Plan, k: int, stats: BlockStats) -> None:
        """Fill the units on the book and settle penalties and insurance payouts, vectorized."""
        sim = self.sim
        led = sim.ledger
        t = sim.t
        rows = b.rows
        u = len(b)
        led.trade(rows, k, p.dsize, p.quote)
        led.trade_one(sim.maker, k, -int(p.dsize.sum()), -int(p.quote.sum()))
        if sim.liquidation_impact:
            sim.book.consume(k, p.taker_usd)
        sim.events.add(t, EventKind.LIQUIDATION, rows, k, sim.maker, p.dsize, p.quote, p.fill_q)
        keepers = (self.count + np.arange(u)) % led.keepers.size
        self.count += u
        fees = p.keeper_fee + p.insurance_fee
        if fees.any():
            led.credit(rows, k, -fees)
            led.pay_keepers(keepers, p.keeper_fee)
            led.add_insurance(k, exact_sum(p.insurance_fee))
            kf = p.keeper_fee > 0
            sim.events.add(
                t,
                EventKind.KEEPER_FEE,
                rows[kf],
                k,
                KEEPER_BASE - keepers[kf],
                0,
                -p.keeper_fee[kf],
            )
            inf = p.insurance_fee > 0
            sim.events.add(
                t, EventKind.INSURANCE_FEE, rows[inf], k, INSURANCE_FUND, 0, -p.insurance_fee[inf]
            )
        bankrupt = p.d < 0
        if bankrupt.any():
            paid = exact_sum(p.payout)
            led.credit(rows[bankrupt], k, p.payout[bankrupt])
            led.add_insurance(k, -paid)
            sim.insurance_paid_block[k] += paid
            sim.events.add(
                t,
                EventKind.BAD_DEBT,
                rows[bankrupt],
                k,
                NOBODY,
                0,
                p.d[bankrupt],
                p.fill_q[bankrupt],
            )
            sim.events.add(
                t,
                EventKind.INSURANCE_PAYOUT,
                rows[bankrupt],
                k,
                INSURANCE_FUND,
                0,
                p.payout[bankrupt],
            )
            stats.bad_debt[k] += paid
            stats.insurance_paid[k] += paid
        stats.liquidations[k] += u
        stats.liquidated_notional[k] += int(np.abs(p.quote).sum())
        stats.keeper_fees[k] += int(p.keeper_fee.sum())
        stats.insurance_fees[k] += int(p.insurance_fee.sum())

    def _deleverage_units(self, b: Batch, p: Plan, k: int, stats: BlockStats) -> np.ndarray:
        """Record the bad debt of units that will be deleveraged and deleverage them together."""
        sim = self.sim
        bad = p.d < 0
        if bad.any():
            stats.bad_debt[k] += int(-p.d[bad].sum())
            sim.events.add(
                sim.t, EventKind.BAD_DEBT, b.rows[bad], k, NOBODY, 0, p.d[bad], p.fill_q[bad]
            )
        return self._deleverage_many(b.rows, k, p.dsize, p.bankruptcy, stats)

    def _waterfall(self, b: Batch, p: Plan, k: int, stats: BlockStats) -> np.ndarray:
        """Handle one unit that is neither filled within the fund nor deleveraged: an order the
        venue will not fill (the unit waits for a later block), or a bankruptcy beyond the fund
        in a market that socializes losses. Returns the other accounts whose positions it
        changed (none: deleveraging goes through :meth:`_deleverage_units`)."""
        sim = self.sim
        t = sim.t
        i = int(b.rows[0])
        dsize, d = int(p.dsize[0]), int(p.d[0])
        fill_q = float(p.fill_q[0])
        if not p.accepted[0]:
            sim.events.add_one(t, EventKind.LIQUIDATION_UNFILLED, i, k, NOBODY, dsize, 0, fill_q)
            stats.unfilled[k] += 1
            return _NONE
        loss = -d
        stats.bad_debt[k] += loss
        sim.events.add_one(t, EventKind.BAD_DEBT, i, k, NOBODY, 0, d, fill_q)
        available = sim.insurance_available(k)
        # Filled on the book with no penalty (there is nothing left to take) and no payout yet.
        none = np.zeros(1, np.int64)
        no_fees = replace(p, d=none, keeper_fee=none, insurance_fee=none, payout=none)
        self._execute(b, no_fees, k, stats)
        if available > 0:
            sim.ledger.add_insurance(k, -available)
            sim.ledger.credit_one(i, k, available)
            sim.insurance_paid_block[k] += available
            sim.events.add_one(t, EventKind.INSURANCE_PAYOUT, i, k, INSURANCE_FUND, 0, available)
            stats.insurance_paid[k] += available
        self._socialize(i, k, loss - available, stats)
        return _NONE

    def _adl_ranking(self, k: int, side: int, count: int) -> np.ndarray:
        """Return at least the ``count`` best ADL candidates holding ``side`` in market k, best
        first (all of them when there are fewer).

        Ranked by profit x leverage for winners and profit / leverage for losers (BitMEX /
        Hyperliquid); ties by account id. Scores are computed once per block and side; only the
        prefix that deleveraging reaches is sorted (a partition finds it), so a block's ADL
        costs O(accounts), not O(accounts log accounts), however deep the book of candidates.
        """
        key = (k, side)
        cached = self._adl_rank.get(key)
        if cached is None:
            sim = self.sim
            led = sim.ledger
            col = led.size[:, k]
            cand = np.flatnonzero((np.sign(col) == side) & ~led.is_maker)
            value = col[cand] * sim.mark_q[k]
            entry = led.entry[cand, k]
            pnl_ratio = (value - entry) / np.maximum(np.abs(entry), 1.0)
            equity = np.maximum(sim.pool_equity(cand, k), 1.0)
            leverage = np.maximum(np.abs(value) / equity, 1e-12)
            score = np.where(pnl_ratio > 0, pnl_ratio * leverage, pnl_ratio / leverage)
            cached = _Ranking(cand, -score, np.empty(0, np.int64))
            self._adl_rank[key] = cached
        cand, neg_score, prefix = cached.accounts, cached.neg_score, cached.prefix
        if prefix.size >= min(count, cand.size):
            return prefix
        if count >= cand.size:
            sel = np.arange(cand.size)
        else:
            # Everything at least as good as the count-th best, ties included, so the sorted
            # prefix is exactly the head of the full ranking.
            kth = np.partition(neg_score, count - 1)[count - 1]
            sel = np.flatnonzero(neg_score <= kth)
        prefix = cand[sel][np.lexsort((cand[sel], neg_score[sel]))]
        cached.prefix = prefix
        return prefix

    def _deleverage_many(
        self,
        rows: np.ndarray,
        k: int,
        dsizes: np.ndarray,
        bankruptcies: np.ndarray,
        stats: BlockStats,
    ) -> np.ndarray:
        """Offset each unit's ``dsize`` against opposite-side accounts at its bankruptcy price,
        in order, exactly as deleveraging them one after another would.

        All units close the same side. The best-ranked opposite positions are reduced first and
        the market maker takes what they cannot; unit u takes the part of the queue after what
        the units before it took. Each counterparty pays its share of the unit's bankruptcy
        quote (float shares, since bankruptcy x takes overflows int64); the unit's last
        counterparty takes the remainder, so every bankrupt account receives exactly its
        bankruptcy quote. Returns the counterparties.
        """
        sim = self.sim
        led = sim.ledger
        side_closed = -1 if dsizes[0] > 0 else 1  # side of the bankrupt positions
        needs = np.abs(dsizes).astype(np.int64)
        ends = np.cumsum(needs)  # unit u covers [ends[u] - needs[u], ends[u]) of the queue
        total = int(ends[-1])
        col = led.size[:, k]
        # Grow the head of the ranking until it covers every unit's need (usually a few accounts).
        count = 64
        while True:
            ranked = self._adl_ranking(k, -side_closed, count)
            live = col[ranked]
            avail = np.where(np.sign(live) == -side_closed, np.abs(live), 0)
            covered = np.cumsum(avail)
            have = int(covered[-1]) if covered.size else 0
            if have >= total or ranked.size < count:
                break
            count *= 4
        # Cut the queue where a unit's need or an account's position ends: each piece is one
        # (unit, counterparty) take; beyond what ranked accounts hold, the maker takes.
        cuts = np.unique(np.concatenate([[0], ends, np.minimum(covered, total)]))
        start, stop = cuts[:-1], cuts[1:]
        unit = np.searchsorted(ends, start, side="right")
        slot = np.searchsorted(covered, start, side="right")
        who = np.where(
            start < have,
            ranked[np.minimum(slot, max(ranked.size - 1, 0))] if ranked.size else sim.maker,
            sim.maker,
        )
        takes = (stop - start).astype(np.int64)
        shares = as_int64(np.floor(bankruptcies[unit] * (takes / needs[unit])))
        last = np.r_[unit[1:] != unit[:-1], True]
        paid = np.zeros(rows.size, np.int64)
        np.add.at(paid, unit[~last], shares[~last])
        shares[last] = bankruptcies[unit[last]] - paid[unit[last]]
        # One trade per counterparty (a counterparty reached by several units trades once, with
        # the sum: the same sizes and balances as one trade per unit).
        chosen, inverse = np.unique(who, return_inverse=True)
        dsize_total = np.zeros(chosen.size, np.int64)
        dquote_total = np.zeros(chosen.size, np.int64)
        np.add.at(dsize_total, inverse, side_closed * takes)
        np.add.at(dquote_total, inverse, -shares)
        led.trade(chosen, k, dsize_total, dquote_total)
        led.trade(rows, k, dsizes, bankruptcies)
        self.count += rows.size
        prices = np.abs(bankruptcies) / needs
        t = sim.t
        sim.events.add(t, EventKind.ADL, rows, k, NOBODY, dsizes, bankruptcies, prices)
        sim.events.add(
            t, EventKind.ADL, who, k, rows[unit], side_closed * takes, -shares, prices[unit]
        )
        notional = int(np.abs(bankruptcies).sum())
        stats.adl_notional[k] += notional
        stats.liquidations[k] += rows.size
        stats.liquidated_notional[k] += notional
        return chosen

    def _socialize(self, i, k, loss, stats: BlockStats) -> None:
        """Make account i whole for ``loss`` now; charge every open position at block end (Drift).

        The fee pool advances the amount (Drift's waterfall also draws on it before
        socializing) and is repaid by :meth:`end_block`.
        """
        sim = self.sim
        sim.ledger.credit_one(i, k, loss)
        sim.ledger.add_fee_pool(k, -loss)
        self._pending_social[k] += loss
        sim.events.add_one(sim.t, EventKind.SOCIALIZED_LOSS, i, k, FEE_POOL, 0, loss)
        stats.socialized[k] += loss

    def end_block(self) -> None:
        """Charge this block's socialized losses to all open positions, pro rata to base size."""
        sim = self.sim
        led = sim.ledger
        for k in np.nonzero(self._pending_social)[0]:
            loss = int(self._pending_social[k])
            self._pending_social[k] = 0
            col = led.size[:, k]
            holders = np.nonzero(col)[0]
            exponent = sim.cfg.markets[k].base_quantum_exponent
            drift_base = _to_drift_base(col[holders], exponent)
            longs = int(drift_base[drift_base > 0].sum())
            shorts = int(drift_base[drift_base < 0].sum())
            delta = drift_v2.calculate_funding_rate_deltas_to_resolve_bankruptcy(
                -loss, longs, shorts
            )
            # Every holder pays ceil(|base| x delta); the rounding surplus stays in the fee pool.
            # With no open position left, the fee pool keeps the loss (a visible deficit).
            pays = drift_v2.socialized_loss_payments_array(loss, drift_base, delta)
            led.credit(holders, k, -pays)
            led.add_fee_pool(k, exact_sum(pays))
            sim.events.add_one(
                sim.t,
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


_NONE = np.empty(0, np.int64)
ADL_REFRESH_TICKS = 4


@dataclass(slots=True)
class _Ranking:
    """ADL candidates of one (market, side) in a block: their negated scores and the sorted
    head of the ranking computed so far."""

    accounts: np.ndarray
    neg_score: np.ndarray
    prefix: np.ndarray


def _intersects(a: np.ndarray, b: np.ndarray, scratch: np.ndarray) -> bool:
    """Return whether two id arrays share an element (O(len) with a reusable bool mask)."""
    scratch[b] = True
    hit = bool(scratch[a].any())
    scratch[b] = False
    return hit


def _slice(p: Plan, i: int, j: int) -> Plan:
    return Plan(*(getattr(p, f.name)[i:j] for f in fields(p)))


def _at(p: Plan, j: int) -> Plan:
    return Plan(*(getattr(p, f.name)[j : j + 1] for f in fields(p)))
