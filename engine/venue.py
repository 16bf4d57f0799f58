"""The venue's fixed rules of a run: what does not change from the first block to the last.

A :class:`VenueModel` is built once from the config and is read-only (its arrays are not
writeable): margin requirements, liquidation rules, price scales, insurance-fund caps, tick
sizes, fees and loss resolution per market. Everything that moves during a run lives in
:class:`engine.market.MarketState` (prices, oracle, pauses) or in the ledger (balances).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.book import MS_PER_YEAR
from engine.config import MarketConfig, SimConfig, VolScaledMargin
from engine.margin import Requirements, make_requirements
from engine.rules import VenueRules, make_rules
from engine.units import quote_per_base_quantum, usd_to_quote_quantums
from engine.venues import drift_v2

DEFAULT_VOL_HALF_LIFE_TICKS = 60.0
MAKER = 0
"""Row of the market maker, who holds the other side of every trade."""


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def _tier_cap(mk: MarketConfig) -> int:
    """Return what a market's fund may pay over the run (-1: no cap), from its Drift tier."""
    if not mk.contract_tier:
        return -1
    return drift_v2.INSURANCE_TIER_MAX[mk.contract_tier]  # QUOTE precision = quote quantums


def vol_half_life(mk: MarketConfig) -> float:
    """Return the EWMA half-life (ticks) of a market's volatility estimate."""
    if isinstance(mk.margin, VolScaledMargin):
        return mk.margin.ewma_half_life_ticks
    return DEFAULT_VOL_HALF_LIFE_TICKS


@dataclass(frozen=True, slots=True)
class VenueModel:
    """Per-market rules of a venue, indexed by market position (k = 0 .. m - 1)."""

    markets: tuple[MarketConfig, ...]
    tick_ms: int
    dt_years: float
    """One block as a fraction of a year (volatility scaling)."""
    requirements: tuple[Requirements, ...]
    rules: tuple[VenueRules, ...]
    price_scale: np.ndarray
    """Quote quantums per base quantum for a price of 1: value_q = size_q * price * scale."""
    tick_size: np.ndarray
    base_unit: np.ndarray
    """Base units per base quantum."""
    insurance_cap: np.ndarray
    """Most each market's insurance fund may pay in one block, quote quantums (0: no cap)."""
    insurance_total_cap: np.ndarray
    """Most each market's fund may pay over the run, quote quantums (-1: no cap; Drift tiers)."""
    insurance_floor: np.ndarray
    """Quote quantums each fund never pays out (Drift's fund keeps 1)."""
    ewma_decay: np.ndarray
    """Per-block decay of each market's EWMA variance of oracle returns."""
    vol_markets: tuple[int, ...]
    """Markets whose maintenance fraction follows volatility."""
    always_evaluate: bool
    """Some requirement moves while prices stand still: every account is evaluated every block."""
    constant_mm_rates: np.ndarray | None
    """Each market's MM rate bound when none depends on size (else None)."""

    @classmethod
    def from_config(cls, cfg: SimConfig) -> VenueModel:
        markets = cfg.markets
        requirements = tuple(
            make_requirements(mk.margin, mk.base_quantum_exponent) for mk in markets
        )
        rates = [r.max_mm_rate(np.ones(1, np.int64)) for r in requirements]
        constant = (
            _frozen(np.array(rates, np.float64))
            if all(isinstance(x, float) for x in rates)
            else None
        )
        return cls(
            markets=markets,
            tick_ms=cfg.tick_ms,
            dt_years=cfg.tick_ms / MS_PER_YEAR,
            requirements=requirements,
            rules=tuple(make_rules(mk, cfg.tick_ms) for mk in markets),
            price_scale=_frozen(
                np.array([quote_per_base_quantum(1.0, mk.base_quantum_exponent) for mk in markets])
            ),
            tick_size=_frozen(np.array([mk.tick_size for mk in markets])),
            base_unit=_frozen(np.array([10.0**mk.base_quantum_exponent for mk in markets])),
            insurance_cap=_frozen(
                usd_to_quote_quantums(
                    np.array([mk.insurance_cap_per_block_usd for mk in markets]), "down"
                )
            ),
            insurance_total_cap=_frozen(np.array([_tier_cap(mk) for mk in markets], np.int64)),
            insurance_floor=_frozen(
                np.array([1 if mk.contract_tier else 0 for mk in markets], np.int64)
            ),
            ewma_decay=_frozen(np.array([0.5 ** (1.0 / vol_half_life(mk)) for mk in markets])),
            vol_markets=tuple(
                k for k, mk in enumerate(markets) if isinstance(mk.margin, VolScaledMargin)
            ),
            always_evaluate=any(r.moves_without_price for r in requirements),
            constant_mm_rates=constant,
        )

    @property
    def m(self) -> int:
        """Number of markets."""
        return len(self.markets)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(mk.name for mk in self.markets)
