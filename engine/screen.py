"""The breach screen: which accounts must have their margin evaluated exactly this block.

An account evaluated at marks p with headroom H = equity - MM cannot breach at marks p' while
sum_k |size_k| (1 + rho_k) |p'_k - p_k| < H, where rho_k bounds how fast MM grows with
notional. Expressed against reference marks r, that holds while the largest relative move
max_k |p'_k / r_k - 1| stays below the account's *safe move*. So a block evaluates only the
accounts whose safe move the market has used up, plus those whose balances or positions changed
(the ledger's touched rows) or whose requirements a policy changed; the reference is reset with
a full evaluation when that set grows large. A debit that changes no position (the charge of a
socialized loss to every open position) lowers the payer's safe move by what it paid over its
pool's weight instead of forcing an evaluation. Exactness is kept: the screen only skips accounts
that provably cannot be in breach (a property test runs every config with and without it).
"""

from __future__ import annotations

import numpy as np

from engine.market import MarketState
from engine.rows import row_any, row_min, row_sum
from engine.state import Ledger
from engine.valuation import ALL, MarginSnapshot
from engine.venue import VenueModel


def _safe_move(equity: np.ndarray, mm: np.ndarray, weight: np.ndarray, slack: float) -> np.ndarray:
    """Return (equity - MM - slack) / weight: the relative move a pool can take, +inf for a
    pool without positions (its MM stays 0, so it can never be liquidated)."""
    head = equity - mm - slack - 1e-9 * weight
    out = np.full(head.shape, np.inf)
    np.divide(head, weight, out=out, where=weight > 0)
    return out


def _float32_down(x: np.ndarray) -> np.ndarray:
    """Return float32 values no greater than ``x`` (rounded toward -inf)."""
    y = x.astype(np.float32)
    return np.where(y > x, np.nextafter(y, np.float32(-np.inf)), y)


def _float32_up(x: float) -> np.float32:
    """Return the smallest float32 no less than ``x``."""
    y = np.float32(x)
    return np.nextafter(y, np.float32(np.inf)) if float(y) < x else y


class BreachScreen:
    """Safe moves of every account against reference marks (owner of both)."""

    def __init__(self, n: int, venue: VenueModel, opening_mark: np.ndarray) -> None:
        self.venue = venue
        m = opening_mark.size
        self.debit_weight: np.ndarray | None = None
        """float64 (n, m): the weight of the pool a debit in each market comes out of, as the
        account's last finite safe move used it (0: unknown), kept when some market socializes
        losses (their charges lower safe moves instead of forcing evaluations). An account whose
        safe move is -inf may keep a stale weight: a charge leaves -inf as it is."""
        if any(mk.loss_resolution == "socialized" for mk in venue.markets):
            self.debit_weight = np.zeros((n, m))
        self.enabled = True
        """Skip accounts that provably cannot be in breach (off: evaluate everyone, every block)."""
        self.reference_mark = opening_mark.copy()
        # float32 halves the memory the per-block scan reads; values are rounded toward -inf
        # and the threshold toward +inf, so the screen stays conservative.
        self.safe_move = np.full(n, -np.inf, np.float32)
        self.force_full = False
        """Evaluate every account this block (a policy raised MM without a price move)."""
        self.evaluated_rows = 0
        self.evaluated_rows_total = 0
        self._since_rebase_blocks = 0
        self._since_rebase_rows = 0

    @property
    def always_evaluate(self) -> bool:
        """True when some requirement moves without prices (nothing can be screened)."""
        return self.venue.always_evaluate

    @property
    def active(self) -> bool:
        """True when safe moves are kept (the screen is on and can be used)."""
        return self.enabled and not self.venue.always_evaluate

    def select(self, ledger: Ledger, market: MarketState) -> np.ndarray | slice:
        """Return the accounts whose margin must be evaluated exactly this block (an id array,
        or ``ALL`` after a re-base to the current marks)."""
        n = ledger.size.shape[0]
        if self.active and not self.force_full:
            moved = self.drift(market)
            self._charge(ledger.take_charged())
            self.safe_move[ledger.take_touched()] = -np.inf
            rows = np.flatnonzero(self.safe_move <= _float32_up(moved))
            # As the marks drift from the reference, more accounts fall through. Re-basing costs
            # one full evaluation; do it when this block's work exceeds the average work per
            # block since the last re-base, full evaluation included (rebuild when the marginal
            # cost passes the average cost).
            self._since_rebase_blocks += 1
            self._since_rebase_rows += rows.size
            if rows.size * self._since_rebase_blocks <= self._since_rebase_rows:
                return rows
        ledger.touched = []
        ledger.charged = []
        self.force_full = False
        self.reference_mark = market.mark.copy()
        self._since_rebase_blocks = 0
        self._since_rebase_rows = n
        return ALL

    def _charge(self, charges: list[tuple[np.ndarray, int, np.ndarray]]) -> None:
        """Lower the safe moves of charged accounts by what they paid: a debit of x from a pool
        of weight W (quote quantums per unit of relative move) uses up x / W of its safe move,
        and of its account's (the least of its pools'). The quotient is raised by a relative
        1e-9 and the result rounded down, so the screen stays conservative; an unknown weight
        re-evaluates."""
        if not charges:
            return
        if self.debit_weight is None:
            for accounts, _, _ in charges:
                self.safe_move[accounts] = -np.inf
            return
        # Dense over the accounts (a socialized loss charges every open position of a market):
        # the moves used up add over the block's charges, then lower the safe moves once.
        n = self.safe_move.size
        used = np.zeros(n)
        share = np.empty(n)
        paid = np.zeros(n)  # (float64: the quotient's type, converted once)
        unknown = np.zeros(n, bool)
        for accounts, k, amounts in charges:
            paid[:] = 0.0
            paid[accounts] = amounts
            weight = self.debit_weight[:, k]
            known = weight > 0
            share[:] = 0.0
            np.divide(paid, weight, out=share, where=known)
            used += share
            unknown |= ~known & (paid > 0)
        touched = (used > 0) | unknown
        lowered = _float32_down(self.safe_move - (used * (1.0 + 1e-9) + 1e-12))
        self.safe_move[:] = np.where(unknown, -np.inf, np.where(touched, lowered, self.safe_move))

    def count(self, rows: np.ndarray | slice, n: int) -> int:
        """Tally the rows a block evaluates; return how many."""
        n_rows = n if isinstance(rows, slice) else rows.size
        self.evaluated_rows = n_rows
        self.evaluated_rows_total += n_rows
        return n_rows

    def drift(self, market: MarketState) -> float:
        """Return the largest relative move of any mark from the reference marks."""
        mark = market.mark
        if mark.size == 1:
            return abs(float(mark[0]) / float(self.reference_mark[0]) - 1.0)
        return float(np.max(np.abs(mark / self.reference_mark - 1.0)))

    def requirements_changed(self, accounts: np.ndarray) -> None:
        """Re-evaluate ``accounts`` next block: a policy changed their requirements."""
        self.safe_move[accounts] = -np.inf

    def update(
        self,
        rows: np.ndarray | slice,
        snap: MarginSnapshot,
        market: MarketState,
        growth: np.ndarray,
    ) -> None:
        """Set the safe moves of the evaluated ``rows`` from their snapshot; ``growth`` is the
        policy's bound of its MM multipliers per market (they scale MM's growth too)."""
        if self.venue.always_evaluate:
            return
        drift = self.drift(market)
        # Quote quantums lost per unit of relative move from the reference marks, per market:
        # |size| x reference price x (1 + MM rate bound) = |value| x reference / mark x (...).
        scale = self.reference_mark / market.mark
        abs_value = np.abs(snap.value)
        # Slack for rounding: one quantum per position's MM and per equity term, plus float error.
        slack = market.mark.size + 2.0
        iso, iso_equity, iso_mm = snap.iso_at, snap.iso_equity, snap.iso_mm
        rates = self.venue.constant_mm_rates
        if rates is not None and iso is None:
            weight_total = abs_value @ (scale * (1.0 + rates * growth))
            safe = _safe_move(snap.cross_equity, snap.cross_mm, weight_total, slack)
            self.safe_move[rows] = _float32_down(safe - drift)
            if self.debit_weight is not None:  # every pool is a cross pool
                self.debit_weight[rows] = weight_total[:, None]
            return
        # A pool with a position and equity - MM - slack < 0 has a negative safe move whatever
        # its weight: its account is evaluated next block either way, so when such accounts
        # (mostly those in breach) are many, their weights are not computed (-inf instead).
        has_position = abs_value > 0
        short = (snap.cross_equity - snap.cross_mm - slack < 0) & row_any(has_position)
        if iso is not None and iso_equity is not None and iso_mm is not None:
            short[iso] = row_any((iso_equity - iso_mm - slack < 0) & has_position[iso])
        if 2 * int(np.count_nonzero(short)) <= short.size:
            safe, debit = self._safe(snap, abs_value, scale, slack, growth, None)
            if debit is not None and self.debit_weight is not None:
                self.debit_weight[rows] = debit
        else:
            live = np.flatnonzero(~short)
            safe = np.full(short.size, -np.inf)
            safe[live], debit = self._safe(snap, abs_value, scale, slack, growth, live)
            if debit is not None and self.debit_weight is not None:  # (-inf needs no weight)
                self.debit_weight[live if isinstance(rows, slice) else rows[live]] = debit
        self.safe_move[rows] = _float32_down(safe - drift)

    def _safe(
        self,
        snap: MarginSnapshot,
        abs_value: np.ndarray,
        scale: np.ndarray,
        slack: float,
        growth: np.ndarray,
        live: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the safe moves (before the drift) of the snapshot's rows ``live`` (None:
        every row), and the weights a debit in each market meets (None unless kept)."""
        at: np.ndarray | slice = ALL if live is None else live
        abs_value = abs_value[at]
        sizes = np.abs(snap.sizes[at])
        weight = abs_value * scale
        for k, req in enumerate(self.venue.requirements):
            weight[:, k] *= 1.0 + req.max_mm_rate(sizes[:, k]) * growth[k]
        total = row_sum(weight)
        safe = _safe_move(snap.cross_equity[at], snap.cross_mm[at], total, slack)
        debit = None
        if self.debit_weight is not None:  # a cross pool meets a debit with all its weight
            debit = np.repeat(total[:, None], weight.shape[1], axis=1)
        iso, iso_equity, iso_mm = snap.iso_at, snap.iso_equity, snap.iso_mm
        if iso is not None and iso_equity is not None and iso_mm is not None:
            # A cross account's pool is its cross pool, an isolated account's its market pools
            # (the other kind of pool has no positions, hence an infinite safe move).
            pools = slice(None)  # which isolated accounts are among ``at``, in the snapshot
            if live is not None:
                where = np.full(snap.cross_equity.size, -1, np.int64)
                where[iso] = np.arange(iso.size)
                pools = where[live]
                iso = np.flatnonzero(pools >= 0)
                pools = pools[iso]
            safe[iso] = row_min(_safe_move(iso_equity[pools], iso_mm[pools], weight[iso], slack))
            if debit is not None:  # an isolated pool, with its market's weight
                debit[iso] = weight[iso]
        return safe, debit
