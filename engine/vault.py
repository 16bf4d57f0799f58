"""The liquidator vault: a venue account that takes over accounts too far gone for the book.

Hyperliquid sends an account whose equity is below 2/3 of its maintenance margin not to the
book but to its liquidator vault (part of HLP): the vault receives the positions at the mark and
the margin the account has left (maintenance margin is not returned), then trades the positions
out on its own. Here the vault is the last row of the ledger, flagged ``is_maker`` (a venue
account: never liquidated, never ranked for ADL, not a trader), so its balance is part of the
ledger sum and its positions of the zero net per market. A taken-over account with negative
equity hands the vault its deficit: that bad debt is the vault's loss, not the insurance fund's.

Every block the vault sells ``unwind_share`` of each position it holds as a market order (the
whole position below ``min_unwind_usd``, at most ``max_unwind_usd_per_block``), paying impact and
taker fee like any trader. Its equity, PnL and takeovers are in the run's summary.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.config import VaultConfig
from engine.events import NOBODY, EventKind, EventLog
from engine.market import MarketState
from engine.state import Ledger
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64, usd_to_quote_quantums
from engine.venue import VenueModel


class MarketOrders(Protocol):
    """Whoever fills market orders on the book (:class:`engine.orders.OrderFlow`)."""

    def market_orders(
        self, idx: np.ndarray, k: int, dsize: np.ndarray, kind: EventKind
    ) -> tuple[float, float]: ...


class Vault:
    """The vault's row in the ledger, its takeovers and its unwinding."""

    def __init__(
        self,
        row: int,
        cfg: VaultConfig,
        ledger: Ledger,
        events: EventLog,
        market: MarketState,
        venue: VenueModel,
    ) -> None:
        self.row = row
        self.cfg = cfg
        self.ledger = ledger
        self.events = events
        self.market = market
        self.venue = venue
        ledger.is_maker[row] = True
        collateral = usd_to_quote_quantums(cfg.collateral_usd, "down")
        ledger.deposit(np.array([row]), 0, np.atleast_1d(collateral))
        self.start_equity = int(collateral)
        self.takeovers = 0
        self.taken_notional = 0
        """Quote quantums of positions taken over, at the mark."""
        self.absorbed = 0
        """Deficits of taken-over accounts the vault paid, quote quantums."""
        self.unwound_notional = 0.0
        """Quote units the vault sold on the book."""

    def take_over(self, rows: np.ndarray, k: int) -> tuple[int, int]:
        """Take over the units ``rows`` of market ``k`` (cross pools: every position; isolated
        pools: the one in ``k``); return (their notional at the mark, the deficits absorbed),
        quote quantums."""
        led, market, v = self.ledger, self.market, self.row
        t = market.t
        notional = absorbed = 0
        for i in rows.tolist():
            cross = bool(led.cross[i])
            held = np.flatnonzero(led.size[i]) if cross else np.array([k])
            for j in held.tolist():
                s = int(led.size[i, j])
                if s == 0:
                    continue
                q = int(np.floor(s * float(market.mark_q[j])))  # at the mark, against the account
                led.trade_one(i, j, -s, q)
                led.trade_one(v, j, s, -q)
                self.events.add_one(t, EventKind.BACKSTOP, i, j, v, -s, q, float(market.mark[j]))
                notional += abs(q)
            left = int(led.quote[i]) if cross else int(led.iso_quote[i, k])
            led.credit_one(i, k, -left)
            led.credit_one(v, k, left)
            self.events.add_one(t, EventKind.BACKSTOP, i, k, v, 0, -left)
            if left < 0:
                self.events.add_one(t, EventKind.BAD_DEBT, i, k, NOBODY, 0, left)
                absorbed -= left
        self.takeovers += rows.size
        self.taken_notional += notional
        self.absorbed += absorbed
        return notional, absorbed

    def unwind(self, orders: MarketOrders) -> None:
        """Sell this block's share of every position the vault holds, on the book."""
        led, cfg = self.ledger, self.cfg
        held = np.flatnonzero(led.size[self.row])
        for k in held.tolist():
            size = int(led.size[self.row, k])
            mark_q = float(self.market.mark_q[k])
            notional = abs(size) * mark_q / QUOTE_QUANTUMS_PER_UNIT
            amount = abs(size)
            if notional >= cfg.min_unwind_usd:
                amount = int(np.ceil(abs(size) * cfg.unwind_share))
                if cfg.max_unwind_usd_per_block and mark_q > 0:
                    cap = int(cfg.max_unwind_usd_per_block * QUOTE_QUANTUMS_PER_UNIT / mark_q)
                    amount = min(amount, max(cap, 1))
            dsize = as_int64(np.array([-np.sign(size) * amount]))
            traded, _ = orders.market_orders(np.array([self.row]), k, dsize, EventKind.VAULT_UNWIND)
            self.unwound_notional += traded

    def equity(self) -> int:
        """Return the vault's equity at the mark, quote quantums."""
        value = self.ledger.size[self.row] * self.market.mark_q
        return int(self.ledger.quote[self.row]) + int(np.floor(value.sum()))

    def summary(self) -> dict[str, float | int]:
        """Return the vault's headline figures, quote units."""
        usd = QUOTE_QUANTUMS_PER_UNIT
        end = self.equity()
        return {
            "vault_takeovers": int(self.takeovers),
            "vault_notional_taken": self.taken_notional / usd,
            "vault_deficits_absorbed": self.absorbed / usd,
            "vault_notional_unwound": float(self.unwound_notional),
            "vault_equity_start": self.start_equity / usd,
            "vault_equity_end": end / usd,
            "vault_pnl": (end - self.start_equity) / usd,
        }
