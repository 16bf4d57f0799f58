"""Serving: features computed online equal the dataset builder's, and a failing forecaster
never makes the engine less safe."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from engine.config import load_config
from engine.forecast import Fallback, ForecasterSchemaError, ForecastRequest
from engine.sim import Simulation
from engine.valuation import margin_of, margin_rows
from predictor.features import (
    FEATURES,
    MarketFeatureStream,
    account_features,
    market_arrays,
    market_features,
)
from predictor.serving import AnalyticForecaster, OnlineFeatures

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "scenarios"


def _config(name: str, *overrides: str):
    return load_config(
        CONFIGS / f"{name}.toml",
        ["accounts.count=600", "steps=400", "seed=5", *overrides],
    )


class Recording:
    """A forecaster that records the features it computed and forecasts nothing."""

    def __init__(self, horizon_minutes: float = 5.0):
        self.online = OnlineFeatures(horizon_minutes=horizon_minutes)
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        X = self.online(request)
        self.seen.append((request.tick, np.asarray(request.accounts["account"]).copy(), X))
        return np.zeros(X.shape[0])


@pytest.mark.parametrize("scenario", ["cascade", "correlated_crash"])
def test_online_features_equal_the_dataset_builders_on_a_whole_run(scenario):
    # Forecasts on the sampling cadence, every eligible account scored (an open position, not
    # in breach): each forecast row has a history row, and their features must be the same
    # bits — except the margin-ratio slope of an account the previous forecast did not score,
    # which the forecaster cannot know (NaN online, like an account's first sample).
    cfg = _config(
        scenario,
        'policy.name="predictive"',
        "policy.cadence_ticks=20",
        "policy.risk_band_sigmas=0",
    )
    recorder = Recording()
    sim = Simulation(cfg, forecaster=recorder)
    sim.run()
    accounts = sim.labelled_accounts()
    names = [mk.name for mk in cfg.markets]
    offline_market = market_features(market_arrays(sim.market_frame(), names), cfg.tick_ms)
    offline = account_features(accounts, names, offline_market, cfg.tick_ms, 5.0)
    index = {
        (t, a): i
        for i, (t, a) in enumerate(zip(accounts["tick"], accounts["account"], strict=True))
    }
    assert len(recorder.seen) == cfg.steps // 20 + 1
    slope = FEATURES.index("log_margin_ratio_slope")
    compared, previous = 0, np.empty(0, np.int64)
    for tick, acct, X in recorder.seen:
        rows = np.array([index[(tick, a)] for a in acct])
        expected = offline[rows].copy()
        unseen = ~np.isin(acct, previous)
        expected[unseen, slope] = np.nan
        same = (X == expected) | (np.isnan(X) & np.isnan(expected))
        bad = np.argwhere(~same)
        assert not bad.size, f"tick {tick}: {FEATURES[bad[0][1]]} differs"
        compared += X.shape[0]
        previous = acct
    assert compared > 0.5 * offline.shape[0]


def test_market_stream_fed_in_pieces_equals_one_pass():
    cfg = _config("correlated_crash")
    sim = Simulation(cfg)
    sim.run()
    names = [mk.name for mk in cfg.markets]
    arrays = market_arrays(sim.market_frame(), names)
    whole = market_features(arrays, cfg.tick_ms)
    stream = MarketFeatureStream(cfg.tick_ms)
    rng = np.random.default_rng(0)
    parts, i, n = [], 0, whole.shape[0]
    while i < n:
        j = min(n, i + int(rng.integers(1, 50)))
        parts.append(stream.update({c: v[i:j] for c, v in arrays.items()}))
        i = j
    pieces = np.concatenate(parts)
    assert ((pieces == whole) | (np.isnan(pieces) & np.isnan(whole))).all()


class Faulty:
    """A forecaster that answers correctly except at the blocks where it is told to fail."""

    def __init__(self, fault: str, at: set[int]):
        self.fault, self.at = fault, at
        self.inner = AnalyticForecaster(horizon_minutes=5.0)

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        p = self.inner.predict_breach(request)
        if request.tick not in self.at:
            return p
        if self.fault == "exception":
            raise RuntimeError("model server crashed")
        if self.fault == "timeout":
            raise TimeoutError("no answer in 0.5 s")
        if self.fault == "schema":
            raise ForecasterSchemaError("model expects 54 features")
        if self.fault == "nan":
            p[::2] = np.nan
        if self.fault == "range":
            p[:1] = 1.5
        if self.fault == "shape":
            p = p[:-1]
        return p


FAULTS = {
    "exception": Fallback.EXCEPTION,
    "timeout": Fallback.TIMEOUT,
    "schema": Fallback.SCHEMA,
    "nan": Fallback.NOT_FINITE,
    "range": Fallback.OUT_OF_RANGE,
    "shape": Fallback.BAD_SHAPE,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failing_forecaster_falls_back_to_the_reactive_policy(fault, caplog):
    cfg = _config(
        "cascade",
        'policy.name="predictive"',
        "policy.knob=4",
        "policy.cadence_ticks=4",
        "policy.risk_band_sigmas=0",  # every account is scored, so every fault can show
    )
    failing = set(range(120, 400, 4))  # every forecast from block 120 on
    with caplog.at_level(logging.WARNING, logger="predliq.engine"):
        sim = Simulation(cfg, forecaster=Faulty(fault, failing))
        sim.run()
    policy = sim.policy_frame()
    first = policy[policy["market"] == cfg.markets[0].name].set_index("tick")
    assert (first.loc[sorted(failing), "fallback"] == int(FAULTS[fault])).all()
    assert (first.loc[:119, "fallback"] == 0).all()
    summary = sim.summary()
    assert summary[f"policy_fallbacks_{FAULTS[fault].name.lower()}"] == len(failing)
    # Logged once, however many blocks failed.
    assert sum("forecaster failed" in r.getMessage() for r in caplog.records) == 1
    # After a failed forecast nobody carries an add-on: requirements are the base ones.
    assert (first.loc[sorted(failing), "addon_accounts"] == 0).all()
    assert (first.loc[sorted(failing), "gated"] == 0).all()
    assert first.loc[:119, "addon_accounts"].max() > 0  # it did act while it worked
    assert summary["conservation_error"] == 0


def test_requirements_never_fall_below_the_base():
    cfg = _config("cascade", 'policy.name="predictive"', "policy.knob=3", "policy.cadence_ticks=2")
    sim = Simulation(cfg, forecaster=AnalyticForecaster(horizon_minutes=5.0))
    n = sim.ledger.size.shape[0]
    rows = np.arange(n)
    largest = 1.0
    while sim.t < 200:
        sim.step()
        assert sim.policy.account_factor is not None
        largest = max(largest, float(sim.policy.account_factor.max()))
        sizes = sim.ledger.size
        base = np.stack(
            [
                r.requirements(
                    np.rint(np.abs(sizes[:, k] * sim.market.mark_q[k])).astype(np.int64),
                    sizes[:, k],
                    sim.market.margin_context(k),
                )[1]
                for k, r in enumerate(sim.venue.requirements)
            ],
            axis=1,
        )
        _, _, effective = margin_rows(
            sim.ledger, rows, sim.market, sim.venue, sim.requirement_scale
        )
        assert (effective >= base).all()
        _, _, im = margin_of(sizes, rows, True, sim.market, sim.venue, sim.requirement_scale)
        assert (im >= base).all()
    assert largest > 1.0  # the policy did raise requirements


def test_the_risk_band_reports_the_breach_recall_it_keeps():
    def run(band: float) -> dict:
        cfg = _config(
            "cascade",
            'policy.name="predictive"',
            "policy.knob=0",  # forecasts only, no action: both runs face the same path
            f"policy.risk_band_sigmas={band}",
        )
        sim = Simulation(cfg, forecaster=AnalyticForecaster(horizon_minutes=5.0))
        sim.run()
        return sim.summary()

    everyone, banded = run(0.0), run(3.0)
    assert everyone["policy_breach_onsets"] == banded["policy_breach_onsets"] > 0
    # Scoring every eligible account every forecast keeps nearly every breach within reach
    # (not an account that opened its position and breached between two forecasts) ...
    kept = everyone["policy_onsets_scored_within_horizon"]
    assert 0.98 * everyone["policy_breach_onsets"] <= kept <= everyone["policy_breach_onsets"]
    # ... and a band scores fewer rows and can only keep fewer.
    assert banded["policy_scored_rows"] < everyone["policy_scored_rows"]
    assert banded["policy_onsets_scored_within_horizon"] <= banded["policy_breach_onsets"]


def test_predictive_policy_at_knob_zero_is_the_reactive_venue():
    static = Simulation(_config("cascade"))
    static.run()
    cfg = _config("cascade", 'policy.name="predictive"', "policy.knob=0")
    quiet = Simulation(cfg, forecaster=AnalyticForecaster(horizon_minutes=5.0))
    quiet.run()
    assert quiet.summary()["policy_scored_rows"] > 0
    assert static.events.to_frame().equals(quiet.events.to_frame())
    assert static.market_frame().equals(quiet.market_frame())


def test_a_model_whose_features_do_not_match_falls_back(trained_model):
    from predictor.features import FEATURES as CURRENT
    from predictor.model import BreachForecaster
    from predictor.serving import ModelForecaster

    _, export = trained_model
    model = BreachForecaster.load(export)
    model.meta_ = {**model.meta_, "features": list(CURRENT[:-1])}  # trained on one fewer
    cfg = _config("cascade", 'policy.name="predictive"', "policy.risk_band_sigmas=0")
    sim = Simulation(cfg, forecaster=ModelForecaster(model, compiled=False))
    sim.run()
    s = sim.summary()
    forecasts = cfg.steps // cfg.policy.cadence_ticks + 1
    assert s["policy_fallbacks_schema"] == s["policy_fallbacks"] == forecasts
    assert s["policy_warnings"] == 0 and s["policy_derisked_notional"] == 0
