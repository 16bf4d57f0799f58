"""A whole run: its sections, the checks that tie them together, and what it records."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import field
from typing import Annotated, Any

from engine.config.checks import MAX_ACCOUNTS, MAX_STEPS, MAX_USD, require, sci
from engine.config.market import MarketConfig
from engine.config.operations import (
    CircuitBreakerConfig,
    CongestionConfig,
    KeepersConfig,
    OracleConfig,
    VaultConfig,
)
from engine.config.policy import PolicyConfig
from engine.config.population import AccountsConfig, TradersConfig
from engine.config.prices import IndexConfig, ShockConfig
from engine.config.ranges import Count, NonNegativeInt, Range, section


@section
class HistoryConfig:
    """What a run records for training: sampled account rows and their breach labels."""

    sample_every_ticks: Annotated[int, Range(ge=0, note="(0 = no sampling)")] = 20
    """Blocks between account samples (0: no account table, e.g. for pure engine runs)."""
    horizons_minutes: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0)

    def __post_init__(self) -> None:
        require(
            len(self.horizons_minutes) >= 1 and all(h > 0 for h in self.horizons_minutes),
            "horizons_minutes",
            f"must be positive and at least one, was {list(self.horizons_minutes)}",
        )


@section
class SimConfig:
    """A whole run."""

    markets: tuple[MarketConfig, ...]
    name: str = "custom"
    seed: NonNegativeInt = 0
    steps: int = 1_440
    tick_ms: Count = 60_000
    venue: str = "generic"
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    keepers: KeepersConfig = field(default_factory=KeepersConfig)
    traders: TradersConfig = field(default_factory=TradersConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    congestion: CongestionConfig = field(default_factory=CongestionConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    shocks: tuple[ShockConfig, ...] = ()

    def __post_init__(self) -> None:
        require(len(self.markets) >= 1, "markets", "must hold at least one market, was empty")
        names = [m.name for m in self.markets]
        require(len(set(names)) == len(names), "markets", f"names must be unique, was {names}")
        require(
            re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name) is not None,
            "name",
            f"must be letters, digits, '_', '-' or '.', was {self.name!r}",
        )
        if self.index.model == "replay":
            require(
                self.index.replay_market in names,
                "index.replay_market",
                f"must name a market ({', '.join(names)}), was {self.index.replay_market!r}",
            )
            require(
                60_000 % self.tick_ms == 0,
                "tick_ms",
                f"must divide a 1-minute bar (60000) for a replay, was {self.tick_ms}",
            )
        if len(self.markets) > 1:
            lower = -1.0 / (len(self.markets) - 1)
            for name in ("correlation", "stress_correlation"):
                v = getattr(self.index, name)
                require(
                    v > lower,
                    f"index.{name}",
                    f"must be above {lower:.3g} for {len(self.markets)} markets (a valid "
                    f"correlation matrix), was {v}",
                )
        for i, shock in enumerate(self.shocks):
            require(
                shock.market in names,
                f"shocks.{i}.market",
                f"must name a market ({', '.join(names)}), was {shock.market!r}",
            )
        require(
            self.steps >= 1 or (self.steps == 0 and self.index.model == "replay"),
            "steps",
            f"must be >= 1 (or 0 for a whole replay), was {self.steps}",
        )
        require(
            self.steps <= MAX_STEPS, "steps", f"must be at most {MAX_STEPS:,}, was {self.steps}"
        )
        require(
            self.accounts.count <= MAX_ACCOUNTS,
            "accounts.count",
            f"must be at most {MAX_ACCOUNTS:,}, was {self.accounts.count}",
        )
        opening = self.accounts.maker_collateral_usd + sum(
            m.insurance_fund_usd for m in self.markets
        )
        require(
            opening <= MAX_USD,
            "accounts.maker_collateral_usd",
            f"plus every market's insurance_fund_usd must be at most {sci(MAX_USD)} (the "
            f"money a run starts with must leave the int64 ledger room), was {sci(opening)}",
        )
        need, have = self.memory_estimate(), physical_memory()
        require(
            have is None or need <= 0.8 * have,
            "accounts.count",
            f"and steps need about {need / 2**30:.1f} GiB, more than 80% of this machine's "
            f"{(have or 0) / 2**30:.1f} GiB, was {self.accounts.count:,} accounts x "
            f"{self.steps:,} steps",
        )

    def memory_estimate(self) -> int:
        """Return about how many bytes a run of this config holds at its peak: the account
        columns and their per-block scratch, the per-block market records, the sampled
        account history and the event log (an upper estimate, for refusing runs that cannot
        fit before anything is allocated)."""
        n, m = self.accounts.count, len(self.markets)
        steps = max(self.steps, 1)
        accounts = n * (m * 8 * 24 + 256)
        records = steps * m * 8 * 64
        every = self.history.sample_every_ticks
        history = 0 if every <= 0 else (steps // every + 1) * n * 8 * 40
        events = steps * min(n, 10_000) * 8
        return int(accounts + records + history + events)

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved config as plain data (what the manifest records)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Return a stable SHA-256 of the resolved config."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def physical_memory() -> int | None:
    """Return this machine's memory in bytes, or None where it cannot be read."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
