"""Random draws keyed by what they are for, so that paired runs stay paired.

Two runs of the same config and seed under different policies must face the same randomness
wherever their states agree: otherwise one changed liquidation (which excites order arrivals)
shifts every later draw of a sequential generator, and the two runs' bad debts decorrelate.
So no draw during the run comes from a shared sequential stream. Instead:

* **Per block and purpose** — :meth:`Draws.block` returns numpy's counter-based Philox generator
  whose key is the run's and whose counter starts at (purpose, block). What a block draws for one
  purpose never depends on how much was drawn before, in this block or earlier ones.
* **Per account and purpose** — :meth:`Draws.account_uniforms` gives account ``a`` its
  ``j``-th uniform for a purpose (say, whether it answers its j-th margin call), whatever the
  block and whatever other accounts were asked: the same account asked at another block answers
  the same way.

Within a block, draws that depend on a count (how many orders arrive) are prefix-consistent:
numpy fills arrays from a generator in sequence, so the first k values of a draw of n >= k are
the values of a draw of k. :func:`poisson_count` uses this to couple Poisson counts across
intensities (counting unit-rate arrivals before the intensity), so two runs whose intensities
differ a little see the same orders, plus or minus the last few.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Purpose(IntEnum):
    """What a stream of draws is for (part of its Philox counter; never renumber)."""

    ORACLE_UPDATE = 1
    ORDER_ARRIVALS = 2
    ORDER_PRIORITY = 3
    ORDER_MARKET = 4
    ORDER_SIDE = 5
    ORDER_SIZE = 6
    ORDER_CLOSE = 7
    ORDER_CLOSE_FRACTION = 8
    BREACH_TOPUP = 9
    CALL_TOPUP = 10
    RANDOM_RANKING = 11
    DELEVERAGING_OFFSET = 12
    EXTERNAL_BASIS = 13


class Draws:
    """Every in-run random draw of one run, keyed by purpose, block or account."""

    def __init__(self, seed: np.random.SeedSequence, accounts: int) -> None:
        """``seed`` is the run's stream for in-run draws; ``accounts`` sizes the per-account
        tables (ids 0 .. accounts - 1)."""
        self.key = seed.generate_state(2, np.uint64)
        self.accounts = accounts
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        self._asked = {p: np.zeros(accounts, np.int64) for p in Purpose}

    def block(self, purpose: Purpose, t: int) -> np.random.Generator:
        """Return the generator of ``purpose`` at block ``t`` (a fresh one per call)."""
        # Philox4x64 advances the lowest counter word first: 2**64 draws before reaching the
        # words that hold (t, purpose), so streams of different blocks never overlap.
        counter = np.array([0, 0, t, int(purpose)], np.uint64)
        return np.random.Generator(np.random.Philox(counter=counter, key=self.key))

    def block_uniform(self, purpose: Purpose, t: int, index: int) -> float:
        """Return entry ``index`` of ``block(purpose, t).random(n)`` (any n > index) without
        drawing the entries before it: Philox4x64 makes four 64-bit outputs per counter step
        and a double takes one, so the generator skips ``index // 4`` steps."""
        counter = np.array([0, 0, t, int(purpose)], np.uint64)
        bits = np.random.Philox(counter=counter, key=self.key)
        bits.advance(index // 4)
        return float(np.random.Generator(bits).random(index % 4 + 1)[-1])

    def account_uniforms(self, purpose: Purpose, accounts: np.ndarray) -> np.ndarray:
        """Return float64 (len(accounts),): each account's next uniform of ``purpose``.

        Account ``a`` asked for the j-th time gets entry ``a`` of table j of the purpose; the
        tables are drawn once per (purpose, j) from their own counter range. Ids must be unique.
        """
        asked = self._asked[purpose]
        ordinal = asked[accounts]
        out = np.empty(accounts.size)
        for j in np.unique(ordinal):
            sel = ordinal == j
            out[sel] = self._table(purpose, int(j))[accounts[sel]]
        asked[accounts] += 1
        return out

    def _table(self, purpose: Purpose, j: int) -> np.ndarray:
        table = self._tables.get((int(purpose), j))
        if table is None:
            # Block numbers are non-negative: -(1 + j) as uint64 is a counter no block uses.
            counter = np.array([0, 0, np.uint64(2**64 - 1 - j), int(purpose)], np.uint64)
            g = np.random.Generator(np.random.Philox(counter=counter, key=self.key))
            table = g.random(self.accounts)
            self._tables[int(purpose), j] = table
        return table


def poisson_count(rng: np.random.Generator, intensity: float) -> int:
    """Return a Poisson(``intensity``) count as the number of unit-rate arrivals in
    [0, intensity]: the gaps are standard exponentials drawn in sequence, so the counts of two
    intensities drawn from the same generator state are monotone in the intensity and share
    every arrival below the smaller one."""
    if intensity <= 0.0:
        return 0
    chunk = int(intensity + 6.0 * np.sqrt(intensity) + 16.0)
    total, count = 0.0, 0
    while True:
        arrivals = total + np.cumsum(rng.standard_exponential(chunk))
        inside = int(np.searchsorted(arrivals, intensity, side="right"))
        count += inside
        if inside < chunk:
            return count
        total = float(arrivals[-1])
