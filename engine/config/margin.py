"""Margin models: one section each; the TOML key ``model`` picks which."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.config.checks import require
from engine.config.ranges import Count, NonNegative, Positive, Range, section


@section
class Bracket:
    """One notional bracket: rates apply to the part of a position above ``floor_usd``."""

    floor_usd: float
    initial_margin: Annotated[float, Range(le=1)]
    maintenance_margin: Positive
    maintenance_amount_usd: float = -1.0
    """The venue's published maintenance amount (Binance's "cum"): MM = notional x rate - amount
    in this bracket. The brackets imply it; when given (not -1) it must match them, so a table
    copied from a venue is checked rather than trusted."""

    def __post_init__(self) -> None:
        require(
            self.maintenance_amount_usd == -1.0 or self.maintenance_amount_usd >= 0,
            "maintenance_amount_usd",
            f"must be -1 (not given) or >= 0, was {self.maintenance_amount_usd}",
        )
        require(
            self.floor_usd >= 0 and self.floor_usd == int(self.floor_usd),
            "floor_usd",
            f"must be a whole non-negative number of quote units, was {self.floor_usd}",
        )
        require(
            self.maintenance_margin < self.initial_margin,
            "maintenance_margin",
            f"must be below initial_margin, was {self.maintenance_margin} >= {self.initial_margin}",
        )


@section
class TieredMargin:
    """Static brackets with maintenance deduction (Binance / Hyperliquid)."""

    brackets: tuple[Bracket, ...]
    model: Literal["tiered"] = "tiered"

    def __post_init__(self) -> None:
        require(len(self.brackets) > 0, "brackets", "must hold at least one bracket, was empty")
        require(
            self.brackets[0].floor_usd == 0,
            "brackets.0.floor_usd",
            f"must be 0, was {self.brackets[0].floor_usd}",
        )
        for i in range(1, len(self.brackets)):
            a, b = self.brackets[i - 1], self.brackets[i]
            require(
                b.floor_usd > a.floor_usd,
                f"brackets.{i}.floor_usd",
                f"must rise from bracket to bracket, was {b.floor_usd} <= {a.floor_usd}",
            )
            require(
                b.maintenance_margin >= a.maintenance_margin
                and b.initial_margin >= a.initial_margin,
                f"brackets.{i}",
                "rates must not fall as notional rises (margin must grow with size), "
                f"was {b.initial_margin}/{b.maintenance_margin} after "
                f"{a.initial_margin}/{a.maintenance_margin}",
            )
        for i, (amount, b) in enumerate(
            zip(maintenance_amounts(self.brackets), self.brackets, strict=True)
        ):
            given = b.maintenance_amount_usd
            require(
                given == -1.0 or abs(given - amount) <= 0.01,
                f"brackets.{i}.maintenance_amount_usd",
                f"must be {amount:,.2f}, what the brackets below it imply "
                f"(sum of floor x rate step), was {given:,.2f}",
            )


def maintenance_amounts(brackets: tuple[Bracket, ...]) -> list[float]:
    """Return each bracket's maintenance amount in quote units: the deduction that makes
    notional x rate - amount equal the bracket-by-bracket sum (Binance's "cum":
    amount_i = amount_(i-1) + floor_i x (rate_i - rate_(i-1)))."""
    amounts, amount = [], 0.0
    for i, b in enumerate(brackets):
        if i:
            amount += b.floor_usd * (b.maintenance_margin - brackets[i - 1].maintenance_margin)
        amounts.append(round(amount, 6))
    return amounts


@section
class OIScaledMargin:
    """dYdX v4: open-interest-scaled initial margin (OIMF); maintenance from the base IMF."""

    initial_margin: Annotated[float, Range(gt=0, le=1)]
    maintenance_fraction: Annotated[
        float, Range(gt=0, lt=1, note="so maintenance is below initial margin")
    ]
    oi_lower_cap_usd: float = 0.0
    oi_upper_cap_usd: float = 0.0
    model: Literal["oi_scaled"] = "oi_scaled"

    def __post_init__(self) -> None:
        require(
            self.oi_upper_cap_usd == 0 or self.oi_upper_cap_usd > self.oi_lower_cap_usd >= 0,
            "oi_upper_cap_usd",
            f"must be 0 (disabled) or above oi_lower_cap_usd >= 0, was {self.oi_upper_cap_usd} "
            f"with lower {self.oi_lower_cap_usd}",
        )


@section
class SizePremiumMargin:
    """Drift v2: margin ratios raised by sqrt(size) x imf_factor for large positions."""

    initial_margin: float
    maintenance_margin: float
    imf_factor: NonNegative = 0.0
    model: Literal["size_premium"] = "size_premium"

    def __post_init__(self) -> None:
        require(
            0 < self.maintenance_margin < self.initial_margin <= 1,
            "maintenance_margin",
            f"must be positive and below initial_margin <= 1, was {self.maintenance_margin} >= "
            f"{self.initial_margin}"
            if self.maintenance_margin >= self.initial_margin
            else f"must be positive and below initial_margin <= 1, was {self.maintenance_margin}",
        )


@section
class VolScaledMargin:
    """Volatility-scaled margin: MMF = clip(z x EWMA sigma x sqrt(MPOR), floor, cap).

    The rate may rise by at most ``max_rise_per_step`` (relative) per step: the
    anti-procyclicality rule that stops margin from jumping in the middle of a crash.
    """

    z: Positive = 3.0
    margin_period_ticks: Count = 60
    ewma_half_life_ticks: Positive = 60.0
    floor_maintenance: float = 0.01
    cap_maintenance: float = 0.5
    max_rise_per_step: Positive = 0.05
    initial_over_maintenance: Annotated[
        float, Range(gt=1, note="so maintenance is below initial margin")
    ] = 1.5
    model: Literal["vol_scaled"] = "vol_scaled"

    def __post_init__(self) -> None:
        require(
            0 < self.floor_maintenance < self.cap_maintenance,
            "floor_maintenance",
            f"must be positive and below cap_maintenance, was {self.floor_maintenance} >= "
            f"{self.cap_maintenance}",
        )
        require(
            self.cap_maintenance * self.initial_over_maintenance <= 1,
            "cap_maintenance",
            f"times initial_over_maintenance must be <= 1, was "
            f"{self.cap_maintenance * self.initial_over_maintenance}",
        )


MarginModel = TieredMargin | OIScaledMargin | SizePremiumMargin | VolScaledMargin
MARGIN_MODELS: dict[str, type] = {
    "tiered": TieredMargin,
    "oi_scaled": OIScaledMargin,
    "size_premium": SizePremiumMargin,
    "vol_scaled": VolScaledMargin,
}
