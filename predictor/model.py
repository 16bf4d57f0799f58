"""The breach forecaster: a LightGBM booster plus an isotonic calibration map.

The booster is trained with ``lgb.train`` on rows whose negatives may be down-sampled (to keep
training fast on a 0.5%-prevalence problem); the calibration map, fitted on separate paths at
their natural prevalence, turns its scores back into probabilities the engine can act on. Both
persist without pickle: ``model.txt`` (LightGBM's text format) and ``model.json`` (feature
order, schema version, calibration knots, data hash, metrics).
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from engine.errors import PredliqError
from predictor.features import FEATURES, SCHEMA_VERSION

_COL = {f: j for j, f in enumerate(FEATURES)}

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}
"""LightGBM parameters; the seed is added from the training config."""


HEADS = ("loss", "impact")
"""Severity heads beside the breach classifier: E[bad debt | breach within H] and E[liquidation
impact cost | breach within H], quote units (the ``loss_<H>m`` and ``impact_<H>m`` labels)."""

SEVERITY_PARAMS: dict[str, Any] = {
    **DEFAULT_PARAMS,
    "objective": "tweedie",
    "tweedie_variance_power": 1.5,
    "metric": "tweedie",
    "num_leaves": 31,
    "min_data_in_leaf": 100,
}
"""LightGBM parameters of a severity head (seeded like the classifier).

Expected shortfall is a hurdle model, p(breach) x E[loss | breach]: the calibrated classifier
already gives p, and the severity is learnt on the breach rows alone (0.5-1% of the rows, so
the heads cost little to train). Among breaches most leave no bad debt and a few leave a lot —
a point mass at zero plus a skewed positive part, the compound Poisson-gamma shape the Tweedie
objective (variance power between 1 and 2, log link) models without a second hurdle."""


class ModelError(PredliqError, ValueError):
    """A saved model cannot be used: files missing, or its features do not match."""


class _BoosterClassifier(ClassifierMixin, BaseEstimator):
    """A fitted booster seen as a scikit-learn classifier, so that the calibration is fitted by
    ``CalibratedClassifierCV`` over a :class:`FrozenEstimator`."""

    def __init__(self, booster: lgb.Booster | None = None):
        self.booster = booster

    def fit(self, X, y):  # never called: the estimator is frozen
        raise NotImplementedError

    def __sklearn_is_fitted__(self) -> bool:
        return self.booster is not None

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def predict_proba(self, X) -> np.ndarray:
        p = self.booster.predict(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class BreachForecaster:
    """Forecast P(breach within the horizon) from FEATURES.

    Parameters
    ----------
    horizon_minutes : the horizon H the labels look ahead.
    params : LightGBM parameters (DEFAULT_PARAMS when None).
    seed : LightGBM's seed (bagging, feature fraction).
    num_boost_round, early_stopping_rounds : boosting budget and patience.
    """

    def __init__(
        self,
        *,
        horizon_minutes: float,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        num_boost_round: int = 600,
        early_stopping_rounds: int = 40,
    ):
        self.horizon_minutes = horizon_minutes
        self.params = params
        self.seed = seed
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds

    band_sigmas_: float = 0.0
    """Band of the band-conditional calibration (0: one map for every row)."""

    def in_band(self, X: np.ndarray) -> np.ndarray:
        """Return bool (rows,): the row lies inside the policy's risk band — its distance to
        liquidation within band_sigmas x sigma (30-minute EWMA) x sqrt(H), the rows a
        predictive policy scores (its screen's band)."""
        if self.band_sigmas_ <= 0:
            return np.zeros(X.shape[0], bool)
        distance = X[:, _COL["distance_to_liquidation"]]
        sigma = X[:, _COL["ewma_sigma_30m"]]
        return distance <= self.band_sigmas_ * sigma * np.sqrt(self.horizon_minutes)

    def calibrate_raw(self, raw: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Return probabilities of raw booster scores of rows X: the band's map inside the
        risk band, the map of all calibration rows outside it."""
        p = calibrate(raw, self.calibration_x_, self.calibration_y_)
        if self.band_sigmas_ > 0:
            inside = self.in_band(X)
            p[inside] = calibrate(raw[inside], self.band_x_, self.band_y_)
        return p

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_stop: np.ndarray,
        y_stop: np.ndarray,
        X_cal: np.ndarray,
        y_cal: np.ndarray,
        log_every: int = 0,
        client: Any = None,
        band_sigmas: float = 0.0,
    ) -> BreachForecaster:
        """Train on (X, y), stop early on (X_stop, y_stop), calibrate on (X_cal, y_cal).

        With ``client`` (a dask.distributed Client) the trees are grown by ``lightgbm.dask``
        across the cluster's workers, data-parallel; lightgbm.dask has no early stopping, so
        every round is grown and the stopping point is chosen afterwards, as the round with
        the lowest log loss on (X_stop, y_stop) — the round early stopping would keep.
        """
        params = {**DEFAULT_PARAMS, **(self.params or {}), "seed": self.seed}
        if client is not None:
            booster = _train_on_dask(params, X, y, self.num_boost_round, client)
            best = _best_iteration(booster, X_stop, y_stop)
        else:
            booster, best = self._train_early_stopped(params, X, y, X_stop, y_stop, log_every)
        # Keep only the trees early stopping chose, so model.txt is exactly what is served.
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(best))
        self.best_iteration_ = best
        self.calibration_x_, self.calibration_y_ = self._isotonic(X_cal, y_cal)
        # The policy asks only about rows inside its risk band, whose breach rate is many times
        # the average: calibrated on all rows, the map is tuned to the many quiet rows outside
        # it. A second map fitted on the band's calibration rows serves the rows the policy
        # acts on (when the band holds both classes).
        self.band_sigmas_ = 0.0
        if band_sigmas > 0:
            self.band_sigmas_ = band_sigmas
            inside = self.in_band(X_cal)
            if 0 < y_cal[inside].sum() < inside.sum():
                self.band_x_, self.band_y_ = self._isotonic(X_cal[inside], y_cal[inside])
            else:
                self.band_sigmas_ = 0.0
        return self

    def _isotonic(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the knots (x, y) of an isotonic map from raw scores to rates on (X, y)."""
        calibrated = CalibratedClassifierCV(
            FrozenEstimator(_BoosterClassifier(self.booster_)), method="isotonic"
        ).fit(X, y)
        iso = calibrated.calibrated_classifiers_[0].calibrators[0]
        return np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_, np.float64)

    def fit_heads(
        self,
        X: np.ndarray,
        targets: dict[str, np.ndarray],
        X_stop: np.ndarray,
        targets_stop: dict[str, np.ndarray],
    ) -> BreachForecaster:
        """Train the severity heads on breach rows (X, targets[head]), stopping early on
        (X_stop, targets_stop[head]); see SEVERITY_PARAMS."""
        params = {**SEVERITY_PARAMS, **(self.params or {}), "seed": self.seed}
        params.update(
            {k: SEVERITY_PARAMS[k] for k in ("objective", "tweedie_variance_power", "metric")}
        )
        self.heads_: dict[str, lgb.Booster] = {}
        self.head_iterations_: dict[str, int] = {}
        for head in HEADS:
            booster, best = self._train_early_stopped(
                params, X, targets[head], X_stop, targets_stop[head]
            )
            best = max(1, best)
            self.heads_[head] = lgb.Booster(model_str=booster.model_to_string(best))
            self.head_iterations_[head] = best
        return self

    def _train_early_stopped(
        self,
        params: dict[str, Any],
        X: np.ndarray,
        y: np.ndarray,
        X_stop: np.ndarray,
        y_stop: np.ndarray,
        log_every: int = 0,
    ) -> tuple[lgb.Booster, int]:
        """Return a booster grown by ``lgb.train`` on (X, y), stopped early on (X_stop, y_stop),
        and its best iteration."""
        train = lgb.Dataset(X, y, feature_name=list(FEATURES), free_raw_data=True)
        valid = lgb.Dataset(X_stop, y_stop, reference=train)
        callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        if log_every:
            callbacks.append(lgb.log_evaluation(log_every))
        booster = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=[valid],
            valid_names=["stop"],
            callbacks=callbacks,
        )
        return booster, int(booster.best_iteration)

    @property
    def has_heads(self) -> bool:
        return bool(getattr(self, "heads_", None))

    def predict_severity(self, X: np.ndarray, head: str = "loss") -> np.ndarray:
        """Return E[``head`` | breach within H] (quote units), shape (rows,)."""
        if not self.has_heads:
            raise ModelError("this forecaster has no severity heads (trained without losses)")
        return self.heads_[head].predict(X)

    def predict_loss(self, X: np.ndarray) -> np.ndarray:
        """Return the expected bad debt within H (quote units): p x E[bad debt | breach]."""
        return self.predict_proba(X) * self.predict_severity(X, "loss")

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Return the booster's uncalibrated scores."""
        return self.booster_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return calibrated breach probabilities, shape (rows,)."""
        return self.calibrate_raw(self.predict_raw(X), X)

    def feature_importance(self) -> dict[str, float]:
        """Return total gain per feature."""
        gain = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(FEATURES, (float(g) for g in gain), strict=True))

    def save(self, folder: str | Path, meta: dict[str, Any]) -> None:
        """Write model.txt and model.json (feature order, schema, calibration, ``meta``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.txt").write_text(self.booster_.model_to_string())
        heads = {}
        for head, booster in getattr(self, "heads_", {}).items():
            (folder / f"head_{head}.txt").write_text(booster.model_to_string())
            heads[head] = {
                "file": f"head_{head}.txt",
                "best_iteration": self.head_iterations_[head],
                "objective": "tweedie",
                "tweedie_variance_power": SEVERITY_PARAMS["tweedie_variance_power"],
            }
        doc = {
            **meta,
            "schema_version": SCHEMA_VERSION,
            "features": list(FEATURES),
            "horizon_minutes": self.horizon_minutes,
            "best_iteration": self.best_iteration_,
            "calibration": {
                "method": "isotonic",
                "x": self.calibration_x_.tolist(),
                "y": self.calibration_y_.tolist(),
            },
            "band_calibration": (
                {
                    "sigmas": self.band_sigmas_,
                    "ewma_half_life_minutes": 30,
                    "x": self.band_x_.tolist(),
                    "y": self.band_y_.tolist(),
                }
                if self.band_sigmas_ > 0
                else None
            ),
            "heads": heads,
            # Checked before LightGBM reads a byte: a truncated or edited tree file can crash
            # its parser (a segfault or an abort) instead of raising.
            "files": {
                name: _sha256(folder / name)
                for name in ["model.txt", *(spec["file"] for spec in heads.values())]
            },
        }
        (folder / "model.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> BreachForecaster:
        """Load a saved forecaster; raise :class:`ModelError` when it does not fit FEATURES."""
        folder = Path(folder)
        doc = read_model_doc(folder)
        verify_files(folder, doc)
        check_parses(folder, doc["files"])
        try:
            booster = lgb.Booster(model_file=str(folder / "model.txt"))
        except (OSError, lgb.basic.LightGBMError) as exc:
            raise ModelError(f"{folder}: not a saved forecaster ({exc})") from None
        if doc.get("features") != list(FEATURES) or doc.get("schema_version") != SCHEMA_VERSION:
            raise ModelError(
                f"{folder}: model features (schema {doc.get('schema_version')}) do not match "
                f"this predliq's features (schema {SCHEMA_VERSION})"
            )
        model = cls(horizon_minutes=float(doc["horizon_minutes"]))
        model.booster_ = booster
        model.best_iteration_ = int(doc["best_iteration"])
        model.calibration_x_ = np.asarray(doc["calibration"]["x"], np.float64)
        model.calibration_y_ = np.asarray(doc["calibration"]["y"], np.float64)
        model.meta_ = doc
        band = doc.get("band_calibration")
        if band:
            model.band_sigmas_ = float(band["sigmas"])
            model.band_x_ = np.asarray(band["x"], np.float64)
            model.band_y_ = np.asarray(band["y"], np.float64)
        heads = doc.get("heads") or {}
        if heads:
            if set(heads) != set(HEADS):
                raise ModelError(f"{folder}: severity heads {sorted(heads)}, expected {HEADS}")
            model.heads_, model.head_iterations_ = {}, {}
            for head, spec in heads.items():
                try:
                    booster = lgb.Booster(model_file=str(folder / spec["file"]))
                except (OSError, KeyError, TypeError, lgb.basic.LightGBMError) as exc:
                    raise ModelError(
                        f"{folder}: severity head {head!r} unreadable ({exc})"
                    ) from None
                model.heads_[head] = booster
                model.head_iterations_[head] = int(spec["best_iteration"])
        return model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _numbers(value: Any) -> bool:
    """True for a non-empty list of finite numbers."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )


def read_model_doc(folder: Path) -> dict[str, Any]:
    """Return ``folder / model.json`` checked against the shape :meth:`BreachForecaster.save`
    writes; anything else is a one-line :class:`ModelError` naming the file and the entry."""
    path = folder / "model.json"
    try:
        text = path.read_bytes().decode("utf-8")
        doc = json.loads(text)
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: must be a JSON object, was {type(doc).__name__}")

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            shown = repr(doc.get(key, "missing"))
            raise ModelError(f"{path}: {key!r} must be {what}, was {shown[:60]}")

    horizon = doc.get("horizon_minutes")
    need(
        "horizon_minutes",
        isinstance(horizon, int | float)
        and not isinstance(horizon, bool)
        and math.isfinite(horizon)
        and horizon > 0,
        "a positive number of minutes",
    )
    need("features", isinstance(doc.get("features"), list), "a list of feature names")
    need("schema_version", isinstance(doc.get("schema_version"), int), "an integer")
    best = doc.get("best_iteration")
    need("best_iteration", isinstance(best, int) and best >= 0, "a whole number")
    calibration = doc.get("calibration")
    need(
        "calibration",
        isinstance(calibration, dict)
        and _numbers(calibration.get("x"))
        and _numbers(calibration.get("y"))
        and len(calibration["x"]) == len(calibration["y"]),
        "an isotonic map of finite x and y of one length",
    )
    band = doc.get("band_calibration")
    need(
        "band_calibration",
        band is None
        or (
            isinstance(band, dict)
            and _numbers(band.get("x"))
            and _numbers(band.get("y"))
            and len(band["x"]) == len(band["y"])
            and _numbers([band.get("sigmas")])
        ),
        "null or a map of finite x and y of one length with its sigmas",
    )
    need("heads", isinstance(doc.get("heads") or {}, dict), "a table of severity heads")
    files = doc.get("files")
    need(
        "files",
        isinstance(files, dict)
        and "model.txt" in files
        and all(isinstance(v, str) and len(v) == 64 for v in files.values()),
        "the SHA-256 of every model file (an export by an older predliq has none: re-export it)",
    )
    return doc


def verify_files(folder: Path, doc: dict[str, Any]) -> None:
    """Refuse model files whose SHA-256 differs from what model.json recorded."""
    wanted = {"model.txt", *(spec.get("file") for spec in (doc.get("heads") or {}).values())}
    missing = sorted(str(n) for n in wanted if n not in doc["files"])
    if missing:
        raise ModelError(f"{folder / 'model.json'}: no SHA-256 recorded for {', '.join(missing)}")
    for name, digest in doc["files"].items():
        path = folder / name
        if Path(name).name != name:
            raise ModelError(f"{folder / 'model.json'}: file name {name!r} is not in the folder")
        try:
            actual = _sha256(path)
        except OSError as exc:
            raise ModelError(f"{path}: cannot be read ({exc.strerror})") from None
        if actual != digest:
            raise ModelError(
                f"{path}: SHA-256 {actual[:12]}... differs from the {digest[:12]}... model.json "
                "recorded (a changed or truncated model file)"
            )


_PARSED: set[str] = set()
"""SHA-256 of tree files this process has seen LightGBM parse."""

_PROBE = """
import ctypes, sys
lib = ctypes.cdll.LoadLibrary(sys.argv[1])
lib.LGBM_GetLastError.restype = ctypes.c_char_p
for path in sys.argv[2:]:
    handle, iterations = ctypes.c_void_p(), ctypes.c_int()
    if lib.LGBM_BoosterCreateFromModelfile(
        path.encode(), ctypes.byref(iterations), ctypes.byref(handle)
    ):
        sys.exit(lib.LGBM_GetLastError().decode(errors="replace"))
    lib.LGBM_BoosterFree(handle)
    print(path, flush=True)
"""
"""Parse each tree file with LightGBM's own library through its C API (the call ``lgb.Booster``
makes), without importing the Python package and its 2 s of imports."""


def check_parses(folder: Path, files: dict[str, str]) -> None:
    """Refuse a tree file LightGBM cannot parse, finding out in a child process.

    LightGBM's parser can abort or segfault on a malformed file rather than raise, and a
    checksum only proves the file is the one model.json names: so each file (``files``: name
    to SHA-256) is parsed once in a child, and its digest remembered (in this process, and
    under ``$PREDLIQ_CACHE/parsed``) so later loads of the same file pay nothing.
    """
    from predictor.compiled import cache_root

    marks = cache_root().parent / "parsed"
    pending = {
        str(folder / name): digest
        for name, digest in files.items()
        if digest not in _PARSED and not (marks / digest).exists()
    }
    if pending:
        try:
            done = subprocess.run(
                # The very library this process loaded (LightGBM is pinned, 4.7.0).
                [sys.executable, "-c", _PROBE, lgb.basic._LIB._name, *pending],
                capture_output=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            raise ModelError(f"{folder}: LightGBM did not parse its tree files in 300 s") from None
        if done.returncode != 0:
            # A crashing parser may write anything to stderr: read it as bytes.
            parsed = set(done.stdout.decode(errors="replace").splitlines())
            path = next(p for p in pending if p not in parsed)
            if done.returncode < 0:
                reason = f"the parser crashed with {signal.Signals(-done.returncode).name}"
            else:
                stderr = done.stderr.decode(errors="replace")
                lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
                fatal = [ln for ln in lines if "[Fatal]" in ln or "Error" in ln]
                reason = (fatal or lines or [f"exit code {done.returncode}"])[-1]
            shown = "".join(c if c.isprintable() else "?" for c in reason[:200])
            raise ModelError(f"{path}: LightGBM cannot parse it ({shown})")
        for digest in pending.values():
            try:
                marks.mkdir(parents=True, exist_ok=True)
                (marks / digest).touch()
            except OSError:
                pass  # an unwritable cache only costs the next load another parse
    _PARSED.update(files.values())


class DistributedTrainingError(PredliqError, RuntimeError):
    """Boosting with lightgbm.dask failed (a lost worker, a closed socket); one line."""


def _train_on_dask(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, rounds: int, client: Any
) -> lgb.Booster:
    """Grow ``rounds`` trees with lightgbm.dask on the client's workers, one row block each."""
    import warnings

    import dask.array as da
    from lightgbm.dask import DaskLGBMClassifier

    # nthreads() asks the scheduler and raises if it cannot; scheduler_info() may return a
    # cached identity without workers when the scheduler is slow to answer.
    workers = sorted(client.nthreads())
    # Rows come grouped by scenario and seed; each worker bins and samples its own block, so
    # give every worker a shuffled share of every path (a fixed permutation of the rows).
    order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(X))
    blocks = np.array_split(order, len(workers))
    # Send each block to its worker once (not inside the task graph), one block per worker.
    parts_X, parts_y = [], []
    for worker, rows in zip(workers, blocks, strict=True):
        fx, fy = client.scatter([X[rows], y[rows]], workers=[worker])
        parts_X.append(da.from_delayed(fx, shape=(len(rows), X.shape[1]), dtype=X.dtype))
        parts_y.append(da.from_delayed(fy, shape=(len(rows),), dtype=y.dtype))
    # lightgbm.dask sets each worker's threads from its Dask nthreads (and ignores num_threads).
    settings = {k: v for k, v in params.items() if k not in ("num_threads", "verbosity")}
    model = DaskLGBMClassifier(client=client, n_estimators=rounds, verbose=-1, **settings)
    with warnings.catch_warnings():
        # The sklearn wrapper always carries n_jobs, which lightgbm.dask then says it ignores.
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        try:
            model.fit(da.concatenate(parts_X), da.concatenate(parts_y), feature_name=list(FEATURES))
        except Exception as exc:  # whatever the cluster raised, said in one line
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise DistributedTrainingError(
                f"boosting on the Dask cluster failed ({type(exc).__name__}: {reason}); "
                "LightGBM cannot resume when a worker is lost: run the training again"
            ) from exc
    return model.to_local().booster_


def _best_iteration(
    booster: lgb.Booster, X: np.ndarray, y: np.ndarray, chunk: int = 100_000
) -> int:
    """Return the number of trees with the lowest binary log loss on (X, y).

    One pass: each chunk of rows is routed through every tree once (its leaf per tree), and the
    log loss after each tree is summed from the leaves' values. Calling ``predict`` once per
    tree would parse all rows once per tree, which costs minutes on millions of rows.
    """
    trees = booster.num_trees()
    counts = [info["num_leaves"] for info in booster.dump_model()["tree_info"]]
    value = np.zeros((trees, max(counts)))
    for t, count in enumerate(counts):
        value[t, :count] = [booster.get_leaf_output(t, k) for k in range(count)]
    loss = np.zeros(trees)
    for start in range(0, len(X), chunk):
        route = booster.predict(X[start : start + chunk], pred_leaf=True).reshape(-1, trees)
        sign = np.where(y[start : start + chunk] == 1, -1.0, 1.0)  # log(1 + e^(-z)) for positives
        raw = np.zeros(len(route))
        for t in range(trees):
            raw += value[t, route[:, t]]  # the first tree's leaves hold the initial score
            loss[t] += np.logaddexp(0.0, sign * raw).sum()
    return int(np.argmin(loss)) + 1


def calibrate(raw: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Map raw scores through isotonic knots (x, y), clipped at both ends."""
    return np.interp(raw, x, y)
