"""Liquidation: sizing, execution against the book, penalties, and the loss waterfall.

A breached *unit* is an account's cross pool or one isolated position; a liquidation closes (part
of) one position of it. Keepers reach units in priority order; the units of one market that a
block reaches are planned together as arrays (:class:`Batch`) and executed as a vectorized
prefix, so a cascade of thousands of liquidations costs a handful of numpy calls. Units that
will be deleveraged are deleveraged together, in order; a unit that socializes a loss is
handled on its own at its place in the order, the plan having counted what the fund pays it
for the units after it (so they are not planned again). The
result is the same as processing units one at a time (a property test checks it).

Waterfall for a fill with quote proceeds Q and bankruptcy quote BP (dYdX's convention):
``d = Q - BP``. If d >= 0 the account pays a penalty of at most d, split between keeper and
insurance fund. If d < 0 the account is bankrupt on this fill: the insurance fund pays |d| (within
its balance and per-block cap); if it cannot, the market's ``loss_resolution`` decides:
``adl`` offsets the position against opposite-side accounts at the bankruptcy price (dYdX,
Hyperliquid, BitMEX), ``socialized`` fills on the book, lets the fund pay what it can and charges
the rest to every open position pro rata (Drift).

Longer than 500 lines: the batched loop and the unit-by-unit semantics it must reproduce
(the waterfall, ADL, the re-reads an ADL forces) are one argument, read together.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from engine.adl import Deleveraging
from engine.book import Book
from engine.draws import Draws
from engine.episodes import Episodes, Turns
from engine.events import INSURANCE_FUND, KEEPER_BASE, NOBODY, EventKind, EventLog
from engine.margin import RequirementScale
from engine.market import MarketState
from engine.rows import row_sum
from engine.rules import Batch, VenueRules
from engine.socialized import Socialization
from engine.state import Ledger, exact_sum
from engine.units import as_int64
from engine.valuation import book_fills, fund_limit, insurance_available, margin_rows
from engine.vault import Vault
from engine.venue import MAKER, VenueModel
from engine.venues import dydx_v4

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
    """Insurance payout when bankrupt on the fill (d < 0): the whole loss when the fund can
    cover it, what the fund may pay where the unit socializes the rest."""
    accepted: np.ndarray
    fast: np.ndarray
    """True where the unit needs nothing beyond the book and the insurance fund."""
    social: np.ndarray
    """True where the unit is filled, bankrupt beyond what the fund may pay, in a market that
    socializes losses: the fund pays what it may (the plan counts it for the units after) and
    the rest is socialized."""


class Liquidator:
    """Executes liquidations on a simulation's ledger, book and insurance funds.

    The ADL ranking of each (market, side) is computed every ``ADL_REFRESH_TICKS`` blocks
    (counterparties' live sizes are re-read at each use), and socialized losses are advanced by
    the fee pool at once and charged to all open positions at block end, so a cascade costs
    O(accounts) per block at most.
    """

    def __init__(
        self,
        ledger: Ledger,
        book: Book,
        events: EventLog,
        venue: VenueModel,
        market: MarketState,
        requirement_scale: RequirementScale,
        vault: Vault | None = None,
        draws: Draws | None = None,
    ) -> None:
        self.ledger = ledger
        self.book = book
        self.events = events
        self.venue = venue
        self.market = market
        self.scale = requirement_scale
        self.vault = vault
        """The venue's liquidator vault, which takes over the units a market's rules backstop."""
        self.adl = Deleveraging(ledger, events, market, venue, draws)
        self.impact = True
        """Liquidation orders move the book (off: they fill at book prices but leave the book as
        it was, the counterfactual that measures how much liquidations amplify a crash)."""
        self.social = Socialization(ledger, events, market, venue)
        self.episodes = Episodes(ledger, market, venue)
        """Which units are in liquidation since when, and when each was last liquidated."""
        self.count = 0
        """Liquidations so far; keeper rewards rotate with it."""
        self._scratch: np.ndarray | None = None

    def _mask(self) -> np.ndarray:
        """Return an all-False bool array over accounts, for set tests (kept all-False)."""
        if self._scratch is None:
            self._scratch = np.zeros(self.ledger.size.shape[0], bool)
        return self._scratch

    def begin_block(self) -> None:
        """Refresh the ADL rankings every ``ADL_REFRESH_TICKS`` blocks (see :mod:`engine.adl`)."""
        self.adl.begin_block()

    # ---- state of the units ------------------------------------------------------------------

    def batch(self, rows: np.ndarray, k: int, ticks_in_breach: np.ndarray) -> Batch:
        """Return the current margin state of the pools that margin ``rows`` in market ``k``."""
        led = self.ledger
        value, notional, mm = margin_rows(led, rows, self.market, self.venue, self.scale)
        cross = led.cross[rows]
        tnc = np.where(
            cross, led.quote[rows] + row_sum(value), led.iso_quote[rows, k] + value[:, k]
        )
        losses = np.minimum(value - led.entry[rows], 0.0)
        negative_pnl = np.where(cross, row_sum(losses), losses[:, k])
        return Batch(
            rows=rows,
            size=led.size[rows, k],
            notional=notional[:, k],
            value=as_int64(np.rint(value[:, k])),
            position_mm=mm[:, k],
            tnc=as_int64(np.floor(tnc)),
            tmmr=np.where(cross, row_sum(mm), mm[:, k]),
            total_notional=np.where(cross, row_sum(notional), notional[:, k]),
            ticks_in_breach=ticks_in_breach,
            negative_pnl=negative_pnl,
            mark_q=float(self.market.mark_q[k]),
            oracle_usd=float(self.market.oracle[k]),
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
        market, venue = self.market, self.venue
        rules: VenueRules = venue.rules[k]
        if b.dsize is None or b.bankruptcy is None:
            # Sizing depends on each unit alone, so a re-plan of the same units reuses it.
            dsize = -np.sign(b.size) * rules.close_size(b)
            new_notional = as_int64(np.rint(np.abs((b.size + dsize) * b.mark_q)))
            mm_after = venue.requirements[k].maintenance(
                new_notional, b.size + dsize, market.margin_context(k)
            )
            mm_after = self.scale.scale(mm_after[:, None], b.rows, initial=False)[:, 0]
            dnnv = as_int64(np.rint(dsize * b.mark_q))
            bankruptcy = dydx_v4.bankruptcy_price_quote_quantums_array(
                dnnv, mm_after - b.position_mm, b.tnc, b.tmmr
            )
            b.dsize, b.bankruptcy = dsize, bankruptcy
        else:
            dsize, bankruptcy = b.dsize, b.bankruptcy
        sent = None if off_book is None else ~off_book
        fill_q, taker_usd = book_fills(self.book, k, dsize, market, venue, sent)
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
        fund_before = int(self.ledger.insurance[k]) + np.cumsum(flow) - flow
        available = fund_before - int(venue.insurance_floor[k])
        paid_before = np.cumsum(paid) - paid
        cap = int(venue.insurance_cap[k])
        if cap > 0:
            available = np.minimum(
                available, cap - (int(market.insurance_paid_block[k]) + paid_before)
            )
        total = int(venue.insurance_total_cap[k])
        if total >= 0:
            available = np.minimum(
                available, total - (int(market.insurance_paid_total[k]) + paid_before)
            )
        accepted = rules.accepts_fill(b, fill_q, d)
        social = np.zeros(len(b), bool)
        if venue.markets[k].loss_resolution == "socialized":
            bankrupt = accepted & (d < 0)  # filled on the book with negative equity left
            if sent is not None:
                bankrupt &= sent
            beyond = bankrupt & (payout > available)
            if beyond.any():
                available, social = self._fund_with_socialized(
                    int(np.argmax(beyond)),
                    available,
                    flow,
                    paid,
                    fund_before,
                    paid_before,
                    k,
                    bankrupt,
                    payout,
                )
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
            np.where(social, np.maximum(available, 0), np.where(d < 0, payout, 0)),
            accepted,
            fast,
            social,
        )

    def _fund_with_socialized(
        self,
        first: int,
        available: np.ndarray,
        flow: np.ndarray,
        paid: np.ndarray,
        fund_before: np.ndarray,
        paid_before: np.ndarray,
        k: int,
        bankrupt: np.ndarray,
        payout: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (what the fund may pay before each unit, which units socialize a loss) when
        unit ``first`` is the first whose payout is beyond the fund: from it on, a unit that
        socializes takes only what the fund may pay (all of it), not its whole payout, so what
        the fund may pay the units after it runs unit by unit, with the same
        :func:`fund_limit` that :meth:`_waterfall` will read it with. ``bankrupt`` marks the
        filled units sent to the book with negative equity after the fill."""
        block_paid = int(self.market.insurance_paid_block[k])
        run_paid = int(self.market.insurance_paid_total[k])
        available = available.copy()
        social = np.zeros(available.size, bool)
        fund = int(fund_before[first])
        paid_so_far = int(paid_before[first])
        for u in range(first, available.size):
            avail = fund_limit(
                self.venue, k, fund, block_paid + paid_so_far, run_paid + paid_so_far
            )
            available[u] = avail
            step_flow, step_paid = int(flow[u]), int(paid[u])
            if bankrupt[u] and int(payout[u]) > avail:
                social[u] = True
                pay = max(avail, 0)
                step_flow += int(payout[u]) - pay  # (the fund pays ``pay``, not the payout)
                step_paid = pay
            fund += step_flow
            paid_so_far += step_paid
        return available, social

    # ---- execution ---------------------------------------------------------------------------

    def liquidate_market(
        self, rows: np.ndarray, k: int, ticks_in_breach: np.ndarray, stats: BlockStats
    ) -> None:
        """Liquidate the units ``rows`` of market ``k``, in order, each as far as the rules say.

        The result is the same as liquidating the units one at a time. Units are planned as a
        batch; units that will be deleveraged or stay unfilled are found by re-planning with
        them kept off the book until the expectation holds (``_plan_settled``); the batch is then
        executed in order, fills in vectorized runs, the others one by one. A unit whose
        expectation did not settle ends the batch after itself; so does an ADL that reaches a
        later unit. A unit that socializes a loss does not: the plan counts what the fund pays
        it, and the charge to open positions waits for the end of the block.
        """
        adl_market = self.venue.markets[k].loss_resolution == "adl"
        rested = self.episodes.rested(rows, k)
        if rested is not None:
            rows, ticks_in_breach = rows[rested], ticks_in_breach[rested]
        units, unit_ticks = rows, ticks_in_breach
        # ``pos``: each pending unit's place in ``units``. A unit found not in breach leaves the
        # batch, but an ADL of a unit before it can put it back in breach before its turn, so
        # the accounts an ADL changes are checked against every later unit.
        pending, ticks, pos = rows, ticks_in_breach, np.arange(rows.size)
        # A unit enters or leaves Drift's "being liquidated" state at its turn, not when its
        # batch is read: those leaving wait here (with their places) until their turn passes.
        turns = Turns(self.episodes, k)
        b: Batch | None = None
        while pending.size:
            if b is None:
                b = self.batch(pending, k, ticks)
            still, done = self.episodes.staying(b, k)
            live = still | ((b.tmmr > 0) & (b.tnc < b.tmmr) & (b.size != 0))
            if not live.all():  # earlier liquidations in the block may have helped them
                turns.wait(pos[~live & done], b.rows[~live & done])
                b, pending, ticks, pos = b.take(live), pending[live], ticks[live], pos[live]
                done = done[live]
                if not len(b):
                    turns.reach(units.size, _NONE, _NONE)  # (the batch is empty)
                    return
            if self.venue.rules[k].has_backstop:
                vaulted = self.venue.rules[k].backstop(b)
                if vaulted.any():
                    turns.reach(-1, b.rows[vaulted & done], b.rows[vaulted])
                    self._take_over(b.rows[vaulted], k, stats)
                    kept = ~vaulted
                    b, pending, ticks, pos = b.take(kept), pending[kept], ticks[kept], pos[kept]
                    done = done[kept]
                    if not len(b):
                        turns.reach(units.size, _NONE, _NONE)  # (the batch is empty)
                        return
            p, off, settled = self._plan_settled(b, k, adl_market)
            # Units up to ``last`` are planned exactly (each on the state the ones before it
            # leave); the plan of the units after a surprise is not.
            surprise = np.flatnonzero(~settled | (~p.fast & ~off & ~p.social))
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
                    # A run of units deleveraged together has no unit left out between them.
                    j = i
                    side = np.sign(p.dsize[i])
                    while (
                        j + 1 <= last
                        and deleverage[j + 1]
                        and np.sign(p.dsize[j + 1]) == side
                        and pos[j + 1] == pos[j] + 1
                    ):
                        j += 1
                    changed = self._deleverage_units(
                        b.take(slice(i, j + 1)), _slice(p, i, j + 1), k, stats
                    )
                    i = j + 1
                else:
                    changed = self._waterfall(b.take(slice(i, i + 1)), _at(p, i), k, stats)
                    i += 1
                later = units[pos[i - 1] + 1 :]
                if changed.size and _intersects(later, changed, self._mask()):
                    rebatch = True  # ADL reached a later unit: its margin state is stale
                    break
            turns.reach(int(pos[i - 1]), b.rows[:i][done[:i]], b.rows[:i])
            if rebatch:  # every later unit again, those left out of this batch too
                turns.drop_after(int(pos[i - 1]))
                pending, ticks = units[pos[i - 1] + 1 :], unit_ticks[pos[i - 1] + 1 :]
                pos = np.arange(pos[i - 1] + 1, units.size)
                b = None
            else:
                pending, ticks, pos = pending[i:], ticks[i:], pos[i:]
                b = b.take(slice(i, None))
        turns.reach(units.size, _NONE, _NONE)

    def _count_payout(self, k: int, amount: int) -> None:
        """Add an insurance payout to the fund's per-block and whole-run tallies."""
        self.market.insurance_paid_block[k] += amount
        self.market.insurance_paid_total[k] += amount

    def _take_over(self, rows: np.ndarray, k: int, stats: BlockStats) -> None:
        """Hand units to the liquidator vault; a deficit it absorbs is the run's bad debt."""
        if self.vault is None:
            raise RuntimeError(f"market {k} backstops accounts but the run has no vault")
        notional, absorbed = self.vault.take_over(rows, k)
        self.count += rows.size
        stats.liquidations[k] += rows.size
        stats.liquidated_notional[k] += notional
        stats.bad_debt[k] += absorbed

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
        led = self.ledger
        t = self.market.t
        rows = b.rows
        u = len(b)
        led.trade(rows, k, p.dsize, p.quote)
        led.trade_one(MAKER, k, -int(p.dsize.sum()), -int(p.quote.sum()))
        if self.impact:
            self.book.consume(k, p.taker_usd)
        self.events.add(t, EventKind.LIQUIDATION, rows, k, MAKER, p.dsize, p.quote, p.fill_q)
        keepers = (self.count + np.arange(u)) % led.keepers.size
        self.count += u
        fees = p.keeper_fee + p.insurance_fee
        if fees.any():
            led.credit(rows, k, -fees)
            led.pay_keepers(keepers, p.keeper_fee)
            led.add_insurance(k, exact_sum(p.insurance_fee))
            kf = p.keeper_fee > 0
            self.events.add(
                t,
                EventKind.KEEPER_FEE,
                rows[kf],
                k,
                KEEPER_BASE - keepers[kf],
                0,
                -p.keeper_fee[kf],
            )
            inf = p.insurance_fee > 0
            self.events.add(
                t, EventKind.INSURANCE_FEE, rows[inf], k, INSURANCE_FUND, 0, -p.insurance_fee[inf]
            )
        bankrupt = p.d < 0
        if bankrupt.any():
            paid = exact_sum(p.payout)
            led.credit(rows[bankrupt], k, p.payout[bankrupt])
            led.add_insurance(k, -paid)
            self._count_payout(k, paid)
            self.events.add(
                t,
                EventKind.BAD_DEBT,
                rows[bankrupt],
                k,
                NOBODY,
                0,
                p.d[bankrupt],
                p.fill_q[bankrupt],
            )
            self.events.add(
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
        """Record the bad debt of units that will be deleveraged and deleverage them together;
        return the counterparties."""
        bad = p.d < 0
        if bad.any():
            stats.bad_debt[k] += int(-p.d[bad].sum())
            self.events.add(
                self.market.t,
                EventKind.BAD_DEBT,
                b.rows[bad],
                k,
                NOBODY,
                0,
                p.d[bad],
                p.fill_q[bad],
            )
        chosen, notional = self.adl.deleverage(b.rows, k, p.dsize, p.bankruptcy)
        self.count += b.rows.size
        stats.adl_notional[k] += notional
        stats.liquidations[k] += b.rows.size
        stats.liquidated_notional[k] += notional
        return chosen

    def _waterfall(self, b: Batch, p: Plan, k: int, stats: BlockStats) -> np.ndarray:
        """Handle one unit that is neither filled within the fund nor deleveraged: an order the
        venue will not fill (the unit waits for a later block), or a bankruptcy beyond the fund
        in a market that socializes losses. Returns the other accounts whose positions it
        changed (none: deleveraging goes through :meth:`_deleverage_units`)."""
        led = self.ledger
        t = self.market.t
        i = int(b.rows[0])
        dsize, d = int(p.dsize[0]), int(p.d[0])
        fill_q = float(p.fill_q[0])
        if not p.accepted[0]:
            self.events.add_one(t, EventKind.LIQUIDATION_UNFILLED, i, k, NOBODY, dsize, 0, fill_q)
            stats.unfilled[k] += 1
            return _NONE
        loss = -d
        stats.bad_debt[k] += loss
        self.events.add_one(t, EventKind.BAD_DEBT, i, k, NOBODY, 0, d, fill_q)
        available = insurance_available(led, k, self.market, self.venue)
        if p.social[0] and available != int(p.payout[0]):
            raise RuntimeError(
                f"market {k}, block {t}: the insurance fund may pay {available} where the plan "
                f"counted {int(p.payout[0])}: the units planned after this one would be wrong"
            )
        # Filled on the book with no penalty (there is nothing left to take) and no payout yet.
        none = np.zeros(1, np.int64)
        no_fees = replace(p, d=none, keeper_fee=none, insurance_fee=none, payout=none)
        self._execute(b, no_fees, k, stats)
        if available > 0:
            led.add_insurance(k, -available)
            led.credit_one(i, k, available)
            self._count_payout(k, available)
            self.events.add_one(t, EventKind.INSURANCE_PAYOUT, i, k, INSURANCE_FUND, 0, available)
            stats.insurance_paid[k] += available
        stats.socialized[k] += self.social.cover(i, k, loss - available)
        return _NONE

    def end_block(self) -> None:
        """Charge this block's socialized losses to the open positions."""
        self.social.end_block()


_NONE = np.empty(0, np.int64)


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
