"""Forecast metrics, computed with scikit-learn and numpy (never ``mlflow.models.evaluate``,
which drops the probabilistic metrics for LightGBM models).

Per model and evaluation set: PR-AUC and PR-AUC / prevalence (lift over a random ranking),
ROC-AUC, Brier score and Brier skill against the prevalence, expected calibration error over
quantile bins, log loss, precision@k per snapshot (k = accounts a keeper budget can act on in a
block), event-level recall and the lead time of alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)


@dataclass(frozen=True, slots=True)
class EvalRows:
    """Rows scored together: labels plus what event-level metrics need.

    ``group`` identifies a snapshot (path and tick): precision@k ranks within it. ``event`` is
    the (path, account, onset tick) of the breach a positive row precedes (-1 for negatives),
    ``lead_minutes`` how long before that onset the row was sampled.
    """

    y: np.ndarray  # int8 (n,)
    group: np.ndarray  # int64 (n,)
    event: np.ndarray  # int64 (n,)
    lead_minutes: np.ndarray  # float64 (n,)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Return sum_b (n_b / n) |mean p_b - mean y_b| over ``bins`` equal-count bins of p."""
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, bins)
    n = len(p)
    return float(sum(len(b) / n * abs(p[b].mean() - y[b].mean()) for b in parts if len(b)))


def precision_at_k(
    p: np.ndarray, y: np.ndarray, group: np.ndarray, k: int, active_only: bool = False
) -> float:
    """Return the precision of the top-k forecasts of each snapshot, pooled over snapshots
    (only over snapshots with at least one breach ahead when ``active_only``: calm snapshots,
    where no list can be right, otherwise dominate)."""
    order = np.lexsort((-p, group))
    g = group[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    sizes = np.diff(np.r_[start, len(g)])
    rank = np.arange(len(g)) - np.repeat(start, sizes)
    keep = rank < k
    if active_only:
        active = np.add.reduceat(y[order], start) > 0
        keep &= np.repeat(active, sizes)
    top = order[keep]
    return float(y[top].mean()) if top.size else float("nan")


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Return the probability threshold with the best F1 (chosen on calibration data)."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if thresholds.size else 0.5


def event_recall(p: np.ndarray, rows: EvalRows, threshold: float) -> tuple[float, np.ndarray]:
    """Return (share of breach events with an alert in [t - H, t), lead times in minutes of the
    earliest alert of each caught event).

    Events are the breaches that had at least one scored row within H before them (a breach
    between two samples that are both more than H away cannot be forecast at this cadence).
    """
    pos = rows.event >= 0
    events = np.unique(rows.event[pos])
    if events.size == 0:
        return float("nan"), np.empty(0)
    alert = pos & (p >= threshold)
    caught = np.unique(rows.event[alert])
    lead = np.zeros(caught.size)  # the earliest alert of an event has the largest lead
    np.maximum.at(lead, np.searchsorted(caught, rows.event[alert]), rows.lead_minutes[alert])
    return caught.size / events.size, lead


def forecast_metrics(
    p: np.ndarray, rows: EvalRows, k: int, threshold: float
) -> tuple[dict[str, float], np.ndarray]:
    """Return (metrics, lead times of caught events) of probabilities ``p`` on ``rows``."""
    y = rows.y
    prevalence = float(y.mean())
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    brier = float(brier_score_loss(y, p))
    recall, lead = event_recall(p, rows, threshold)
    metrics = {
        "pr_auc": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        "brier": brier,
        "brier_skill": 1.0 - brier / max(prevalence * (1.0 - prevalence), 1e-12),
        "ece": expected_calibration_error(y, p),
        "log_loss": float(log_loss(y, pc, labels=[0, 1])),
        "precision_at_k": precision_at_k(p, y, rows.group, k),
        "precision_at_k_active": precision_at_k(p, y, rows.group, k, active_only=True),
        "event_recall": recall,
        "alert_threshold": threshold,
        "lead_minutes_median": float(np.median(lead)) if lead.size else float("nan"),
        "prevalence": prevalence,
    }
    metrics["pr_auc_lift"] = metrics["pr_auc"] / max(prevalence, 1e-12)
    return metrics, lead


def loss_metrics(predicted: np.ndarray, realised: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Return how well an expected-loss forecast ranks the losses that happened.

    ``predicted`` expected bad debt within H, ``realised`` the bad debt of the breach episodes
    that began within H, ``y`` the breach labels. ``loss_spearman`` is the rank correlation on
    the breach rows (a breach is not a loss: which breaches leave bad debt); ``loss_capture_10``
    the share of all realised bad debt carried by the 10% of rows forecast to lose most
    (0.1 for a random ranking); ``loss_capture_10_positive`` the same among breach rows.
    """
    from scipy.stats import spearmanr

    pos = y == 1
    out = {"loss_spearman": float("nan")}
    if pos.sum() > 2 and np.ptp(realised[pos]) > 0 and np.ptp(predicted[pos]) > 0:
        out["loss_spearman"] = float(spearmanr(predicted[pos], realised[pos]).statistic)
    out["loss_capture_10"] = _capture(predicted, realised, 0.1)
    out["loss_capture_10_positive"] = _capture(predicted[pos], realised[pos], 0.1)
    out["realised_loss"] = float(realised.sum())
    return out


def _capture(predicted: np.ndarray, realised: np.ndarray, share: float) -> float:
    total = float(realised.sum())
    if predicted.size == 0 or total <= 0:
        return float("nan")
    top = np.argsort(-predicted, kind="stable")[: max(1, round(share * predicted.size))]
    return float(realised[top].sum()) / total
