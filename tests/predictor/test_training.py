"""Training protocol: splits by seed, deterministic models, honest metrics."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.data import DataError, parse_horizon
from predictor.dataset import split_seeds
from predictor.metrics import EvalRows, event_recall, expected_calibration_error, precision_at_k
from predictor.model import BreachForecaster
from predictor.train import MODELS, TrainConfig, load_train_config, train


@pytest.fixture(scope="module")
def trained(small_histories):
    return train(small_histories, TrainConfig())


def test_seeds_split_into_disjoint_roles():
    s = split_seeds([5, 1, 3, 2, 4, 0, 7, 6], 0.25, 0.25)
    assert set(s.fit) | set(s.calibration) | set(s.test) == set(range(8))
    assert not set(s.fit) & set(s.test) and not set(s.calibration) & set(s.test)
    assert s.test == (6, 7)  # the highest seeds are held out
    with pytest.raises(DataError, match="at least 3 seeds"):
        split_seeds([0, 1], 0.25, 0.25)


def test_no_path_is_in_training_and_test(trained):
    parts = trained.parts
    test_paths = {(parts[i].scenario, parts[i].seed) for i in np.unique(trained.test_rows.path)}
    fit_paths = {(parts[i].scenario, parts[i].seed) for i in np.unique(trained.fit_rows.path)}
    assert test_paths and fit_paths and not test_paths & fit_paths
    assert {s for _, s in test_paths} == set(trained.split.test)


def test_metrics_are_complete_and_in_range(trained):
    for name in MODELS:
        m = trained.seed_split.metrics[name]
        assert 0.0 < m["pr_auc"] <= 1.0 and 0.5 < m["roc_auc"] <= 1.0
        assert 0.0 <= m["ece"] < 0.1 and m["log_loss"] > 0 and 0 <= m["event_recall"] <= 1
    model = trained.seed_split.metrics["model"]
    # The forecaster ranks breaches far above chance on paths it never saw.
    assert model["pr_auc_lift"] > 10
    p = trained.seed_split.probabilities["model"]
    assert np.all((p >= 0) & (p <= 1))
    assert trained.regime_shift is not None and trained.regime_shift_scenario == "flash_crash"
    assert len(trained.walk_forward) == 4


def test_calibration_tracks_the_observed_rate(trained):
    y = trained.seed_split.y
    p = trained.seed_split.probabilities["model"]
    # Calibrated on other paths: mean forecast within a factor of two of the breach rate.
    assert 0.5 < p.mean() / y.mean() < 2.0


def test_same_data_and_seed_give_an_identical_model(small_histories, trained, tmp_path):
    again = train(small_histories, TrainConfig())
    assert again.model.booster_.model_to_string() == trained.model.booster_.model_to_string()
    trained.model.save(tmp_path / "a", {})
    again.model.save(tmp_path / "b", {})
    assert (tmp_path / "a" / "model.txt").read_bytes() == (
        tmp_path / "b" / "model.txt"
    ).read_bytes()
    loaded = BreachForecaster.load(tmp_path / "a")
    X = trained.test_rows.X[:1000]
    np.testing.assert_array_equal(loaded.predict_proba(X), trained.model.predict_proba(X))


def test_config_and_horizon_errors(tmp_path):
    assert parse_horizon("5m") == 5.0 and parse_horizon("1h") == 60.0
    assert parse_horizon("90s") == 1.5
    with pytest.raises(DataError, match="horizon"):
        parse_horizon("soon")
    with pytest.raises(DataError, match="unknown training config key 'lr'"):
        load_train_config(None, {"lr": 0.1})
    bad = tmp_path / "train.toml"
    bad.write_text('negative_rate = "all"\n')
    with pytest.raises(DataError, match="negative_rate"):
        load_train_config(bad, {})
    with pytest.raises(DataError, match="test_fraction"):
        load_train_config(None, {"test_fraction": 1.5})


def test_metric_helpers():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.8, 0.7, 0.3, 0.9])
    assert expected_calibration_error(y.astype(float), y.astype(float), bins=3) == 0.0
    group = np.array([0, 0, 0, 1, 1, 1])
    assert precision_at_k(p, y, group, 1) == 1.0  # top of each snapshot is a breach
    assert precision_at_k(p, y, group, 3) == 0.5
    calm = np.array([0, 0, 0, 0, 0, 0])  # no breach ahead anywhere
    assert precision_at_k(p, calm, group, 1) == 0.0
    assert np.isnan(precision_at_k(p, calm, group, 1, active_only=True))
    one_active = np.array([0, 1, 0, 0, 0, 0])
    assert precision_at_k(p, one_active, group, 1, active_only=True) == 0.0
    assert precision_at_k(p, one_active, group, 2, active_only=True) == 0.5
    rows = EvalRows(
        y=y,
        group=group,
        event=np.array([-1, -1, 10, 11, -1, 11]),
        lead_minutes=np.array([0, 0, 2.0, 4.0, 0, 1.0]),
    )
    recall, lead = event_recall(p, rows, 0.65)
    assert recall == 1.0 and sorted(lead) == [2.0, 4.0]  # event 11: earliest alert 4 min ahead
    recall, _ = event_recall(p, rows, 0.85)
    assert recall == 0.5


def test_shipped_training_config_holds_the_defaults():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "configs" / "train.toml"
    assert load_train_config(shipped, {}) == TrainConfig()


def test_walk_forward_folds_purge_and_embargo_h_at_every_inner_edge():
    from predictor.dataset import Rows
    from predictor.train import walk_forward

    n = 100  # one path of 100 one-minute samples
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.3).astype(np.int8)
    rows = Rows(
        X=np.zeros((n, 1), np.float32),
        y=y,
        path=np.zeros(n, np.int32),
        tick=np.arange(n),
        account=np.ones(n, np.int64),
        onset=np.where(y == 1, np.arange(n) + 1, -1),
        minutes_per_tick=np.ones(n),
        loss=np.zeros(n),
        impact=np.zeros(n),
    )
    p = {"model": rng.random(n), "analytic": rng.random(n)}
    folds = walk_forward(p, rows, horizon=5.0, folds=4, k=1)
    # Folds of 25 minutes; 5 minutes dropped on each side of the three inner edges.
    assert [f["rows"] for f in folds] == [20, 15, 15, 20]
    assert [f["share_of_path"] for f in folds] == ["0%-25%", "25%-50%", "50%-75%", "75%-100%"]


def test_best_iteration_is_the_round_with_the_lowest_log_loss():
    import lightgbm as lgb

    from predictor.model import _best_iteration

    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 6))
    y = (X[:, 0] * X[:, 1] + X[:, 2] + rng.normal(size=X.shape[0]) > 2.0).astype(np.int8)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the trees' default branches
    params = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "verbosity": -1}
    booster = lgb.train(params, lgb.Dataset(X[:10_000], y[:10_000]), num_boost_round=150)
    Xs, ys = X[10_000:], y[10_000:]
    # One predict per tree count, the slow and obvious way.
    losses = [
        np.mean(
            np.logaddexp(
                0.0,
                np.where(ys == 1, -1.0, 1.0) * booster.predict(Xs, raw_score=True, num_iteration=k),
            )
        )
        for k in range(1, booster.num_trees() + 1)
    ]
    expected = int(np.argmin(losses)) + 1
    assert 1 < expected < booster.num_trees()  # the loss turns: the test can tell
    assert _best_iteration(booster, Xs, ys, chunk=3_333) == expected


def test_the_loss_heads_are_trained_saved_and_reported(trained, tmp_path):
    model = trained.model
    assert model.has_heads and set(model.heads_) == {"loss", "impact"}
    X = trained.test_rows.X[:2000]
    severity = model.predict_severity(X)
    assert (severity >= 0).all() and np.isfinite(severity).all()
    np.testing.assert_allclose(model.predict_loss(X), model.predict_proba(X) * severity)
    model.save(tmp_path / "m", {})
    loaded = BreachForecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_loss(X), model.predict_loss(X))
    for name in ("model", "analytic"):
        m = trained.seed_split.metrics[name]
        assert -1.0 <= m["loss_spearman"] <= 1.0 and 0.0 <= m["loss_capture_10"] <= 1.0
    # The heads learn from breaches: positive rows' expected loss outranks the negatives'.
    y = trained.test_rows.y
    loss = model.predict_loss(trained.test_rows.X)
    assert loss[y == 1].mean() > 5 * loss[y == 0].mean()


def test_a_missing_or_broken_head_is_a_model_error(trained, tmp_path):
    from predictor.model import ModelError

    trained.model.save(tmp_path / "m", {})
    (tmp_path / "m" / "head_loss.txt").write_text("not a model")
    with pytest.raises(ModelError, match=r"head_loss.txt: SHA-256 .* differs"):
        BreachForecaster.load(tmp_path / "m")
    (tmp_path / "m" / "head_loss.txt").unlink()
    with pytest.raises(ModelError, match=r"head_loss.txt: cannot be read"):
        BreachForecaster.load(tmp_path / "m")


def test_loss_metrics_and_the_analytic_shortfall_by_hand():
    from predictor.baselines import liquidation_shortfall
    from predictor.features import FEATURES
    from predictor.metrics import loss_metrics

    y = np.array([1, 1, 1, 0, 0])
    realised = np.array([0.0, 5.0, 10.0, 0.0, 0.0])
    m = loss_metrics(np.array([1.0, 2.0, 3.0, 0.5, 0.1]), realised, y)
    assert m["loss_spearman"] == pytest.approx(1.0)
    assert m["loss_capture_10"] == pytest.approx(10.0 / 15.0)  # the top row of 5
    X = np.zeros((2, len(FEATURES)), np.float32)
    col = {f: j for j, f in enumerate(FEATURES)}
    # $2M of depth per 1% (both sides), a $250k position at 10x, margin ratio 1 (MM $25k).
    X[:, col["log_depth_usd"]] = np.log1p(2e6)
    X[:, col["own_impact"]] = 0.125
    X[:, col["leverage"]] = 10.0
    X[:, col["log_margin_ratio"]] = 0.0
    # $16M at 50x: sold 2/3 x 1% x sqrt(16M / 1M) = 2.67% under the mid, against 2% of MM.
    X[1, col["own_impact"]] = 8.0
    X[1, col["leverage"]] = 50.0
    got = liquidation_shortfall(X)
    assert got[0] == 0.0  # 0.24% impact on $250k = $589 < $25k of margin
    notional = 8.0 * float(np.expm1(np.float32(np.log1p(2e6))))
    assert got[1] == pytest.approx(notional * (2 / 3) * 0.04 - notional / 50, rel=1e-4)


def test_the_band_conditional_calibration_serves_the_rows_the_policy_scores(trained, tmp_path):
    from predictor.metrics import expected_calibration_error
    from predictor.model import calibrate

    model = trained.model
    assert model.band_sigmas_ == 6.0
    test = trained.test_rows
    inside = model.in_band(test.X)
    assert 0 < inside.sum() < inside.size
    raw = model.predict_raw(test.X)
    p = model.predict_proba(test.X)
    # Outside the band the map of all rows; inside it the band's own map.
    np.testing.assert_array_equal(
        p[~inside], calibrate(raw[~inside], model.calibration_x_, model.calibration_y_)
    )
    np.testing.assert_array_equal(p[inside], calibrate(raw[inside], model.band_x_, model.band_y_))
    y = test.y[inside]
    assert 0.5 < p[inside].mean() / y.mean() < 2.0
    global_map = calibrate(raw[inside], model.calibration_x_, model.calibration_y_)
    assert (
        expected_calibration_error(y, p[inside]) <= expected_calibration_error(y, global_map) + 0.01
    )
    model.save(tmp_path / "m", {})
    loaded = BreachForecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(test.X), p)


def test_leaving_every_family_out_scores_each_on_a_refit_without_it(small_histories):
    result = train(small_histories, TrainConfig(leave_one_family_out=True, num_boost_round=60))
    families = {p.scenario for p in result.parts}
    assert set(result.family_holdouts) == families
    scenario = np.array([p.scenario for p in result.parts])[result.test_rows.path]
    for family, ev in result.family_holdouts.items():
        # Scored on that family's held-out rows, every one of them, and nothing else.
        assert ev.rows == (scenario == family).sum() > 0
        assert 0 < ev.metrics["model"]["pr_auc"] <= 1
    assert result.regime_shift is result.family_holdouts["flash_crash"]
