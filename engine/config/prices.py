"""How the external index moves: its process, cross-market correlation, replays and shocks."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.config.checks import require
from engine.config.ranges import Count, NonNegative, Positive, Range, section

Correlation = Annotated[float, Range(gt=-1, lt=1)]


@section
class IndexConfig:
    """How the external index moves: the process, its parameters, and cross-market correlation.

    Volatility targets come from each market's ``sigma_annual``. ``correlation`` is the
    correlation between every pair of markets' shocks (calm regime); ``stress_correlation`` the
    same in the stress regime of ``regime``.
    """

    model: Literal["gbm", "garch", "jump", "regime", "replay"] = "gbm"
    correlation: Correlation = 0.0
    stress_correlation: Correlation = 0.0
    garch_alpha: NonNegative = 0.08
    garch_beta: NonNegative = 0.90
    jump_intensity_per_day: NonNegative = 2.0
    jump_mean: float = -0.01
    jump_std: NonNegative = 0.02
    regime_enter_per_day: NonNegative = 0.5
    regime_exit_per_day: NonNegative = 12.0
    stress_vol_multiplier: Positive = 4.0
    stress_drift_annual: float = -20.0
    stress_jump_multiplier: NonNegative = 5.0
    replay_file: str = ""
    replay_market: str = ""
    replay_gaps: Literal["split", "refuse"] = "refuse"
    replay_segment: int = -1
    """Which gap-free segment to replay when gaps are split (-1: the longest)."""

    def __post_init__(self) -> None:
        require(
            self.garch_alpha + self.garch_beta < 1,
            "garch_beta",
            f"plus garch_alpha must be below 1 (stationary), was "
            f"{self.garch_alpha + self.garch_beta}",
        )
        require(
            self.model != "replay" or bool(self.replay_file),
            "replay_file",
            "must name a 1-minute bar file when model is 'replay', was ''",
        )
        require(
            self.replay_segment >= -1,
            "replay_segment",
            f"must be >= 0 (or -1 for the longest), was {self.replay_segment}",
        )


@section
class ShockConfig:
    """A deterministic move of one market's index, added to its random path (a crash or a gap)."""

    market: str
    tick: Count
    log_return: float
    over_ticks: Count = 1

    def __post_init__(self) -> None:
        require(
            abs(self.log_return) <= 5,
            "log_return",
            f"must be within +/-5 (a factor of 148), was {self.log_return}",
        )
