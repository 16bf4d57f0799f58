"""Account and ledger state as aligned numpy columns (one row per account).

Quote balances follow dYdX: opening a long moves quote out, so an account's equity is its quote
balance plus the signed value of its positions, and every trade, fee, penalty, funding payment,
insurance payout, ADL and socialized loss is a transfer between ledger accounts. The sum of all
balances (accounts, insurance funds, fee pools, keepers) therefore equals net deposits, exactly.

Each account has a *cross pool* (``quote``) and one *isolated pool* per market (``iso_quote``). A
cross account settles everything in its cross pool and margins all positions together; an isolated
account settles each market in that market's pool and margins each position alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.units import INT64_BOUND, LedgerOverflowError


@dataclass(slots=True)
class Ledger:
    """The state of every ledger account. Shapes: n accounts, m markets, k keepers."""

    quote: np.ndarray
    """int64 (n,): cross-pool balance, quote quantums."""
    iso_quote: np.ndarray
    """int64 (n, m): isolated-pool balances, quote quantums (zero for cross accounts)."""
    size: np.ndarray
    """int64 (n, m): positions, base quantums (long > 0)."""
    entry: np.ndarray
    """float64 (n, m): quote paid to open the current position (signed like size); for PnL."""
    cross: np.ndarray
    """bool (n,): True for cross margin."""
    is_maker: np.ndarray
    """bool (n,): the book's market maker / backstop (never liquidated)."""
    insurance: np.ndarray
    """int64 (m,): insurance fund per market."""
    fee_pool: np.ndarray
    """int64 (m,): fees and rounding dust per market."""
    keepers: np.ndarray
    """int64 (k,): keeper (liquidator) balances."""
    net_deposits: int
    """Sum of all deposits minus withdrawals, quote quantums."""
    open_interest: np.ndarray
    """int64 (m,): sum of long positions per market, base quantums (kept up to date by trades)."""
    touched: list
    """Accounts whose balances or positions changed since the engine last collected them (ids
    and id arrays appended by every credit and trade; see :meth:`take_touched`)."""
    charged: list = field(default_factory=list)
    """Pure debits since the engine last collected them, as (accounts, market, amounts), kept
    out of ``touched`` (see :meth:`charge`)."""

    @classmethod
    def empty(cls, n: int, m: int, k: int) -> Ledger:
        """Return a ledger of n cross accounts with no balances and no positions."""
        return cls(
            quote=np.zeros(n, np.int64),
            iso_quote=np.zeros((n, m), np.int64),
            size=np.zeros((n, m), np.int64),
            entry=np.zeros((n, m), np.float64),
            cross=np.ones(n, bool),
            is_maker=np.zeros(n, bool),
            insurance=np.zeros(m, np.int64),
            fee_pool=np.zeros(m, np.int64),
            keepers=np.zeros(k, np.int64),
            net_deposits=0,
            open_interest=np.zeros(m, np.int64),
            touched=[np.arange(n)],
        )

    def with_extra_account(self) -> Ledger:
        """Return a copy with one more cross account, with no balance or position, as the last
        row (the venue's liquidator vault)."""
        n, m = self.size.shape
        return Ledger(
            quote=np.append(self.quote, np.int64(0)),
            iso_quote=np.vstack([self.iso_quote, np.zeros((1, m), np.int64)]),
            size=np.vstack([self.size, np.zeros((1, m), np.int64)]),
            entry=np.vstack([self.entry, np.zeros((1, m))]),
            cross=np.append(self.cross, True),
            is_maker=np.append(self.is_maker, False),
            insurance=self.insurance.copy(),
            fee_pool=self.fee_pool.copy(),
            keepers=self.keepers.copy(),
            net_deposits=self.net_deposits,
            open_interest=self.open_interest.copy(),
            touched=[*self.touched, n],
            charged=list(self.charged),
        )

    # ---- deposits and the conservation law -------------------------------------------------

    def deposit(self, account: np.ndarray, market: int, amount: np.ndarray) -> None:
        """Deposit collateral into each account's pool for ``market`` (cross pool if cross)."""
        amount = _int64(amount, "a deposit")
        self.credit(account, market, amount)
        self.net_deposits += exact_sum(amount)

    def total(self) -> int:
        """Return the sum of every ledger balance (Python int, exact: the sum cannot wrap)."""
        return sum(
            exact_sum(a) for a in (self.quote, self.iso_quote, self.insurance, self.fee_pool)
        ) + exact_sum(self.keepers)

    def conservation_error(self) -> int:
        """Return total balances minus net deposits: zero unless value was created or destroyed."""
        return self.total() - self.net_deposits

    # ---- transfers ---------------------------------------------------------------------------

    def credit_one(self, account: int, market: int, amount: int) -> None:
        """Add ``amount`` to one account's pool for ``market`` (scalar fast path)."""
        self.touched.append(account)
        if self.cross[account]:
            self.quote[account] = _checked(int(self.quote[account]) + int(amount), "a balance")
        else:
            pool = int(self.iso_quote[account, market]) + int(amount)
            self.iso_quote[account, market] = _checked(pool, "a balance")

    def trade_one(self, account: int, market: int, dsize: int, dquote: int) -> None:
        """Scalar :meth:`trade` for one account (the per-liquidation fast path)."""
        old = int(self.size[account, market])
        new = _checked(old + int(dsize), "a position")
        entry = float(self.entry[account, market])
        if old == 0 or (old > 0) == (dsize > 0):
            entry += -dquote
        elif new == 0 or (new > 0) == (old > 0):
            entry = entry * new / old
        else:
            entry = -dquote * new / dsize
        self.entry[account, market] = entry
        self.size[account, market] = new
        self.add_open_interest(market, max(new, 0) - max(old, 0))
        self.credit_one(account, market, dquote)

    def credit(self, account: np.ndarray, market: int, amount: np.ndarray | int) -> None:
        """Add ``amount`` to each account's pool for ``market``. Accounts must be unique."""
        account = np.atleast_1d(np.asarray(account, np.int64))
        amount = _int64(amount, "a transfer")
        self.touched.append(account)
        self._add(account, market, amount)

    def charge(self, account: np.ndarray, market: int, amount: np.ndarray) -> None:
        """Take ``amount`` (>= 0, one per account) from each account's pool for ``market``: a
        debit that changes no position (a socialized loss). Accounts must be unique.

        The accounts are not marked touched: the charge is kept in ``charged``, from which the
        breach screen lowers their safe moves by what they paid instead of evaluating them
        again (a loss spread over every open position would otherwise re-evaluate them all).
        """
        account = np.atleast_1d(np.asarray(account, np.int64))
        amount = np.broadcast_to(_int64(amount, "a charge"), account.shape)
        if amount.size and int(amount.min()) < 0:
            raise ValueError("a charge takes a non-negative amount from each account")
        self._add(account, market, -amount)
        self.charged.append((account, market, amount))

    def take_charged(self) -> list[tuple[np.ndarray, int, np.ndarray]]:
        """Return (and forget) the charges since the last call: (accounts, market, amounts)."""
        out, self.charged = self.charged, []
        return out

    def _add(self, account: np.ndarray, market: int, amount: np.ndarray) -> None:
        """Add ``amount`` to each account's pool for ``market`` (cross pool if cross). Accounts
        must be unique."""
        n = self.quote.size
        if 4 * account.size >= n:
            # Most accounts (a charge to every open position of a market): whole columns cost
            # less than gathering and scattering their rows (the same integers).
            delta = np.zeros(n, np.int64)
            delta[account] = amount
            cross_delta = np.where(self.cross, delta, 0)
            self.quote[:] = checked_add(self.quote, cross_delta, "a balance")
            pools = self.iso_quote[:, market]
            pools[:] = checked_add(pools, delta - cross_delta, "a balance")
            return
        cross = self.cross[account]
        if cross.all():
            self.quote[account] = checked_add(self.quote[account], amount, "a balance")
            return
        amount = np.broadcast_to(amount, account.shape)
        c = account[cross]
        self.quote[c] = checked_add(self.quote[c], amount[cross], "a balance")
        iso = ~cross
        i = account[iso]
        self.iso_quote[i, market] = checked_add(self.iso_quote[i, market], amount[iso], "a balance")

    def trade(
        self,
        account: np.ndarray,
        market: int,
        dsize: np.ndarray | int,
        dquote: np.ndarray | int,
    ) -> None:
        """Change positions in ``market`` by ``dsize`` (base quantums) and balances by ``dquote``.

        Accounts must be unique. A trade that adds to a position adds its cost to the entry; one
        that reduces it scales the entry down in proportion; one that flips it re-opens the
        remainder at the trade's price.
        """
        account = np.atleast_1d(np.asarray(account, np.int64))
        dsize = _int64(dsize, "a trade's size")
        dquote = _int64(dquote, "a trade's quote")
        if account.size == 1 and dsize.size == 1 and dquote.size == 1:
            # One account (the maker's side of a batch): the same arithmetic on scalars.
            self._trade_scalar(int(account[0]), market, int(dsize.flat[0]), int(dquote.flat[0]))
            return
        old = self.size[account, market]
        new = checked_add(old, dsize, "a position")
        entry = self.entry[account, market]
        cost = -dquote.astype(np.float64)
        adds = (old == 0) | (np.sign(old) == np.sign(dsize))
        flips = ~adds & (np.sign(new) == np.sign(dsize)) & (new != 0)
        reduced = entry * (new / np.where(old == 0, 1, old))  # unused where old == 0
        reopened = cost * (new / np.where(dsize == 0, 1, dsize))
        self.entry[account, market] = np.where(
            adds, entry + cost, np.where(flips, reopened, reduced)
        )
        self.size[account, market] = new
        self.add_open_interest(
            market, exact_sum(np.maximum(new, 0)) - exact_sum(np.maximum(old, 0))
        )
        self.credit(account, market, dquote)

    def _trade_scalar(self, account: int, market: int, dsize: int, dquote: int) -> None:
        """:meth:`trade` of one account, number for number (entries in the same float64
        operations, which Python floats are)."""
        old = int(self.size[account, market])
        new = _checked(old + dsize, "a position")
        entry = float(self.entry[account, market])
        cost = -float(dquote)
        if old == 0 or (old > 0) == (dsize > 0) and dsize != 0:
            entry += cost
        elif new != 0 and (new > 0) == (dsize > 0) and dsize != 0:
            entry = cost * (float(new) / float(dsize))  # flipped: re-opened at the trade's price
        else:
            entry = entry * (float(new) / float(old))
        self.entry[account, market] = entry
        self.size[account, market] = new
        self.add_open_interest(market, max(new, 0) - max(old, 0))
        self.credit_one(account, market, dquote)

    def add_open_interest(self, market: int, amount: int) -> None:
        self.open_interest[market] = _checked(
            int(self.open_interest[market]) + amount, "open interest"
        )

    def add_insurance(self, market: int, amount: int) -> None:
        """Add ``amount`` (negative: a payout) to ``market``'s insurance fund."""
        self.insurance[market] = _checked(int(self.insurance[market]) + int(amount), "a fund")

    def add_fee_pool(self, market: int, amount: int) -> None:
        """Add ``amount`` (negative: an advance) to ``market``'s fee pool."""
        self.fee_pool[market] = _checked(int(self.fee_pool[market]) + int(amount), "a fee pool")

    def pay_keepers(self, keepers: np.ndarray, amounts: np.ndarray) -> None:
        """Add ``amounts`` to the balances of ``keepers`` (which may repeat)."""
        amounts = _int64(amounts, "a keeper fee")
        up, down = exact_sum(np.maximum(amounts, 0)), exact_sum(np.minimum(amounts, 0))
        # Enough to exclude a wrap whatever the repeats: the most any one keeper can move.
        if self.keepers.size and (
            int(self.keepers.max()) + up >= INT64_BOUND
            or int(self.keepers.min()) + down < -INT64_BOUND
        ):
            raise LedgerOverflowError("a keeper's balance would leave the int64 ledger")
        np.add.at(self.keepers, keepers, amounts)

    def take_touched(self) -> np.ndarray:
        """Return (and forget) the ids of accounts changed since the last call (may repeat)."""
        if not self.touched:
            return np.empty(0, np.int64)
        out = np.concatenate([np.atleast_1d(np.asarray(a, np.int64)) for a in self.touched])
        self.touched = []
        return out


def _checked(value: int, what: str) -> int:
    """Return the Python int ``value``, refusing one an int64 cannot hold."""
    if not -INT64_BOUND <= value < INT64_BOUND:
        raise LedgerOverflowError(f"{what} of {value:.3g} quantums would leave the int64 ledger")
    return value


def _int64(values: np.ndarray | int, what: str) -> np.ndarray:
    """Return ``values`` as int64, refusing Python ints beyond it (numpy raises OverflowError)
    and floats (which would be truncated)."""
    try:
        out = np.asarray(values)
        if out.dtype.kind == "f":
            raise TypeError(f"{what} must be whole quantums, was float")
        return out if out.dtype == np.int64 else out.astype(np.int64)
    except OverflowError:
        raise LedgerOverflowError(f"{what} would leave the int64 ledger") from None


def checked_add(a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    """Return ``a + b`` for int64 arrays, refusing any element that wraps.

    Two's-complement addition overflows exactly when both operands have one sign and the result
    the other, which the sign bit of ``(a ^ out) & (b ^ out)`` shows.
    """
    out = a + b
    wrapped = ((a ^ out) & (b ^ out)) < 0
    if wrapped.any():
        bad = int(np.argmax(wrapped))
        raise LedgerOverflowError(
            f"{what} would leave the int64 ledger ({int(np.broadcast_to(a, out.shape).flat[bad])}"
            f" + {int(np.broadcast_to(b, out.shape).flat[bad])} quantums)"
        )
    return out


def exact_sum(values: np.ndarray) -> int:
    """Return the exact sum of int64 ``values`` as a Python int.

    numpy's int64 sum wraps silently past 2**63; here each value is split into its high and low
    32 bits, whose int64 sums cannot overflow for fewer than 2**31 values, and the two parts are
    joined in Python's unbounded integers.
    """
    flat = np.ascontiguousarray(values, np.int64).ravel()
    if flat.size >= 2**31:
        return sum(int(exact_sum(part)) for part in np.array_split(flat, 4))
    high = int((flat >> 32).sum())
    low = int((flat & 0xFFFFFFFF).sum())
    return (high << 32) + low
