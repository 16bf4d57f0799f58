"""Forecasts served to the engine in simulation, through its :class:`engine.forecast.Forecaster`.

- :class:`OnlineFeatures` computes, at each forecast tick, the same features the dataset builder
  computes from the written history (:mod:`predictor.features` is the one implementation behind
  both; ``tests/predictor/test_serving.py`` compares them on a whole simulated run).
- :class:`ModelForecaster` scores them with a trained :class:`BreachForecaster`;
  :class:`AnalyticForecaster` with the closed-form first-passage probability.
- :func:`load_forecaster` finds a model by registry alias (``models:/breach-forecaster@champion``),
  by run (``runs:/<run id>/model``) or in an export folder (``models/breach-forecaster``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from engine.forecast import ForecasterSchemaError, ForecastRequest
from predictor.baselines import analytic_expected_loss, first_passage_probability
from predictor.compiled import compile_booster
from predictor.features import (
    FEATURES,
    SCHEMA_VERSION,
    MarketFeatureStream,
    features_of_rows,
    log_margin_ratio,
    window_ticks,
)
from predictor.model import BreachForecaster, ModelError

_COL = {f: j for j, f in enumerate(FEATURES)}
DEFAULT_SAMPLE_MINUTES = 5.0
"""The account-sampling interval of the default training set (20 blocks of 15 s): the gap over
which the margin-ratio slope is measured, online as in training."""


class OnlineFeatures:
    """FEATURES of the accounts a forecast request asks about, from the run so far.

    The market stream consumes each block of the market table once. The margin-ratio slope
    compares an account with its state at the last *sample tick* (a multiple of the training
    set's sampling interval) before the request, as the dataset builder compares it with its
    previous sample; an account that was not scored at that tick (outside the risk band) has no
    slope, like an account's first sample.
    """

    def __init__(self, *, horizon_minutes: float, sample_minutes: float = DEFAULT_SAMPLE_MINUTES):
        self.horizon_minutes = horizon_minutes
        self.sample_minutes = sample_minutes
        self._stream: MarketFeatureStream | None = None
        self._market: np.ndarray | None = None  # float32 (markets, market features) at the tick
        self._tick_ms = 0
        self._anchor_tick = -1
        self._anchor: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))
        self._pending: tuple[int, np.ndarray, np.ndarray] | None = None

    def __call__(self, request: ForecastRequest) -> np.ndarray:
        """Return float32 (rows, FEATURES) of the request's accounts at its tick."""
        if self._stream is None:
            self._stream = MarketFeatureStream(request.tick_ms)
            self._tick_ms = request.tick_ms
        stream = self._stream
        t = request.tick
        if stream.n <= t:
            new = {c: v[stream.n : t + 1] for c, v in request.market_history.items()}
            self._market = stream.update(new)[-1].astype(np.float32)
        elif stream.n != t + 1:
            raise ValueError(f"forecast requests must not go back in time (tick {t})")
        assert self._market is not None
        market = self._market
        gap = window_ticks(self.sample_minutes, self._tick_ms)
        # The last sample tick strictly before t becomes the slope's anchor once t passes it.
        if self._pending is not None and self._pending[0] < t:
            self._anchor_tick, *rest = self._pending
            self._anchor = (rest[0], rest[1])
            self._pending = None
        acct = np.asarray(request.accounts["account"], np.int64)
        log_mr = log_margin_ratio(np.asarray(request.accounts["margin_ratio"]))
        prev_log_mr = np.full(acct.size, np.nan)
        prev_tick = np.full(acct.size, -1, np.int64)
        anchor_acct, anchor_mr = self._anchor
        if anchor_acct.size and t - self._anchor_tick <= gap:
            pos = np.searchsorted(anchor_acct, acct)
            pos = np.minimum(pos, anchor_acct.size - 1)
            found = anchor_acct[pos] == acct
            prev_log_mr[found] = anchor_mr[pos[found]]
            prev_tick[found] = self._anchor_tick
        if t % gap == 0:
            order = np.argsort(acct, kind="stable")
            self._pending = (t, acct[order], log_mr[order])
        names = list(request.markets)
        return features_of_rows(
            request.accounts,
            names,
            lambda tick, dominant: market[dominant],
            prev_log_mr,
            prev_tick,
            request.tick_ms,
            self.horizon_minutes,
        )


class ModelForecaster:
    """Breach probabilities of a trained forecaster, from features computed online.

    With ``compiled`` (the default) the trees run as native code (:mod:`predictor.compiled`),
    whose outputs equal ``Booster.predict``'s; when compiling is unavailable it falls back to
    ``Booster.predict`` by itself.
    """

    def __init__(
        self,
        model: BreachForecaster,
        *,
        sample_minutes: float = DEFAULT_SAMPLE_MINUTES,
        compiled: bool = True,
    ):
        self.model = model
        self.horizon_minutes = float(model.horizon_minutes)
        self.features = OnlineFeatures(
            horizon_minutes=self.horizon_minutes, sample_minutes=sample_minutes
        )
        self.compiled = compile_booster(model.booster_) if compiled else None
        self.compiled_heads = {}
        if compiled and model.has_heads:
            self.compiled_heads = {h: compile_booster(b) for h, b in model.heads_.items()}

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Return the booster's uncalibrated probabilities, compiled when possible."""
        if self.compiled is not None:
            return self.compiled.predict(X)
        return self.model.predict_raw(X)

    def check_schema(self) -> None:
        """Raise ForecasterSchemaError unless the model was trained on these features."""
        meta = getattr(self.model, "meta_", {})
        if meta.get("features") != list(FEATURES) or meta.get("schema_version") != SCHEMA_VERSION:
            raise ForecasterSchemaError(
                f"model features (schema {meta.get('schema_version')}) do not match the "
                f"features computed online (schema {SCHEMA_VERSION})"
            )

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        self.check_schema()
        X = self.features(request)
        model = self.model
        return model.calibrate_raw(self.predict_raw(X), X)

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return (P(breach within H), expected bad debt within H in quote units): the
        calibrated probability times the loss head's E[bad debt | breach]."""
        self.check_schema()
        if not self.model.has_heads:
            raise ForecasterSchemaError("the model has no loss head (trained without losses)")
        X = self.features(request)
        model = self.model
        p = model.calibrate_raw(self.predict_raw(X), X)
        compiled = self.compiled_heads.get("loss")
        severity = compiled.predict(X) if compiled is not None else model.predict_severity(X)
        return p, p * severity


class AnalyticForecaster:
    """The closed-form first-passage probability: the ``analytic`` policy's forecaster."""

    def __init__(self, *, horizon_minutes: float, half_life_minutes: int = 30):
        self.horizon_minutes = horizon_minutes
        self.half_life_minutes = half_life_minutes
        self.features = OnlineFeatures(horizon_minutes=horizon_minutes)

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        return self._probability(self.features(request))

    def _probability(self, X: np.ndarray) -> np.ndarray:
        return first_passage_probability(
            X[:, _COL["distance_to_liquidation"]],
            X[:, _COL["direction"]],
            X[:, _COL[f"ewma_sigma_{self.half_life_minutes}m"]],
            self.horizon_minutes,
        )

    def predict_breach_and_loss(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """Return (first-passage probability, the analytic expected bad debt; see
        :func:`predictor.baselines.analytic_expected_loss`)."""
        X = self.features(request)
        p = self._probability(X)
        return p, analytic_expected_loss(p, X, self.horizon_minutes)


def load_forecaster(uri: str, *, tracking_uri: str | None = None) -> BreachForecaster:
    """Return the forecaster at ``uri``: an export folder, ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` or ``runs:/RUN_ID/model``.

    Raises ModelError with a one-line reason when it cannot be found or does not fit FEATURES.
    """
    if not uri.startswith(("models:/", "runs:/")):
        folder = Path(uri)
        if not (folder / "model.json").exists():
            raise ModelError(f"{uri}: no model.json there (not an exported forecaster)")
        return BreachForecaster.load(folder)
    import mlflow
    from mlflow.exceptions import MlflowException

    from predictor.tracking import DEFAULT_TRACKING_URI, TrackingError, connect

    target = tracking_uri or DEFAULT_TRACKING_URI
    with tempfile.TemporaryDirectory(prefix="predliq-model-") as scratch:
        try:
            connect(target)
            mlflow.set_tracking_uri(target)
            mlflow.set_registry_uri(target)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch))
        except TrackingError as exc:
            raise ModelError(str(exc)) from None
        except (MlflowException, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"{uri}: cannot be loaded from {target} ({message})") from None
        # Only the forecaster's own files are read (SHA-256 checked, LightGBM text); whatever
        # else the version holds, a pickle included, is never loaded.
        found = sorted(local.rglob("model.json"))
        if len(found) != 1:
            held = "no model.json" if not found else f"{len(found)} model.json files"
            raise ModelError(f"{uri}: the logged model holds {held}, not one saved forecaster")
        return BreachForecaster.load(found[0].parent)  # reads every file into memory


class RemoteForecaster:
    """Breach probabilities from a model served over HTTP (``predliq serve``, or any server on
    MLflow's scoring contract): features are computed here, online, and posted to
    ``/invocations``.

    A slow server raises TimeoutError after ``timeout_s``; an unreachable one or an error answer
    raises, and a server whose model refuses these feature columns raises
    ForecasterSchemaError — in every case the engine runs the reactive policy for that block.
    """

    def __init__(self, url: str, *, horizon_minutes: float, timeout_s: float = 2.0):
        self.url = url.rstrip("/") + "/invocations"
        self.timeout_s = timeout_s
        self.horizon_minutes = horizon_minutes
        self.features = OnlineFeatures(horizon_minutes=horizon_minutes)

    def predict_breach(self, request: ForecastRequest) -> np.ndarray:
        X = self.features(request)
        return self.score(X)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Return the served model's probabilities for feature rows ``X`` (rows, FEATURES)."""
        import json
        import urllib.error
        import urllib.request

        if X.shape[0] == 0:
            return np.empty(0)
        body = json.dumps(
            {"dataframe_split": {"columns": list(FEATURES), "data": X.astype(np.float64).tolist()}}
        ).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as answer:
                doc = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if "do not match the model's features" in detail:
                raise ForecasterSchemaError(f"{self.url}: {detail[:200]}") from None
            raise RuntimeError(f"{self.url} answered {exc.code}: {detail[:200]}") from None
        except TimeoutError as exc:
            raise TimeoutError(f"{self.url}: no answer in {self.timeout_s} s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"{self.url}: no answer in {self.timeout_s} s") from exc
            raise
        return np.asarray(doc["predictions"], np.float64)


def check_remote(url: str, timeout_s: float) -> None:
    """Ask the server at ``url`` for one forecast before a run; a server that does not answer
    with one probability is a :class:`ModelError`, not a run of fallbacks."""
    probe = RemoteForecaster(url, horizon_minutes=5.0, timeout_s=timeout_s)  # scores X only
    try:
        p = probe.score(np.zeros((1, len(FEATURES))))
    except Exception as exc:  # refused, timed out, an HTTP error, a foreign answer
        text = str(getattr(exc, "reason", "") or exc)
        reason = (text.splitlines() or [""])[0] or type(exc).__name__
        raise ModelError(f"--forecaster-url {url} does not answer a forecast: {reason}") from None
    if p.shape != (1,) or not np.isfinite(p).all() or not 0 <= p[0] <= 1:
        raise ModelError(
            f"--forecaster-url {url} answered {p.tolist()!r}, not one probability per row"
        )


def registry_version(uri: str, tracking_uri: str) -> int | None:
    """Return the registry version a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI
    resolves to (None for other URIs)."""
    if not uri.startswith("models:/"):
        return None
    from mlflow.tracking import MlflowClient

    name, _, rest = uri[len("models:/") :].partition("/")
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if "@" in name:
        name, alias = name.split("@", 1)
        return int(client.get_model_version_by_alias(name, alias).version)
    return int(rest) if rest.isdigit() else None
