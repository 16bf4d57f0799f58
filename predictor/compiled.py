"""The fast path: the booster compiled to native code (treelite + tl2cgen), same outputs.

``compile_booster`` turns a LightGBM booster into a shared library once per model (cached by the
hash of its ``model.txt`` under ``$PREDLIQ_CACHE``, default ``~/.cache/predliq/compiled``) and
returns a :class:`CompiledBooster` whose ``predict`` gives exactly what ``Booster.predict`` gives
(tested to 1e-12; the trees' thresholds and leaf values are the same doubles). When compiling is
unavailable — no C compiler, the packages missing, a failed build — it returns None and says
why once; callers keep using ``Booster.predict``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np

log = logging.getLogger("predliq.predictor")


def cache_root() -> Path:
    """Return the folder compiled models are kept in."""
    env = os.environ.get("PREDLIQ_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "predliq"
    return base / "compiled"


class CompiledBooster:
    """A compiled tree ensemble with ``Booster.predict``'s outputs (probabilities)."""

    def __init__(self, library: Path, threads: int = 2):
        import tl2cgen

        self.library = library
        self._tl2cgen = tl2cgen
        self._predictor = tl2cgen.Predictor(str(library), nthread=threads)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return float64 (rows,) probabilities of ``X`` (float32 or float64, NaN = missing)."""
        X = np.ascontiguousarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.shape[0] == 0:
            return np.empty(0)
        dmat = self._tl2cgen.DMatrix(X, dtype=str(X.dtype), missing=np.nan)
        return np.asarray(self._predictor.predict(dmat), np.float64).reshape(X.shape[0])


def compile_booster(booster: lgb.Booster, threads: int = 2) -> CompiledBooster | None:
    """Return the compiled form of ``booster`` (built or taken from the cache), or None when it
    cannot be compiled here."""
    text = booster.model_to_string()
    try:
        import tl2cgen
        import treelite
    except ImportError as exc:
        log.warning("compiled forecasts unavailable (%s); using Booster.predict", exc)
        return None
    key = hashlib.sha256(f"{tl2cgen.__version__}\n{text}".encode()).hexdigest()[:32]
    library = cache_root() / f"{key}.so"
    if not library.exists():
        try:
            library.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=library.parent))
            try:
                model = treelite.frontend.from_lightgbm(booster)
                built = work / "model.so"
                tl2cgen.export_lib(
                    model,
                    toolchain="gcc",
                    libpath=str(built),
                    params={"parallel_comp": threads},
                    nthread=threads,
                )
                os.replace(built, library)  # atomic: a reader never sees half a library
            finally:
                shutil.rmtree(work, ignore_errors=True)
        except Exception as exc:  # no compiler, a failed build: the booster still predicts
            log.warning("compiling the forecaster failed (%s); using Booster.predict", exc)
            return None
    try:
        return CompiledBooster(library, threads)
    except Exception as exc:
        log.warning("loading the compiled forecaster failed (%s); using Booster.predict", exc)
        return None
