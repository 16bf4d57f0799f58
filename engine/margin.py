"""Margin: initial margin (IM) gates new exposure; maintenance margin (MM) triggers liquidation.

Each model turns per-account position notionals of one market into IM and MM in quote quantums.
All requirement kernels are exact integer arithmetic (:mod:`engine.fixedpoint`), round up (against
the account), and are monotone in position size. Models for a venue preset call that venue's own
formula functions (dYdX OIMF, Drift size premium, Hyperliquid deductions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.config import (
    MarginModel,
    OIScaledMargin,
    SizePremiumMargin,
    TieredMargin,
    VolScaledMargin,
)
from engine.fixedpoint import PPM, mul_ppm
from engine.units import QUOTE_QUANTUMS_PER_UNIT, as_int64
from engine.venues import drift_v2, dydx_v4, hyperliquid


@dataclass(frozen=True, slots=True)
class MarginContext:
    """Per-market, per-step inputs that a requirement may depend on."""

    oi_notional: int
    """Open interest x oracle price, quote quantums (dYdX OIMF)."""
    vol_mmf_ppm: int
    """Current volatility-scaled maintenance fraction, ppm (vol_scaled only)."""


def to_ppm(fraction: float) -> int:
    """Return a fraction as integer parts per million, rounded to nearest."""
    return int(round(fraction * PPM))


class Requirements:
    """Base class: ``requirements(notional, size) -> (im, mm)`` for one market."""

    moves_without_price = False
    """True when MM can change while prices stand still (then every account is evaluated every
    block instead of screened by how far prices moved)."""

    def requirements(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (IM, MM), each int64 of shape (n,), quote quantums.

        ``notional``: int64 (n,), |position| x price in quote quantums; ``size``: int64 (n,) base
        quantums (signed; only its magnitude matters).
        """
        raise NotImplementedError

    def maintenance(self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext) -> np.ndarray:
        """Return MM only (the per-block path): int64 (n,), quote quantums."""
        return self.requirements(notional, size, ctx)[1]

    def maintenance_and_rate(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray | float]:
        """Return (:meth:`maintenance`, :meth:`max_mm_rate`) of the same positions (one pass
        where both need the same work)."""
        return self.maintenance(notional, size, ctx), self.max_mm_rate(np.abs(size))

    def max_mm_rate(self, size: np.ndarray) -> np.ndarray | float:
        """Return an upper bound on d(MM)/d(notional) for positions of these sizes.

        The step loop uses it to skip accounts that no price move since their last evaluation
        could have brought into breach. ``inf`` means "evaluate every step".
        """
        raise NotImplementedError


class TieredRequirements(Requirements):
    """Brackets with deduction: ``req = ceil(notional x rate_b) - deduction_b``, continuous."""

    def __init__(self, cfg: TieredMargin) -> None:
        floors = [int(b.floor_usd) * QUOTE_QUANTUMS_PER_UNIT for b in cfg.brackets]
        im = [to_ppm(b.initial_margin) for b in cfg.brackets]
        mm = [to_ppm(b.maintenance_margin) for b in cfg.brackets]
        self.floors = np.asarray(floors, dtype=np.int64)
        self.im_ppm = np.asarray(im, dtype=np.int64)
        self.mm_ppm = np.asarray(mm, dtype=np.int64)
        self.im_deduction = np.asarray(hyperliquid.maintenance_deductions(floors, im), np.int64)
        self.mm_deduction = np.asarray(hyperliquid.maintenance_deductions(floors, mm), np.int64)

    def _first_bracket_only(self, n: np.ndarray) -> bool:
        """True when every notional of ``n`` lies in the first bracket (the usual block: most
        positions are far below the second floor, and one rate needs no bracket search)."""
        return len(self.floors) == 1 or not n.size or int(n.max()) < int(self.floors[1])

    def requirements(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray]:
        n = np.abs(notional)
        if self._first_bracket_only(n):
            # The first bracket's floor is 0, so its deduction is 0.
            return mul_ppm(n, int(self.im_ppm[0]), "up"), mul_ppm(n, int(self.mm_ppm[0]), "up")
        b = np.searchsorted(self.floors, n, side="right") - 1
        im = mul_ppm(n, self.im_ppm[b], "up") - self.im_deduction[b]
        mm = mul_ppm(n, self.mm_ppm[b], "up") - self.mm_deduction[b]
        return im, mm

    def maintenance(self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext) -> np.ndarray:
        n = np.abs(notional)
        if self._first_bracket_only(n):
            return mul_ppm(n, int(self.mm_ppm[0]), "up")
        b = np.searchsorted(self.floors, n, side="right") - 1
        return mul_ppm(n, self.mm_ppm[b], "up") - self.mm_deduction[b]

    def max_mm_rate(self, size: np.ndarray) -> np.ndarray | float:
        return float(self.mm_ppm.max()) / PPM


class OIScaledRequirements(Requirements):
    """dYdX v4: IM from the open-interest-scaled IMF, MM from the base IMF."""

    def __init__(self, cfg: OIScaledMargin) -> None:
        self.imf_ppm = to_ppm(cfg.initial_margin)
        self.fraction_ppm = to_ppm(cfg.maintenance_fraction)
        self.lower = int(round(cfg.oi_lower_cap_usd * QUOTE_QUANTUMS_PER_UNIT))
        self.upper = int(round(cfg.oi_upper_cap_usd * QUOTE_QUANTUMS_PER_UNIT))

    def requirements(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray]:
        adjusted = dydx_v4.adjusted_initial_margin_ppm(
            self.imf_ppm, self.lower, self.upper, ctx.oi_notional
        )
        im = dydx_v4.initial_margin_quote_quantums_array(notional, self.imf_ppm, adjusted)
        mm = dydx_v4.maintenance_margin_quote_quantums_array(
            notional, self.imf_ppm, self.fraction_ppm
        )
        return im, mm

    def maintenance(self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext) -> np.ndarray:
        return dydx_v4.maintenance_margin_quote_quantums_array(
            notional, self.imf_ppm, self.fraction_ppm
        )

    def max_mm_rate(self, size: np.ndarray) -> np.ndarray | float:
        return self.imf_ppm * self.fraction_ppm / PPM / PPM


class SizePremiumRequirements(Requirements):
    """Drift v2: margin ratios raised by the size premium, in Drift's MARGIN precision."""

    def __init__(self, cfg: SizePremiumMargin, base_quantum_exponent: int) -> None:
        self.im_ratio = int(round(cfg.initial_margin * drift_v2.MARGIN_PRECISION))
        self.mm_ratio = int(round(cfg.maintenance_margin * drift_v2.MARGIN_PRECISION))
        self.imf_factor = int(round(cfg.imf_factor * drift_v2.SPOT_IMF_PRECISION))
        self.exponent = base_quantum_exponent
        self._premium_from = {
            w: self._first_premium_size(w) for w in (self.im_ratio, self.mm_ratio)
        }

    def drift_base(self, size: np.ndarray) -> np.ndarray:
        """Return sizes in Drift's BASE precision (1e9) from base quantums."""
        shift = 9 + self.exponent
        if shift >= 0:
            return np.abs(size) * 10**shift
        return np.abs(size) // 10**-shift

    def _ratio(self, size: np.ndarray, weight: int) -> np.ndarray | int:
        """Return the margin ratios of ``size`` (base quantums) for base ``weight``: an int
        when no position is large enough for a size premium (the usual block)."""
        large = np.abs(size) >= self._premium_from[weight]
        if not large.any():
            return weight
        # The premium is elementwise: compute it for the few large positions only.
        out = np.full(np.shape(size), weight, np.int64)
        out[large] = drift_v2.calculate_size_premium_liability_weight_array(
            self.drift_base(np.asarray(size)[large]), self.imf_factor, weight
        )
        return out

    def _first_premium_size(self, weight: int) -> int:
        """Return the smallest |size| in base quantums whose size premium can pass ``weight``
        (Drift's threshold in BASE precision, 1e9, converted rounding up)."""
        first = drift_v2.size_premium_threshold(self.imf_factor, weight)
        shift = 9 + self.exponent
        if shift >= 0:
            return -(-first // 10**shift)
        return first * 10**-shift

    def requirements(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray]:
        im_ratio, mm_ratio = self._ratio(size, self.im_ratio), self._ratio(size, self.mm_ratio)
        scale = PPM // drift_v2.MARGIN_PRECISION
        n = np.abs(notional)
        return mul_ppm(n, im_ratio * scale, "up"), mul_ppm(n, mm_ratio * scale, "up")

    def maintenance(self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext) -> np.ndarray:
        scale = PPM // drift_v2.MARGIN_PRECISION
        return mul_ppm(np.abs(notional), self._ratio(size, self.mm_ratio) * scale, "up")

    def max_mm_rate(self, size: np.ndarray) -> np.ndarray | float:
        # For a fixed size the ratio is fixed: MM is linear in price.
        return self._ratio(size, self.mm_ratio) / drift_v2.MARGIN_PRECISION

    def maintenance_and_rate(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray | float]:
        ratio = self._ratio(size, self.mm_ratio)
        scale = PPM // drift_v2.MARGIN_PRECISION
        return mul_ppm(np.abs(notional), ratio * scale, "up"), ratio / drift_v2.MARGIN_PRECISION


class VolScaledRequirements(Requirements):
    """MMF from the market's EWMA volatility (updated by :func:`vol_scaled_mmf_ppm` each step)."""

    moves_without_price = True

    def __init__(self, cfg: VolScaledMargin) -> None:
        self.cfg = cfg

    def requirements(
        self, notional: np.ndarray, size: np.ndarray, ctx: MarginContext
    ) -> tuple[np.ndarray, np.ndarray]:
        mm_ppm = ctx.vol_mmf_ppm
        im_ppm = min(PPM, int(math.ceil(mm_ppm * self.cfg.initial_over_maintenance)))
        n = np.abs(notional)
        return mul_ppm(n, im_ppm, "up"), mul_ppm(n, mm_ppm, "up")

    def max_mm_rate(self, size: np.ndarray) -> np.ndarray | float:
        return math.inf  # the rate itself moves every step


def vol_scaled_mmf_ppm(sigma_per_tick: float, previous_ppm: int, cfg: VolScaledMargin) -> int:
    """Return the next maintenance fraction (ppm) of a volatility-scaled market.

    Target = clip(z x sigma x sqrt(margin period), floor, cap); the fraction may fall to the
    target at once but may rise by at most ``max_rise_per_step`` (relative) per step.
    """
    target = cfg.z * sigma_per_tick * math.sqrt(cfg.margin_period_ticks)
    target = min(max(target, cfg.floor_maintenance), cfg.cap_maintenance)
    target_ppm = to_ppm(target)
    if previous_ppm <= 0:
        return target_ppm
    ceiling = int(math.floor(previous_ppm * (1.0 + cfg.max_rise_per_step)))
    return min(target_ppm, max(ceiling, previous_ppm))


def make_requirements(model: MarginModel, base_quantum_exponent: int) -> Requirements:
    """Return the requirement kernel for a market's configured margin model."""
    if isinstance(model, TieredMargin):
        return TieredRequirements(model)
    if isinstance(model, OIScaledMargin):
        return OIScaledRequirements(model)
    if isinstance(model, SizePremiumMargin):
        return SizePremiumRequirements(model, base_quantum_exponent)
    if isinstance(model, VolScaledMargin):
        return VolScaledRequirements(model)
    raise TypeError(f"unknown margin model {type(model).__name__}")


class RequirementScale:
    """Multipliers a margin policy puts on the margin models' requirements (all >= 1).

    The policy (:class:`engine.policy.Policy`) is the only writer; valuation, liquidation, the
    order gate and the breach screen read requirements through :meth:`scale`.
    """

    __slots__ = ("account_factor", "account_factor_bound", "im_factor", "m", "mm_factor")

    def __init__(self, m: int) -> None:
        self.m = m
        self.mm_factor: np.ndarray | None = None
        """Per-market multiplier of MM, float64 (m,), or None for 1 everywhere."""
        self.im_factor: np.ndarray | None = None
        self.account_factor: np.ndarray | None = None
        """Per-account multiplier of MM and IM, float64 (n,), or None for 1 everywhere."""
        self.account_factor_bound = 1.0
        """An upper bound of account_factor (the breach screen's MM-growth bound uses it)."""

    def scale(self, req: np.ndarray, rows: np.ndarray | slice, initial: bool) -> np.ndarray:
        """Return requirements ``req`` (r, m) of accounts ``rows`` under the multipliers,
        rounded up (a multiplier of 1 leaves them untouched)."""
        market = self.im_factor if initial else self.mm_factor
        account = self.account_factor
        if market is None and account is None:
            return req
        factor = np.ones(req.shape[1]) if market is None else market
        if account is not None:
            mine = account[rows]
            if not (mine != 1.0).any():
                if market is None:
                    return req
            else:
                factor = factor[None, :] * mine[:, None]
        return as_int64(np.ceil(req * factor))

    def mm_growth_bound(self) -> np.ndarray:
        """Return per market an upper bound of the MM multiplier of any account, (m,)."""
        market = self.mm_factor if self.mm_factor is not None else 1.0
        return np.ones(self.m) * market * self.account_factor_bound
