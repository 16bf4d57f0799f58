"""The compiled fast path gives Booster.predict's outputs, and falls back when it cannot build."""

from __future__ import annotations

import sys

import numpy as np

from predictor.compiled import CompiledBooster, cache_root, compile_booster
from predictor.model import BreachForecaster
from predictor.serving import ModelForecaster


def _rows(n: int, seed: int = 0) -> np.ndarray:
    from predictor.features import FEATURES

    rng = np.random.default_rng(seed)
    X = rng.normal(scale=2.0, size=(n, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the trees' default branches
    return X


def test_compiled_trees_equal_booster_predict(trained_model):
    _, export = trained_model
    model = BreachForecaster.load(export)
    fast = compile_booster(model.booster_)
    assert isinstance(fast, CompiledBooster) and fast.library.parent == cache_root()
    X = _rows(20_000)  # above PARALLEL_ROWS: two threads; a slice below it: one
    small = X[:500]
    np.testing.assert_allclose(fast.predict(small), model.booster_.predict(small), atol=1e-12)
    np.testing.assert_allclose(fast.predict(X), model.booster_.predict(X), rtol=0, atol=1e-12)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(fast.predict(X64), model.booster_.predict(X64), rtol=0, atol=1e-12)
    assert fast.predict(X[:0]).shape == (0,)
    # Built once: a second forecaster loads the cached library.
    again = compile_booster(model.booster_)
    assert again is not None and again.library == fast.library


def test_without_the_compiler_packages_the_booster_predicts(trained_model, monkeypatch, caplog):
    _, export = trained_model
    model = BreachForecaster.load(export)
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import fails as if not installed
    assert compile_booster(model.booster_) is None
    assert "compiled forecasts unavailable" in caplog.text
    forecaster = ModelForecaster(model)
    assert forecaster.compiled is None
    X = _rows(1_000, seed=1)
    np.testing.assert_array_equal(forecaster.predict_raw(X), model.booster_.predict(X))
