"""The fast path: the booster compiled to native code (lleaves, through LLVM), same outputs.

``compile_booster`` turns a LightGBM booster into machine code once per model and machine
(cached by the hash of its ``model.txt`` and the CPU under ``$PREDLIQ_CACHE``, default
``~/.cache/predliq/compiled``) and returns a :class:`CompiledBooster` whose ``predict`` gives
what ``Booster.predict`` gives to 1e-12 (the same trees and doubles; only the order in which
the trees' outputs are summed may differ, by an ulp or so). When compiling is unavailable — the
packages missing, a failed build — it returns None and says why once; callers keep using
``Booster.predict``.

lleaves rather than treelite + tl2cgen: on the rows the engine scores, tl2cgen's library ran
2.45x ``Booster.predict`` and lleaves 4x (one thread, the engine's small batches) to 7x (two
threads, large batches), with the same outputs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np

log = logging.getLogger("predliq.predictor")

PARALLEL_ROWS = 10_000
"""Batches at least this large are split over threads; smaller ones are not worth a thread."""


def cache_root() -> Path:
    """Return the folder compiled models are kept in."""
    env = os.environ.get("PREDLIQ_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "predliq"
    return base / "compiled"


class CompiledBooster:
    """A compiled tree ensemble with ``Booster.predict``'s outputs (probabilities)."""

    def __init__(self, model, library: Path, threads: int = 2):
        self._model = model
        self.library = library
        self.threads = threads

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return float64 (rows,) probabilities of ``X`` (NaN = missing)."""
        X = np.ascontiguousarray(X, np.float64)
        if X.shape[0] == 0:
            return np.empty(0)
        jobs = self.threads if X.shape[0] >= PARALLEL_ROWS else 1
        return np.asarray(self._model.predict(X, n_jobs=jobs), np.float64)


def _intact(library: Path, digest: Path) -> bool:
    """True when ``library`` has the SHA-256 recorded beside it when it was built."""
    try:
        recorded = digest.read_text().strip()
        return hashlib.sha256(library.read_bytes()).hexdigest() == recorded
    except OSError:
        return False


def compile_booster(booster: lgb.Booster, threads: int = 2) -> CompiledBooster | None:
    """Return the compiled form of ``booster`` (built or taken from the cache), or None when it
    cannot be compiled here."""
    try:
        from importlib.metadata import version

        import lleaves
        from llvmlite import binding
    except ImportError as exc:
        log.warning("compiled forecasts unavailable (%s); using Booster.predict", exc)
        return None
    text = booster.model_to_string()
    cpu = binding.get_host_cpu_name()
    versions = f"lleaves {version('lleaves')} llvmlite {version('llvmlite')} {cpu}"
    key = hashlib.sha256(f"{versions}\n{text}".encode()).hexdigest()
    library = cache_root() / f"{key[:32]}.o"
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".build-", dir=library.parent) as work:
            model_file = Path(work) / "model.txt"
            model_file.write_text(text)
            model = lleaves.Model(model_file=str(model_file))
            digest = library.with_suffix(".sha256")
            if library.exists() and not _intact(library, digest):
                # A damaged object file makes LLVM abort the process, not raise: never load one.
                log.warning("the compiled-model cache %s is damaged; rebuilding it", library)
                library.unlink(missing_ok=True)
            if library.exists():
                model.compile(cache=str(library))
            else:
                # Built beside its final name, then renamed: a reader never sees half a file;
                # its checksum is written after it, so a library without one is not trusted.
                built = Path(work) / "model.o"
                model.compile(cache=str(built))
                os.replace(built, library)
                digest.write_text(hashlib.sha256(library.read_bytes()).hexdigest() + "\n")
    except Exception as exc:  # a failed build: the booster still predicts
        log.warning("compiling the forecaster failed (%s); using Booster.predict", exc)
        return None
    return CompiledBooster(model, library, threads)
