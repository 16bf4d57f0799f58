"""predliq's own forecast server: a saved forecaster's probabilities over HTTP.

It keeps the contract of an MLflow scoring server (``POST /invocations`` with a
``dataframe_split`` or ``dataframe_records`` body answers ``{"predictions": [...]}``;
``GET /ping`` and ``GET /health`` answer 200), so :class:`predictor.serving.RemoteForecaster`
and any MLflow client can call it. It is ours rather than ``mlflow models serve`` because that
server loads whatever a registered version holds, a cloudpickle included, and runs it in its
process: this one only ever reads ``model.txt`` and ``model.json`` through
:meth:`predictor.model.BreachForecaster.load`, which checks their SHA-256 first. It runs in the
``predliq serve`` process itself, so stopping that process stops the server.
"""

from __future__ import annotations

import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from predictor.model import BreachForecaster

MAX_BODY_BYTES = 64 * 2**20
"""The largest request accepted: about 200,000 rows of features as JSON. A batch from the engine
is at most the accounts in its risk band (1,000 rows is about 0.4 MB)."""


class RequestError(ValueError):
    """A request the server refuses: the answer is 400 with this text."""


def feature_matrix(doc: Any, features: list[str]) -> np.ndarray:
    """Return float32 (rows, features) from a ``dataframe_split`` or ``dataframe_records`` body.

    Columns must be exactly the model's features, in any order (never a silent reordering into
    the wrong columns); null is a missing value (NaN), as LightGBM reads it.
    """
    if not isinstance(doc, dict):
        raise RequestError("the body must be a JSON object with 'dataframe_split'")
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict):
            raise RequestError("'dataframe_split' must be an object with columns and data")
        columns, rows = split.get("columns"), split.get("data")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise RequestError("'dataframe_split.columns' must be a list of column names")
        if not isinstance(rows, list):
            raise RequestError("'dataframe_split.data' must be a list of rows")
    elif "dataframe_records" in doc:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise RequestError("'dataframe_records' must be a list of objects")
        columns = list(records[0]) if records else list(features)
        if any(list(r) != columns for r in records):
            raise RequestError("every record of 'dataframe_records' must have the same columns")
        rows = [list(r.values()) for r in records]
    else:
        raise RequestError("the body must hold 'dataframe_split' or 'dataframe_records'")
    missing = [f for f in features if f not in columns]
    extra = [c for c in columns if c not in features]
    if missing or extra or len(set(columns)) != len(columns):
        raise RequestError(
            f"input columns do not match the model's features: missing {missing}, "
            f"unexpected {extra}"
        )
    width = len(columns)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise RequestError(f"row {i} must be a list of {width} values")
        for v in row:
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                raise RequestError(f"row {i} holds {v!r:.40}, not a number or null")
    X = np.array(rows, dtype=np.float64).reshape(len(rows), width)  # null becomes NaN
    order = [columns.index(f) for f in features]
    return X[:, order].astype(np.float32)


class ForecastServer(ThreadingHTTPServer):
    """Serve one loaded forecaster until :meth:`shutdown`."""

    daemon_threads = True

    def __init__(self, model: BreachForecaster, address: tuple[str, int], *, name: str):
        self.model = model
        self.features = list(model.meta_["features"])
        self.name = name
        # One prediction at a time: requests are small and LightGBM threads each one itself.
        self.predict_lock = threading.Lock()
        super().__init__(address, _Handler)

    def predictions(self, body: bytes) -> list[float]:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"the body is not JSON ({exc})") from None
        X = feature_matrix(doc, self.features)
        with self.predict_lock:
            p = self.model.predict_proba(X)
        return [float(v) for v in p]


class _Handler(BaseHTTPRequestHandler):
    server: ForecastServer
    protocol_version = "HTTP/1.1"  # keep-alive: the engine calls once per forecast tick

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        if self.path in ("/ping", "/health"):
            self._answer(HTTPStatus.OK, b"\n", "text/plain")
        elif self.path == "/version":
            self._answer(HTTPStatus.OK, self.server.name.encode() + b"\n", "text/plain")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/invocations":
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}")
            return
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        length = self.headers.get("Content-Length", "")
        if kind != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
            return
        if not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        if int(length) > MAX_BODY_BYTES:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {int(length):,} bytes, more than the {MAX_BODY_BYTES:,} accepted",
            )
            return
        body = self.rfile.read(int(length))
        try:
            predictions = self.server.predictions(body)
            text = json.dumps({"predictions": predictions}, allow_nan=False)
        except RequestError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception as exc:  # the model failed: say so to both ends, keep serving
            print(f"error: forecast failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"the forecast failed ({exc})")
            return
        self._answer(HTTPStatus.OK, text.encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        code = "BAD_REQUEST" if status == HTTPStatus.BAD_REQUEST else status.name
        text = json.dumps({"error_code": code, "message": message})
        self._answer(status, text.encode(), "application/json")

    def _answer(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per forecast tick would drown the terminal
