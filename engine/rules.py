"""Each venue's liquidation rules: how much of a breached unit to close, and the penalty.

A :class:`Batch` is the margin state of the units of one market that keepers reach in a block;
a rules object turns it into sizes and fees, depending on each unit alone (so a re-plan of the
same units reuses the sizes). The rules are built once per market (see
:class:`engine.venue.VenueModel`) and never change during a run. The venues' own formula
functions live in :mod:`engine.venues`; this module applies them to batches.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction

import numpy as np

from engine.config import MarketConfig
from engine.fixedpoint import PPM, mul_ppm
from engine.margin import to_ppm
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
    negative_pnl: np.ndarray
    """Sum of the pool's negative unrealized PnL (<= 0, float quote quantums)."""
    mark_q: float
    """Mark price, quote quantums per base quantum."""
    oracle_usd: float
    dsize: np.ndarray | None = None
    """Planned size change (set by :meth:`Liquidator.plan`; depends only on the unit itself)."""
    bankruptcy: np.ndarray | None = None
    """Bankruptcy quote of the planned close."""

    def __len__(self) -> int:
        return int(self.rows.size)

    def take(self, sel: np.ndarray | slice) -> Batch:
        """Return the units selected by a mask, index array or slice."""
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v[sel] if isinstance(v, np.ndarray) else v
        return Batch(**out)  # type: ignore[arg-type]

    def shortage(self, buffer_ratio: float, buffer_on_losses: bool = False) -> np.ndarray:
        """Return the margin shortage, MM + buffer x notional - TNC, at least 0; with
        ``buffer_on_losses``, Drift's: total collateral also loses buffer x each position's
        negative PnL (``TC_plus_buffer``, state/margin_calculation.rs)."""
        tc = self.tnc.astype(np.float64)
        if buffer_on_losses:
            tc = tc + buffer_ratio * self.negative_pnl
        need = self.tmmr + buffer_ratio * self.total_notional - tc
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
        self.max_account_notional = int(liq.max_notional_per_block_usd * QUOTE_QUANTUMS_PER_UNIT)
        """Most notional of one unit closed per block, quote quantums (0: no limit)."""
        self.max_insurance_lost = int(
            liq.max_insurance_lost_per_block_usd * QUOTE_QUANTUMS_PER_UNIT
        )
        """Most the insurance fund may lose on one unit per block, quote quantums (0: no limit)."""
        self.tick_ms = tick_ms

    def block_bounds(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Return (max, min) notional this block may liquidate: dYdX's per-position rule, then
        its per-subaccount limit (a unit is liquidated at most once per block, as a dYdX
        subaccount-perpetual pair is, so the whole limit is left for it)."""
        max_liq, min_liq = dydx_v4.max_and_min_position_notional_liquidatable_array(
            b.notional, self.min_notional, self.max_portion_ppm
        )
        if self.max_account_notional:
            max_liq = np.minimum(max_liq, self.max_account_notional)
            min_liq = np.minimum(min_liq, max_liq)
        return max_liq, min_liq

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

    has_backstop = False
    """Whether :meth:`backstop` can be true (a venue with a liquidator vault)."""

    sized_per_block = True
    """Whether ``max_portion`` and ``max_notional_per_block_usd`` bound what one block closes
    (they do under every preset's rules but Drift's)."""

    def backstop(self, b: Batch) -> np.ndarray:
        """Return which units go to the venue's liquidator vault instead of the book."""
        return np.zeros(len(b), bool)

    def accepts_fill(self, b: Batch, fill_q: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Return whether each book fill (price ``fill_q``, insurance delta ``d = Q - BP``) is
        within the venue's limits for liquidation orders: a fill on which the insurance fund
        would lose more than the per-block limit does not happen."""
        if self.max_insurance_lost:
            return -d <= self.max_insurance_lost
        return np.ones(len(b), bool)


class DydxRules(VenueRules):
    """dYdX v4: fill no worse than the fillable price; insurance-fund delta as the fee."""

    def close_notional(self, b: Batch) -> np.ndarray:
        # dYdX liquidates as much as the per-block limits allow, not just enough.
        return self.block_bounds(b)[0]

    def close_size(self, b: Batch) -> np.ndarray:
        """Return base quantums to close: the whole position when its notional is within the
        limit, else the limit converted to base quantums rounded down, so the fill's notional
        never passes the limit (GetLiquidatablePositionSizeDelta)."""
        want = self.close_notional(b)
        whole = np.abs(b.size)
        if b.mark_q <= 0:
            return whole
        q = as_int64(np.floor(want / b.mark_q))
        return np.where(want >= b.notional, whole, np.clip(q, 1, whole))

    def fees(
        self, b: Batch, quote: np.ndarray, headroom: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # liquidation_insurance_fund_delta with BP = Q - headroom: min(fee x |Q|, d) when d >= 0.
        if_delta = dydx_v4.liquidation_insurance_fund_delta_array(
            quote, quote - headroom, self.penalty_ppm
        )
        if_delta = np.maximum(if_delta, 0)
        keeper = mul_ppm(if_delta, self.keeper_share_ppm, "down")
        return keeper, if_delta - keeper

    def accepts_fill(self, b: Batch, fill_q: np.ndarray, d: np.ndarray) -> np.ndarray:
        fp = dydx_v4.fillable_price_array(b.size, b.value, b.position_mm, b.tnc, b.tmmr)
        within = np.where(b.size > 0, fill_q >= fp, fill_q <= fp)
        return within & super().accepts_fill(b, fill_q, d)


class DriftRules(VenueRules):
    """Drift v2: base to cover the shortage, liquidator-fee ramp, implied IF fee, time throttle."""

    INITIAL_PCT_TO_LIQUIDATE = 1_000  # 10%, LIQUIDATION_PCT precision
    sized_per_block = False  # the shortage and the time throttle size a liquidation
    LIQUIDATION_DURATION_SLOTS = 150
    SLOT_MS = 400

    def __init__(self, market: MarketConfig, tick_ms: int) -> None:
        super().__init__(market, tick_ms)
        self.liquidator_fee = self.penalty_ppm * self.keeper_share_ppm // PPM
        self.max_if_fee = self.penalty_ppm - self.liquidator_fee

    def _drift_terms(
        self, b: Batch
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return Drift's inputs: oracle price (PRICE precision), MM ratio (MARGIN precision),
        shortage (QUOTE), liquidator fee and IF fee (LIQUIDATION_FEE precision)."""
        price = int(round(b.oracle_usd * drift_v2.PRICE_PRECISION))
        mm_ratio = np.maximum(
            1, b.position_mm * drift_v2.MARGIN_PRECISION // np.maximum(b.notional, 1)
        )
        shortage = b.shortage(self.market.liquidation.buffer_ratio, buffer_on_losses=True)
        slots = b.ticks_in_breach * self.tick_ms // self.SLOT_MS
        liq_fee = drift_v2.get_liquidation_fee_array(
            self.liquidator_fee, 2 * self.liquidator_fee, slots
        )
        drift_base = np.floor(b.notional * (drift_v2.BASE_PRECISION / max(price, 1)))
        if_fee = drift_v2.calculate_perp_if_fee_array(
            shortage, drift_base, mm_ratio, liq_fee, price, self.max_if_fee
        )
        return price, mm_ratio, shortage, slots, liq_fee, if_fee

    def close_notional(self, b: Batch) -> np.ndarray:
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

    def fees(
        self, b: Batch, quote: np.ndarray, headroom: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
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
    """Hyperliquid: a market order for the whole position, or ``max_portion`` (20%) of it at a
    time above ``min_notional_usd`` ($100k), no penalty. An account whose equity has fallen
    below ``backstop_ratio`` (2/3) of its maintenance margin is not sent to the book: the
    liquidator calls :meth:`backstop` and hands it to the venue's vault."""

    def __init__(self, market: MarketConfig, tick_ms: int) -> None:
        super().__init__(market, tick_ms)
        ratio = Fraction(market.liquidation.backstop_ratio).limit_denominator(1_000_000)
        self.backstop_num, self.backstop_den = ratio.numerator, ratio.denominator
        self.has_backstop = self.backstop_num > 0

    def backstop(self, b: Batch) -> np.ndarray:
        """Return where equity < backstop_ratio x MM (exact integers)."""
        if self.backstop_num == 0:
            return np.zeros(len(b), bool)
        return b.tnc * self.backstop_den < b.tmmr * self.backstop_num

    def close_notional(self, b: Batch) -> np.ndarray:
        chunk = as_int64(np.ceil(b.notional * self.market.liquidation.max_portion))
        return np.where(b.notional <= self.min_notional, b.notional, np.minimum(chunk, b.notional))


RULES = {
    "generic": VenueRules,
    "dydx_v4": DydxRules,
    "drift_v2": DriftRules,
    "hyperliquid": HyperliquidRules,
    "binance_um": VenueRules,
}


def make_rules(market: MarketConfig, tick_ms: int) -> VenueRules:
    """Return the liquidation rules of a market's venue preset."""
    return RULES[market.venue](market, tick_ms)
