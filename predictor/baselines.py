"""What a risk analyst could forecast without machine learning, fitted on the same splits.

- ``analytic``: the probability that a geometric Brownian motion with the current EWMA
  volatility reaches the account's liquidation price within H (closed-form first passage). The
  EWMA half-life is chosen on the calibration paths (the one with the lowest log loss).
- ``logistic``: logistic regression on the same features (median-imputed, standardized).
- ``margin_ratio``: a threshold rule on the margin ratio, turned into a probability by an
  isotonic (monotone) map fitted on the calibration paths — the best rule of the form "alert
  below a margin ratio of x".
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, ndtr
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from predictor.features import EWMA_HALF_LIVES, FEATURES

_COL = {f: j for j, f in enumerate(FEATURES)}


def first_passage_probability(
    distance: np.ndarray, direction: np.ndarray, sigma: np.ndarray, horizon: float
) -> np.ndarray:
    """Return P(the price reaches the liquidation price within ``horizon``), shape of distance.

    ``distance`` is the relative adverse move to liquidation, ``direction`` +1 for a long (the
    barrier is below) and -1 for a short, ``sigma`` the volatility per square-root unit of
    ``horizon``. The log price is X_t = nu t + sigma W_t with nu = -sigma^2 / 2 (a driftless
    price); a barrier b is reached by H with probability

        down (b < 0):  Phi((b - nu H) / s) + exp(2 nu b / sigma^2) Phi((b + nu H) / s)
        up   (b > 0):  Phi((-b + nu H) / s) + exp(2 nu b / sigma^2) Phi((-b - nu H) / s)

    with s = sigma sqrt(H), and exp(2 nu b / sigma^2) = exp(-b). An account already at or past
    its liquidation price gets 1; a long whose barrier is at or below zero price gets 0.
    """
    distance = np.asarray(distance, np.float64)
    sigma = np.maximum(np.asarray(sigma, np.float64), 1e-12)
    s = sigma * np.sqrt(horizon)
    nu_h = -0.5 * sigma * sigma * horizon
    long = direction >= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        b = np.where(
            long, np.log1p(-np.clip(distance, 0.0, 1.0)), np.log1p(np.maximum(distance, 0))
        )
        down = ndtr((b - nu_h) / s) + np.exp(-b) * ndtr((b + nu_h) / s)
        up = ndtr((-b + nu_h) / s) + np.exp(-b) * ndtr((-b - nu_h) / s)
    p = np.where(long, down, up)
    p = np.where(long & (distance >= 1.0), 0.0, p)
    p = np.where(distance <= 0.0, 1.0, p)
    return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)


def liquidation_shortfall(X: np.ndarray, overshoot_minutes: float = 0.0) -> np.ndarray:
    """Return the bad debt (quote units) an account's liquidation would leave if the price
    reached its liquidation price now: its whole position sold into the current book, against
    the maintenance margin its equity is then worth — and, with ``overshoot_minutes``, in
    expectation over how far the price goes on past the liquidation price in that time (a
    driftless normal move at the 30-minute EWMA volatility).

    With the book's square-root profile (:mod:`engine.book`), an order of notional q fills on
    average 2/3 x 1% x sqrt(q / depth) plus the half spread away from the mid; at the
    liquidation price equity equals MM = notional / (leverage x margin ratio). What the
    first-passage law cannot see — other liquidations at the same price, depth leaving, keepers
    falling behind — is left out on purpose: this is the analytic arm's own loss estimate.
    """
    col = _COL
    depth = np.expm1(X[:, col["log_depth_usd"]].astype(np.float64))  # both sides, per 1%
    notional = X[:, col["own_impact"]] * depth
    side = np.maximum(depth / 2.0, 1.0)
    slip = X[:, col["half_spread"]] + (2.0 / 3.0) * 0.01 * np.sqrt(notional / side)
    ratio = np.exp(X[:, col["log_margin_ratio"]].astype(np.float64))
    mm = np.zeros_like(notional)
    lev = X[:, col["leverage"]].astype(np.float64)
    np.divide(notional, lev * ratio, out=mm, where=(lev * ratio) > 0)
    if overshoot_minutes <= 0:
        out = np.maximum(notional * slip - mm, 0.0)
    else:
        # The price keeps moving after it reaches the liquidation price: a normal overshoot G
        # with sd s = sigma x sqrt(overshoot); E[max(0, N (slip + G) - MM)] = N E[max(0, G - c)]
        # with c = MM / N - slip, and E[max(0, G - c)] = s phi(c / s) - c (1 - Phi(c / s)).
        sigma = X[:, col["ewma_sigma_30m"]].astype(np.float64)
        s = np.maximum(sigma * np.sqrt(overshoot_minutes), 1e-12)
        c = np.zeros_like(notional)
        np.divide(mm, notional, out=c, where=notional > 0)
        c -= slip
        z = c / s
        out = notional * (s * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) - c * ndtr(-z))
        out = np.maximum(out, 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


def analytic_expected_loss(p: np.ndarray, X: np.ndarray, horizon_minutes: float) -> np.ndarray:
    """Return the analytic expected bad debt within H: the first-passage probability ``p``
    times the shortfall of a liquidation at the liquidation price, over the price's overshoot
    in the rest of the horizon (on average H / 2 after a first passage within H)."""
    return p * liquidation_shortfall(X, horizon_minutes / 2)


class AnalyticBaseline:
    """First-passage probability with the EWMA half-life chosen on calibration data; its loss
    forecast is that probability times :func:`liquidation_shortfall`."""

    def __init__(self, *, horizon_minutes: float):
        self.horizon_minutes = horizon_minutes

    def _predict(self, X: np.ndarray, half_life: int) -> np.ndarray:
        return first_passage_probability(
            X[:, _COL["distance_to_liquidation"]],
            X[:, _COL["direction"]],
            X[:, _COL[f"ewma_sigma_{half_life}m"]],
            self.horizon_minutes,
        )

    def fit(self, X_cal: np.ndarray, y_cal: np.ndarray) -> AnalyticBaseline:
        losses = {
            h: log_loss(y_cal, np.clip(self._predict(X_cal, h), 1e-7, 1 - 1e-7), labels=[0, 1])
            for h in EWMA_HALF_LIVES
        }
        self.half_life_ = min(losses, key=lambda h: (losses[h], h))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, self.half_life_)

    def predict_loss(self, X: np.ndarray) -> np.ndarray:
        """Return the expected bad debt within H (quote units)."""
        return analytic_expected_loss(self.predict_proba(X), X, self.horizon_minutes)


class LogisticBaseline:
    """Logistic regression on FEATURES, no class weights.

    Fitted on rows whose negatives were kept with probability ``negative_rate``, its odds are
    those of the sample; multiplying them by the rate gives the odds of the population (the
    exact prior correction for logistic regression), so its probabilities stay honest.
    """

    def __init__(self, *, seed: int = 0, negative_rate: float = 1.0, max_rows: int = 500_000):
        self.seed = seed
        self.negative_rate = negative_rate
        self.max_rows = max_rows

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticBaseline:
        rng = np.random.default_rng(self.seed)
        if len(y) > self.max_rows:  # a linear model gains nothing from more rows
            keep = np.sort(rng.choice(len(y), self.max_rows, replace=False))
            X, y = X[keep], y[keep]
        X = np.where(np.isfinite(X), X, np.nan)
        self.model_ = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=300),
        ).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isfinite(X), X, np.nan)
        return expit(self.model_.decision_function(X) + np.log(self.negative_rate))


class MarginRatioRule:
    """P(breach) as a decreasing step function of the margin ratio (isotonic fit)."""

    def fit(self, X_cal: np.ndarray, y_cal: np.ndarray) -> MarginRatioRule:
        self.model_ = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(
            X_cal[:, _COL["log_margin_ratio"]], y_cal
        )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X[:, _COL["log_margin_ratio"]])
