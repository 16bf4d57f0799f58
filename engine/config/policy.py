"""The margin policy: how the venue sets requirements on top of each market's margin model."""

from __future__ import annotations

import math
from typing import Literal

from engine.config.checks import require
from engine.config.ranges import (
    Count,
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveShare,
    section,
)

POLICIES = ("static", "vol_scaled", "oi_scaled", "predictive")


@section
class PolicyConfig:
    """How the venue sets requirements on top of each market's margin model, and acts early.

    ``knob`` is the policy's one aggressiveness setting (swept for capital-cost frontiers):

    - ``static``: every requirement is multiplied by knob (>= 1; 1 = the venue's own tiers);
    - ``vol_scaled``: maintenance rate = max(base, knob x EWMA sigma x sqrt(margin period)),
      rising at most ``max_rise_per_step`` per block (anti-procyclicality); IM scales with it;
    - ``oi_scaled``: IM multiplied by 1 + knob x (open interest / opening open interest - 1)
      when open interest has grown (dYdX-style), at most to 100% IM;
    - ``predictive``: acts on forecast breach probabilities p from a forecaster; with the risk
      score s = knob x p, each scored account's MM and IM get a multiplier 1 + min(s,
      addon_cap); new risk-increasing orders in a market are refused while the forecast breach
      notional (sum of s x notional) exceeds ``gate_depth_multiple`` x its book depth per 1%;
      accounts with s >= ``derisk_score`` are reduced by ``derisk_fraction`` of each position
      per block, at most ``derisk_depth_share`` of the book's depth per market and block;
      accounts with s >= ``warn_score`` get a margin call (answered like a breach, with the
      traders' top-up probability and delay), at most once per ``warn_cooldown_ticks``.
      Requirements never fall below the base; when the forecaster fails, the block runs the
      reactive (static, knob 1) policy and the fallback is counted. Accounts without a
      position or already in breach are not scored and get no early action (the reactive path
      handles a breach); an account with a top-up pending gets no margin call.

    With ``allocation = "budget"`` the predictive policy instead spends a budget of knob actions
    per forecast (every ``cadence_ticks`` blocks; knob a whole number): the forecaster returns
    each scored account's breach probability and expected bad debt within H, and the accounts
    whose best action avoids the most expected loss per unit of its cost get it — a margin call
    (avoids the expected loss if answered; costs the deposit back to the traders' top-up target)
    or a de-risk of ``derisk_fraction`` (avoids that fraction of it; costs the fill's spread,
    square-root impact and taker fee). No add-ons or gating: every lever it pulls is one of the
    budget's actions.
    """

    name: Literal["static", "vol_scaled", "oi_scaled", "predictive"] = "static"
    knob: float = 1.0
    margin_period_ticks: Count = 60
    max_rise_per_step: Positive = 0.05
    cadence_ticks: Count = 4
    """Blocks between forecasts (predictive)."""
    risk_band_sigmas: NonNegative = 6.0
    """Score only accounts whose margin could be used up by a move of this many sigma x
    sqrt(horizon) (0: score every account)."""
    horizon_minutes: Positive = 5.0
    addon_cap: NonNegative = 1.0
    gate_depth_multiple: NonNegative = 1.0
    derisk_score: Positive = 0.5
    derisk_fraction: PositiveShare = 0.1
    derisk_depth_share: NonNegative = 0.05
    warn_score: Positive = 0.2
    warn_cooldown_ticks: NonNegativeInt = 20
    forecast_timeout_s: NonNegative = 0.0
    """A forecast that takes longer is discarded as a fallback (0: no limit; with a limit, the
    outputs of a run depend on the machine's speed)."""
    allocation: Literal["threshold", "budget"] = "threshold"
    """How the predictive policy turns forecasts into actions (see above)."""
    budget_actions: Literal["best", "call", "derisk"] = "best"
    """Which actions the budget may buy: the better of a margin call and a de-risk for each
    account, or only one kind."""
    act_on_breached: bool = False
    """Score and act on accounts already in breach too (the ``breached_only`` control arm of
    an evaluation: what the predictive mechanics buy as reactive extras). By default an account
    in breach is left to the reactive path alone."""

    def __post_init__(self) -> None:
        require(
            self.name in POLICIES,
            "name",
            f"must be one of {', '.join(POLICIES)}, was {self.name!r}",
        )
        require(
            math.isfinite(self.knob) and self.knob >= 0, "knob", f"must be >= 0, was {self.knob}"
        )
        require(
            self.name != "static" or self.knob >= 1,
            "knob",
            f"must be >= 1 for the static policy (requirements never fall below the venue's), "
            f"was {self.knob}",
        )
        require(
            self.allocation in ("threshold", "budget"),
            "allocation",
            f"must be 'threshold' or 'budget', was {self.allocation!r}",
        )
        require(
            self.budget_actions in ("best", "call", "derisk"),
            "budget_actions",
            f"must be 'best', 'call' or 'derisk', was {self.budget_actions!r}",
        )
        require(
            self.allocation != "budget" or self.knob == int(self.knob),
            "knob",
            f"must be a whole number of actions per forecast with the budget allocation, "
            f"was {self.knob}",
        )
