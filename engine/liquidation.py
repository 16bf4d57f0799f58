"""Liquidation: sizing, execution against the book, penalties, and the loss waterfall.

One breached *unit* (an account's cross pool, or one isolated position) is liquidated at a time;
the step loop calls :meth:`Liquidator.liquidate` only for the few units keepers reach in a block,
so the Python here runs per liquidation, never per account.

Waterfall for a fill with quote proceeds Q and bankruptcy quote BP (dYdX's convention):
``d = Q - BP``. If d >= 0 the account pays a penalty of at most d, split between keeper and
insurance fund. If d < 0 the account is bankrupt on this fill: the insurance fund pays |d| (within
its balance and per-block cap); if it cannot, the market's ``loss_resolution`` decides:
``adl`` offsets the position against opposite-side accounts at the bankruptcy price (dYdX,
Hyperliquid, BitMEX), ``socialized`` fills on the book, lets the fund pay what it can and charges
the rest to every open position pro rata (Drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.config import MarketConfig
from engine.events import FEE_POOL, INSURANCE_FUND, KEEPER_BASE, NOBODY, EventKind
from engine.fixedpoint import PPM
from engine.margin import to_ppm
from engine.units import QUOTE_QUANTUMS_PER_UNIT
from engine.venues import drift_v2, dydx_v4


@dataclass(frozen=True, slots=True)
class Position:
    """What the rules need to know about the position being liquidated (quote quantums)."""

    size: int
    """Signed base quantums."""
    mark_q: float
    """Mark price, quote quantums per base quantum."""
    oracle_usd: float
    notional: int
    value: int
    """Signed value at the mark."""
    position_mm: int
    total_net_collateral: int
    total_mm: int
    total_notional: int
    """Notional of every position the pool margins."""
    ticks_in_breach: int

    def shortage(self, buffer_ratio: float) -> int:
        """Return Drift's margin shortage: MM + buffer x notional - TNC, at least 0."""
        need = self.total_mm + buffer_ratio * self.total_notional - self.total_net_collateral
        return max(0, int(math.ceil(need)))


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

    def block_bounds(self, pos: Position) -> tuple[int, int]:
        """Return (max, min) notional this block may liquidate (dYdX's per-position rule)."""
        return dydx_v4.max_and_min_position_notional_liquidatable(
            pos.notional, self.min_notional, self.max_portion_ppm
        )

    def target_notional(self, pos: Position) -> int:
        """Return the notional to close so that equity >= MM + buffer x notional again (Drift)."""
        liq = self.market.liquidation
        if not liq.partial or pos.total_net_collateral <= 0 or pos.notional == 0:
            return pos.notional
        mmf = pos.position_mm / pos.notional
        # Closing x notional frees x * (mmf + buffer) of requirement and costs x * penalty.
        net = mmf + liq.buffer_ratio - liq.penalty
        if net <= 0:
            return pos.notional
        return int(math.ceil(pos.shortage(liq.buffer_ratio) / net))

    def close_notional(self, pos: Position) -> int:
        """Return the notional to close now: the target, within the block bounds and the floor."""
        max_liq, min_liq = self.block_bounds(pos)
        want = min(max(self.target_notional(pos), min_liq), max_liq)
        # Never leave a remainder too small to liquidate later.
        if 0 < pos.notional - want < self.min_notional and max_liq >= pos.notional:
            want = pos.notional
        return want

    def close_size(self, pos: Position) -> int:
        """Return base quantums to close, in [1, |size|]."""
        want = self.close_notional(pos)
        q = int(math.ceil(want / pos.mark_q)) if pos.mark_q > 0 else abs(pos.size)
        return max(1, min(abs(pos.size), q))

    def fees(self, pos: Position, quote: int, bankruptcy: int) -> tuple[int, int]:
        """Return (keeper fee, insurance fee) for a fill with ``quote - bankruptcy >= 0``."""
        d = quote - bankruptcy
        total = min(abs(quote) * self.penalty_ppm // PPM, d)
        keeper = total * self.keeper_share_ppm // PPM
        return keeper, total - keeper

    def accepts_fill(self, pos: Position, fill_q: float) -> bool:
        """Return whether the book fill is within the venue's limit for liquidation orders."""
        return True


class DydxRules(VenueRules):
    """dYdX v4: fill no worse than the fillable price; insurance-fund delta as the fee."""

    def close_notional(self, pos: Position) -> int:
        # dYdX liquidates as much as the per-block limits allow, not just enough.
        return self.block_bounds(pos)[0]

    def fees(self, pos, quote, bankruptcy):
        if_delta = dydx_v4.liquidation_insurance_fund_delta(quote, bankruptcy, self.penalty_ppm)
        keeper = if_delta * self.keeper_share_ppm // PPM
        return keeper, if_delta - keeper

    def accepts_fill(self, pos, fill_q):
        fp = dydx_v4.fillable_price(
            pos.size, pos.value, pos.position_mm, pos.total_net_collateral, pos.total_mm,
            dydx_v4.BANKRUPTCY_ADJUSTMENT_PPM, dydx_v4.SPREAD_TO_MAINTENANCE_MARGIN_RATIO_PPM,
        )
        return fill_q >= fp if pos.size > 0 else fill_q <= fp


class DriftRules(VenueRules):
    """Drift v2: base to cover the shortage, liquidator-fee ramp, implied IF fee, time throttle."""

    INITIAL_PCT_TO_LIQUIDATE = 1_000  # 10%, LIQUIDATION_PCT precision
    LIQUIDATION_DURATION_SLOTS = 150
    SLOT_MS = 400

    def __init__(self, market: MarketConfig, tick_ms: int) -> None:
        super().__init__(market, tick_ms)
        self.liquidator_fee = self.penalty_ppm * self.keeper_share_ppm // PPM
        self.max_if_fee = self.penalty_ppm - self.liquidator_fee

    def _drift_units(self, pos: Position) -> tuple[int, int, int]:
        """Return (oracle price in PRICE precision, position MM ratio in MARGIN precision,
        margin shortage with buffer in QUOTE precision)."""
        price = int(round(pos.oracle_usd * drift_v2.PRICE_PRECISION))
        mm_ratio = max(1, pos.position_mm * drift_v2.MARGIN_PRECISION // max(pos.notional, 1))
        return price, mm_ratio, pos.shortage(self.market.liquidation.buffer_ratio)

    def liquidator_fee_now(self, pos: Position) -> int:
        slots = pos.ticks_in_breach * self.tick_ms // self.SLOT_MS
        return drift_v2.get_liquidation_fee(
            self.liquidator_fee, 2 * self.liquidator_fee, 0, slots
        )

    def close_notional(self, pos):
        price, mm_ratio, shortage = self._drift_units(pos)
        if pos.total_net_collateral <= 0 or not self.market.liquidation.partial:
            return pos.notional
        liq_fee = self.liquidator_fee_now(pos)
        drift_base = abs(pos.notional) * drift_v2.BASE_PRECISION // max(price, 1)
        if_fee = drift_v2.calculate_perp_if_fee(
            shortage, drift_base, mm_ratio, liq_fee, price, drift_v2.PRICE_PRECISION, self.max_if_fee
        )
        base = drift_v2.calculate_base_asset_amount_to_cover_margin_shortage(
            shortage, mm_ratio, liq_fee, if_fee, price
        )
        if base >= drift_v2.U128_MAX:
            return pos.notional
        pct = drift_v2.calculate_max_pct_to_liquidate(
            shortage,
            pos.ticks_in_breach * self.tick_ms // self.SLOT_MS,
            0,
            self.INITIAL_PCT_TO_LIQUIDATE,
            self.LIQUIDATION_DURATION_SLOTS,
        )
        notional = base * price // drift_v2.BASE_PRECISION  # QUOTE precision == quote quantums
        notional = max(notional * pct // drift_v2.LIQUIDATION_PCT_PRECISION, 1)
        return min(pos.notional, notional)

    def fees(self, pos, quote, bankruptcy):
        price, mm_ratio, shortage = self._drift_units(pos)
        liq_fee = self.liquidator_fee_now(pos)
        drift_base = abs(pos.notional) * drift_v2.BASE_PRECISION // max(price, 1)
        if_fee = drift_v2.calculate_perp_if_fee(
            shortage, drift_base, mm_ratio, liq_fee, price, drift_v2.PRICE_PRECISION, self.max_if_fee
        )
        keeper = abs(quote) * liq_fee // PPM
        insurance = abs(quote) * if_fee // PPM
        d = quote - bankruptcy
        if keeper + insurance > d:  # a fee may never push the account past bankruptcy
            keeper = keeper * d // (keeper + insurance)
            insurance = d - keeper
        return keeper, insurance


RULES = {"generic": VenueRules, "dydx_v4": DydxRules, "drift_v2": DriftRules, "hyperliquid": VenueRules}


def make_rules(market: MarketConfig, tick_ms: int) -> VenueRules:
    """Return the liquidation rules of a market's venue preset."""
    return RULES[market.venue](market, tick_ms)


@dataclass(slots=True)
class BlockStats:
    """Per-market tallies of one block, int64/float64 arrays of shape (m,)."""

    liquidations: np.ndarray
    liquidated_notional: np.ndarray
    bad_debt: np.ndarray
    insurance_paid: np.ndarray
    adl_notional: np.ndarray
    socialized: np.ndarray
    unfilled: np.ndarray
    keeper_fees: np.ndarray
    insurance_fees: np.ndarray

    @classmethod
    def zeros(cls, m: int) -> BlockStats:
        """Return empty tallies for m markets."""
        return cls(*(np.zeros(m, np.int64) for _ in range(9)))


class Liquidator:
    """Executes liquidations on a simulation's ledger, book and insurance funds.

    Two pieces of work are batched per block rather than per liquidation, so a cascade costs
    O(liquidations) plus O(accounts) once per block: the ADL ranking of each (market, side) is
    computed once per block (counterparties' live sizes are re-read at each use), and socialized
    losses are advanced by the fee pool at once and charged to all open positions at block end.
    """

    def __init__(self, sim) -> None:
        self.sim = sim
        self._adl_rank: dict[tuple[int, int], np.ndarray] = {}
        self._pending_social = np.zeros(sim.m, np.int64)

    def begin_block(self) -> None:
        """Forget last block's ADL rankings."""
        self._adl_rank.clear()

    # ---- helpers -------------------------------------------------------------------------------

    def pool_margin(
        self, i: int, k: int, mark_q: np.ndarray
    ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """Return (TNC, TMMR, per-market MM, per-market value) of the pool holding (i, k)."""
        sim = self.sim
        led = sim.ledger
        sizes = led.size[i]
        value = sizes * mark_q
        mm = np.zeros(len(sizes), np.int64)
        for j in np.nonzero(sizes)[0]:
            mm[j] = self._mm_of(int(j), int(sizes[j]), float(mark_q[j]))
        if led.cross[i]:
            tnc = int(led.quote[i]) + float(value.sum())
            tmmr = int(mm.sum())
        else:
            tnc = int(led.iso_quote[i, k]) + float(value[k])
            tmmr = int(mm[k])
        return int(math.floor(tnc)), tmmr, mm, value

    def _mm_of(self, k: int, size: int, mark_q: float) -> int:
        sim = self.sim
        notional = np.array([int(round(abs(size) * mark_q))], np.int64)
        return int(
            sim.requirements[k].requirements(
                notional, np.array([size], np.int64), sim.margin_context(k)
            )[1][0]
        )

    # ---- one liquidation ---------------------------------------------------------------------

    def liquidate(self, i: int, k: int, keeper: int, ticks_in_breach: int, stats: BlockStats) -> bool:
        """Liquidate account ``i``'s position in market ``k`` (part or whole). Return True if done."""
        sim = self.sim
        led = sim.ledger
        events = sim.events
        t = sim.t
        mark_q = sim.mark_q
        s = int(led.size[i, k])
        if s == 0:
            return False
        tnc, tmmr, mm, value = self.pool_margin(i, k, mark_q)
        if not (tmmr > 0 and tnc < tmmr):
            return False  # no longer liquidatable (an earlier liquidation in the block helped it)
        rules: VenueRules = sim.rules[k]
        pos = Position(
            size=s,
            mark_q=float(mark_q[k]),
            oracle_usd=float(sim.oracle[k]),
            notional=int(round(abs(value[k]))),
            value=int(round(value[k])),
            position_mm=int(mm[k]),
            total_net_collateral=tnc,
            total_mm=tmmr,
            total_notional=int(round(float(np.abs(value).sum() if led.cross[i] else abs(value[k])))),
            ticks_in_breach=ticks_in_breach,
        )
        sign = 1 if s > 0 else -1
        delta = rules.close_size(pos)  # base quantums, > 0
        dsize = -sign * delta
        dnnv = int(round(dsize * pos.mark_q))
        dmmr = self._mm_of(k, s + dsize, pos.mark_q) - pos.position_mm
        bankruptcy = dydx_v4.bankruptcy_price_quote_quantums(dnnv, dmmr, tnc, tmmr)
        fill_q, impact = sim.book_fill(k, dsize)
        quote = int(math.floor(-dsize * fill_q))  # rounded against the liquidated account
        d = quote - bankruptcy
        market = sim.cfg.markets[k]

        if not rules.accepts_fill(pos, fill_q):
            if tnc >= 0:
                events.add_one(t, EventKind.LIQUIDATION_UNFILLED, i, k, NOBODY, dsize, 0, fill_q)
                stats.unfilled[k] += 1
                return False
            # dYdX: an order that cannot fill for an account with negative equity is deleveraged.
            if d < 0:
                stats.bad_debt[k] += -d
                events.add_one(t, EventKind.BAD_DEBT, i, k, NOBODY, 0, d, fill_q)
            self._deleverage(i, k, dsize, bankruptcy, stats)
            return True

        if d >= 0:
            keeper_fee, insurance_fee = rules.fees(pos, quote, bankruptcy)
            self._book_trade(i, k, dsize, quote, fill_q, impact, stats)
            if keeper_fee:
                led.credit_one(i, k, -keeper_fee)
                led.keepers[keeper] += keeper_fee
                events.add_one(t, EventKind.KEEPER_FEE, i, k, KEEPER_BASE - keeper, 0, -keeper_fee)
                stats.keeper_fees[k] += keeper_fee
            if insurance_fee:
                led.credit_one(i, k, -insurance_fee)
                led.insurance[k] += insurance_fee
                events.add_one(t, EventKind.INSURANCE_FEE, i, k, INSURANCE_FUND, 0, -insurance_fee)
                stats.insurance_fees[k] += insurance_fee
            return True

        loss = -d
        available = sim.insurance_available(k)
        stats.bad_debt[k] += loss
        events.add_one(t, EventKind.BAD_DEBT, i, k, NOBODY, 0, -loss, fill_q)
        if available >= loss:
            self._book_trade(i, k, dsize, quote, fill_q, impact, stats)
            self._insurance_pays(i, k, loss, stats)
        elif market.loss_resolution == "adl":
            self._deleverage(i, k, dsize, bankruptcy, stats)
        else:
            self._book_trade(i, k, dsize, quote, fill_q, impact, stats)
            if available > 0:
                self._insurance_pays(i, k, available, stats)
            self._socialize(i, k, loss - available, stats)
        return True

    # ---- the pieces ----------------------------------------------------------------------------

    def _book_trade(self, i, k, dsize, quote, fill_q, impact, stats: BlockStats) -> None:
        sim = self.sim
        led = sim.ledger
        led.trade_one(i, k, dsize, quote)
        led.trade_one(sim.maker, k, -dsize, -quote)
        sim.apply_impact(k, impact)
        sim.events.add_one(sim.t, EventKind.LIQUIDATION, i, k, sim.maker, dsize, quote, fill_q)
        stats.liquidations[k] += 1
        stats.liquidated_notional[k] += abs(quote)

    def _insurance_pays(self, i, k, amount, stats: BlockStats) -> None:
        sim = self.sim
        sim.ledger.insurance[k] -= amount
        sim.ledger.credit_one(i, k, amount)
        sim.insurance_paid_block[k] += amount
        sim.events.add_one(sim.t, EventKind.INSURANCE_PAYOUT, i, k, INSURANCE_FUND, 0, amount)
        stats.insurance_paid[k] += amount

    def _adl_ranking(self, k: int, side: int) -> np.ndarray:
        """Return accounts holding ``side`` in market k, best ADL candidates first.

        Ranked by profit x leverage for winners and profit / leverage for losers (BitMEX /
        Hyperliquid); ties by account id. Computed once per block and side.
        """
        key = (k, side)
        ranked = self._adl_rank.get(key)
        if ranked is not None:
            return ranked
        sim = self.sim
        led = sim.ledger
        col = led.size[:, k]
        cand = np.nonzero((np.sign(col) == side) & ~led.is_maker)[0]
        value = col[cand] * sim.mark_q[k]
        entry = led.entry[cand, k]
        pnl_ratio = (value - entry) / np.maximum(np.abs(entry), 1.0)
        leverage = np.maximum(np.abs(value) / np.maximum(sim.unit_equity(cand, k), 1.0), 1e-12)
        score = np.where(pnl_ratio > 0, pnl_ratio * leverage, pnl_ratio / leverage)
        ranked = cand[np.lexsort((cand, -score))]
        self._adl_rank[key] = ranked
        return ranked

    def _deleverage(self, i, k, dsize, bankruptcy, stats: BlockStats) -> None:
        """Offset ``dsize`` of account i against opposite-side accounts at the bankruptcy price.

        The best-ranked opposite positions are reduced first; the market maker takes what they
        cannot.
        """
        sim = self.sim
        led = sim.ledger
        side_closed = -1 if dsize > 0 else 1  # side of the bankrupt position
        ranked = self._adl_ranking(k, -side_closed)
        ranked = ranked[ranked != i]
        need = abs(dsize)
        col = led.size[:, k]
        chosen = np.empty(0, np.int64)
        takes = np.empty(0, np.int64)
        # Walk the ranking in growing chunks: a block's ADL usually needs only the first few.
        start, chunk = 0, 64
        left = need
        while left > 0 and start < ranked.size:
            part = ranked[start : start + chunk]
            live = col[part]
            avail = np.where(np.sign(live) == -side_closed, np.abs(live), 0)
            take = np.minimum(avail, np.maximum(left - (np.cumsum(avail) - avail), 0))
            sel = take > 0
            chosen = np.append(chosen, part[sel])
            takes = np.append(takes, take[sel])
            left -= int(take.sum())
            start += chunk
            chunk *= 4
        if left > 0:
            chosen = np.append(chosen, sim.maker)
            takes = np.append(takes, left)
        # Each counterparty pays its share of the bankruptcy quote (float shares, since
        # bankruptcy x takes overflows int64); the last takes the remainder so the account
        # receives exactly ``bankruptcy``.
        shares = np.floor(bankruptcy * (takes / need)).astype(np.int64)
        shares[-1] = bankruptcy - int(shares[:-1].sum())
        led.trade(chosen, k, side_closed * takes, -shares)
        led.trade_one(i, k, dsize, bankruptcy)
        price = abs(bankruptcy) / need
        t = sim.t
        sim.events.add_one(t, EventKind.ADL, i, k, NOBODY, dsize, bankruptcy, price)
        sim.events.add(t, EventKind.ADL, chosen, k, i, side_closed * takes, -shares, price)
        stats.adl_notional[k] += abs(bankruptcy)
        stats.liquidations[k] += 1
        stats.liquidated_notional[k] += abs(bankruptcy)

    def _socialize(self, i, k, loss, stats: BlockStats) -> None:
        """Make account i whole for ``loss`` now; charge every open position at block end (Drift).

        The fee pool advances the amount (Drift's waterfall also draws on it before
        socializing) and is repaid by :meth:`end_block`.
        """
        sim = self.sim
        sim.ledger.credit_one(i, k, loss)
        sim.ledger.fee_pool[k] -= loss
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
            delta = drift_v2.calculate_funding_rate_deltas_to_resolve_bankruptcy(-loss, longs, shorts)
            # Every holder pays ceil(|base| x delta); the rounding surplus stays in the fee pool.
            # With no open position left, the fee pool keeps the loss (a visible deficit).
            pays = drift_v2.socialized_loss_payments_array(loss, drift_base, delta)
            led.credit(holders, k, -pays)
            led.fee_pool[k] += int(pays.sum())
            sim.events.add_one(
                sim.t, EventKind.SOCIALIZED_LOSS, NOBODY, int(k), FEE_POOL, 0, -int(pays.sum()),
                delta / 1e9,
            )


def _to_drift_base(size: np.ndarray, exponent: int) -> np.ndarray:
    shift = 9 + exponent
    if shift >= 0:
        return size * 10**shift
    return np.sign(size) * (np.abs(size) // 10**-shift)
