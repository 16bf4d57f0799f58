"""From history partitions to feature matrices, split by seed.

Rows that can be forecast are kept: accounts with an open position (MM > 0), not already in
breach, whose label is known (the run did not end within H). Training rows may drop a share of
negatives (every positive is kept; the calibration map restores the probabilities); calibration
and test rows keep the natural prevalence: they may keep a share of the accounts, with every
sample of a kept account, so that event-level recall still sees each kept account's history.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from predictor.data import ACCOUNT_COLUMNS, MARKET_COLUMNS, DataError, Partition
from predictor.features import account_features, market_arrays, market_features
from predictor.metrics import EvalRows

_ACCOUNT_BITS, _TICK_BITS = 20, 24


@dataclass(frozen=True, slots=True)
class Rows:
    """Feature rows of one or more paths, aligned arrays."""

    X: np.ndarray  # float32 (n, features)
    y: np.ndarray  # int8 (n,)
    path: np.ndarray  # int32 (n,): index of the partition in the data set
    tick: np.ndarray  # int64 (n,)
    account: np.ndarray  # int64 (n,)
    onset: np.ndarray  # int64 (n,): tick of the breach a positive row precedes, -1 otherwise
    minutes_per_tick: np.ndarray  # float64 (n,)
    loss: np.ndarray  # float64 (n,): bad debt of the breach episodes beginning within H (quote)
    impact: np.ndarray  # float64 (n,): their liquidation impact cost (quote units)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[mask] for f in self.__slots__))

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Rows.__slots__))

    def eval_rows(self) -> EvalRows:
        """Return the snapshot and event keys metrics need."""
        path = self.path.astype(np.int64)
        event = np.where(
            self.y == 1,
            ((path << _ACCOUNT_BITS | self.account) << _TICK_BITS) | self.onset,
            -1,
        )
        lead = np.where(self.y == 1, (self.onset - self.tick) * self.minutes_per_tick, 0.0)
        return EvalRows(self.y, (path << 32) | self.tick, event, lead)


def sampling_rng(seed: int, part: Partition) -> np.random.Generator:
    """Return the generator that samples rows of ``part`` (stable across runs and machines)."""
    return np.random.default_rng([seed, part.seed, zlib.crc32(part.scenario.encode())])


def build_path(
    part: Partition,
    index: int,
    horizon_minutes: float,
    label: str,
    sample: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Rows:
    """Return the forecastable rows of one partition with their features.

    ``sample(y, account, usable)`` may return a boolean mask over the whole table selecting which
    usable rows to keep (None keeps them all).
    """
    names = part.markets
    notional_cols = [f"notional_{n}" for n in names]
    markets = part.read("markets", [*MARKET_COLUMNS, "sigma_annual"])
    loss_label, impact_label = loss_columns(label)
    accounts = part.read(
        "accounts", [*ACCOUNT_COLUMNS, *notional_cols, label, loss_label, impact_label]
    )
    try:
        arrays = market_arrays(markets, names)
    except ValueError as exc:
        raise DataError(f"{part.path / 'markets.parquet'}: {exc}") from None
    if int(accounts["tick"].to_numpy().max(initial=0)) >= arrays["mark_price"].shape[0]:
        raise DataError(f"{part.path / 'accounts.parquet'}: samples ticks the market table lacks")
    if int(accounts["account"].to_numpy().max(initial=0)) >= 1 << _ACCOUNT_BITS:
        raise DataError(f"{part.path}: more than {1 << _ACCOUNT_BITS:,} accounts")
    y_all = accounts[label].to_numpy()
    usable = (
        (accounts["maintenance_margin"].to_numpy() > 0)
        & ~accounts["breached_now"].to_numpy()
        & (y_all >= 0)
    )
    if sample is not None:
        usable &= sample(y_all, accounts["account"].to_numpy(), usable)
    rows = np.flatnonzero(usable)
    mf = market_features(arrays, part.tick_ms)
    X = account_features(accounts, names, mf, part.tick_ms, horizon_minutes, rows)
    tick = accounts["tick"].to_numpy()[rows]
    y = y_all[rows].astype(np.int8)
    to_breach = accounts["ticks_to_breach"].to_numpy()[rows]
    return Rows(
        X=X,
        y=y,
        path=np.full(rows.size, index, np.int32),
        tick=tick,
        account=accounts["account"].to_numpy()[rows],
        onset=np.where(y == 1, tick + to_breach, -1),
        minutes_per_tick=np.full(rows.size, part.tick_ms / 60_000.0),
        loss=accounts[loss_label].to_numpy(np.float64)[rows],
        impact=accounts[impact_label].to_numpy(np.float64)[rows],
    )


def loss_columns(label: str) -> tuple[str, str]:
    """Return the bad-debt and impact label columns beside breach label ``label_<H>m``."""
    suffix = label.removeprefix("label_")
    return f"loss_{suffix}", f"impact_{suffix}"


def negatives_sampler(rate: float, rng: np.random.Generator):
    """Keep every positive and each negative with probability ``rate``."""

    def sample(y: np.ndarray, account: np.ndarray, usable: np.ndarray) -> np.ndarray:
        return (y == 1) | (rng.random(y.size) < rate)

    return sample


def accounts_sampler(fraction: float, rng: np.random.Generator):
    """Keep every row of a random ``fraction`` of the accounts."""

    def sample(y: np.ndarray, account: np.ndarray, usable: np.ndarray) -> np.ndarray:
        keep = rng.random(int(account.max(initial=0)) + 1) < fraction
        return keep[account]

    return sample


@dataclass(frozen=True, slots=True)
class SeedSplit:
    """Seeds of each role; a seed number belongs to one role in every scenario."""

    fit: tuple[int, ...]
    calibration: tuple[int, ...]
    test: tuple[int, ...]


def split_seeds(seeds: list[int], test_fraction: float, calibration_fraction: float) -> SeedSplit:
    """Split seed numbers into fit / calibration / test (the highest seeds are held out)."""
    seeds = sorted(set(seeds))
    if len(seeds) < 3:
        raise DataError(
            f"need at least 3 seeds to split training, calibration and test by seed, found "
            f"{len(seeds)} ({', '.join(map(str, seeds))}); simulate more with --seeds"
        )
    n_test = min(max(1, round(len(seeds) * test_fraction)), len(seeds) - 2)
    rest = len(seeds) - n_test
    n_cal = min(max(1, round(rest * calibration_fraction)), rest - 1)
    return SeedSplit(
        fit=tuple(seeds[: rest - n_cal]),
        calibration=tuple(seeds[rest - n_cal : rest]),
        test=tuple(seeds[rest:]),
    )
