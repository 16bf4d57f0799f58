"""The budget allocation: K actions per forecast, on the accounts that avoid most per unit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.config import ConfigError, load_config
from engine.forecast import ForecastRequest
from engine.forecasters import OracleForecaster
from engine.sim import Simulation

CASCADE = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "cascade.toml"


def _cascade(**policy) -> object:
    cfg = load_config(CASCADE, ("seed=3", "accounts.count=1500", "steps=560", "shocks.0.tick=480"))
    chosen = dataclasses.replace(cfg.policy, name="predictive", allocation="budget", **policy)
    return dataclasses.replace(cfg, policy=chosen)


class LossByAccount:
    """Forecasts p = 0.5 and an expected loss that grows with the account number (so the
    ranking is known), and records what it was asked."""

    def __init__(self, loss: float | None = None) -> None:
        self.asked: list[np.ndarray] = []
        self.loss = loss

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        return np.full(len(request.accounts["account"]), 0.5)

    def predict_breach_and_loss(self, request: ForecastRequest):
        acct = np.asarray(request.accounts["account"], np.float64)
        self.asked.append(acct.astype(np.int64))
        loss = acct * 10.0 if self.loss is None else np.full(acct.size, self.loss)
        return np.full(acct.size, 0.5), loss


def test_the_budget_is_spent_on_at_most_k_accounts_per_forecast_and_nothing_else():
    k = 7
    sim = Simulation(_cascade(knob=float(k)), forecaster=LossByAccount())
    acted = 0
    while sim.t < sim.steps:
        sim.step()
        policy = sim.policy
        if sim.t % sim.cfg.policy.cadence_ticks:
            continue
        warned = int(policy.table[sim.t, 2, 0])
        assert warned + policy.derisk_rows.size <= k
        acted += warned + policy.derisk_rows.size
        # No add-ons and no gating: the budget's actions are the only levers.
        assert (policy.account_factor == 1.0).all() and not policy.gated.any()
    assert acted > 0


def test_knob_zero_is_the_reactive_venue():
    quiet = Simulation(_cascade(knob=0.0), forecaster=LossByAccount())
    quiet.run()
    reactive_cfg = _cascade(knob=0.0)
    reactive = Simulation(
        dataclasses.replace(
            reactive_cfg, policy=dataclasses.replace(reactive_cfg.policy, name="static", knob=1.0)
        )
    )
    reactive.run()
    assert quiet.events.to_frame().equals(reactive.events.to_frame())


def test_accounts_forecast_to_lose_more_per_unit_of_cost_come_first():
    # With equal costs per unit of notional, the ranking follows expected loss / cost; here
    # loss grows with the account number, so the chosen accounts must be the ranking's top.
    forecaster = LossByAccount()
    sim = Simulation(_cascade(knob=3.0, derisk_fraction=0.1), forecaster=forecaster)
    for _ in range(sim.cfg.policy.cadence_ticks * 30):
        sim.step()
        if sim.t % sim.cfg.policy.cadence_ticks == 0 and sim.policy.derisk_rows.size:
            break
    rows = sim.policy.scored_rows
    assert sim.policy.derisk_rows.size
    # Every chosen account is worth at least as much per unit as any account left out.
    notional = np.abs(sim.ledger.size[rows] * sim.market.mark_q).sum(axis=1)
    value = rows * 10.0 / np.maximum(notional, 1)
    chosen = np.isin(rows, sim.policy.derisk_rows)
    # de-risk values scale as loss / notional up to the sqrt-impact term: compare ranks loosely
    assert np.median(value[chosen]) >= np.quantile(value[~chosen], 0.9)


def test_a_forecaster_without_losses_is_refused_and_bad_losses_fall_back():
    class BreachOnly:
        def predict_breach(self, request):
            return np.zeros(len(request.accounts["account"]))

    with pytest.raises(ValueError, match="forecaster of losses"):
        Simulation(_cascade(knob=5.0), forecaster=BreachOnly())
    for bad in (float("nan"), -1.0):
        sim = Simulation(_cascade(knob=5.0), forecaster=LossByAccount(loss=bad))
        for _ in range(12):
            sim.step()
        assert sum(sim.policy.fallbacks.values()) >= 3
        assert int(sim.policy.table[: sim.t + 1, 2, 0].sum()) == 0


def test_the_budget_knob_is_a_whole_number():
    with pytest.raises(ConfigError, match="whole number"):
        _cascade(knob=2.5)


def test_the_oracle_foresees_the_amounts_within_the_horizon():
    oracle = OracleForecaster(
        np.array([5, 8, 30, 6]), np.array([1, 1, 1, 2]), 10, np.array([2.0, 3.0, 7.0, 1.0])
    )
    request = ForecastRequest(
        tick=4,
        tick_ms=60_000,
        markets=("X",),
        market_history={},
        accounts={"account": np.array([1, 2, 3])},
    )
    p, loss = oracle.predict_breach_and_loss(request)
    assert p.tolist() == [1.0, 1.0, 0.0]
    assert loss.tolist() == [5.0, 1.0, 0.0]
    assert oracle.predict_breach(request).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("actions", ["call", "derisk"])
def test_the_budget_can_be_limited_to_one_kind_of_action(actions):
    sim = Simulation(_cascade(knob=20.0, budget_actions=actions), forecaster=LossByAccount())
    sim.run()
    summary = sim.policy.summary()
    if actions == "call":
        assert summary["policy_derisked_notional"] == 0 and summary["policy_warnings"] > 0
    else:
        assert summary["policy_warnings"] == 0 and summary["policy_derisked_notional"] > 0
