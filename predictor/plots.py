"""Figures of a training run, written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def pr_curves(y: np.ndarray, probabilities: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Plot the precision-recall curve of each model, with the prevalence as the floor."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, p in probabilities.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name, lw=1.5)
    ax.axhline(y.mean(), color="grey", ls=":", lw=1, label=f"prevalence {y.mean():.3%}")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability(
    y: np.ndarray, probabilities: dict[str, np.ndarray], path: Path, title: str, bins: int = 10
) -> None:
    """Plot observed breach frequency against forecast probability, quantile bins, log axes."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lo = 1e-5
    for name, p in probabilities.items():
        order = np.argsort(p, kind="stable")
        parts = [b for b in np.array_split(order, bins) if len(b)]
        mean_p = np.array([p[b].mean() for b in parts])
        mean_y = np.array([y[b].mean() for b in parts])
        ax.plot(np.maximum(mean_p, lo), np.maximum(mean_y, lo), "o-", ms=3, lw=1, label=name)
    ax.plot([lo, 1], [lo, 1], color="grey", ls=":", lw=1, label="perfect")
    ax.set(xscale="log", yscale="log", xlabel="forecast probability (bin mean)")
    ax.set(ylabel="observed breach frequency", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def feature_importance(gains: dict[str, float], path: Path, top: int = 25) -> None:
    """Plot the features with the largest total gain."""
    items = sorted(gains.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(items) + 1.2))
    total = sum(gains.values()) or 1.0
    ax.barh([k for k, _ in items], [v / total for _, v in items], color="#3b6ea5")
    ax.set(xlabel="share of total gain", title="feature importance (gain)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lead_times(lead_minutes: np.ndarray, horizon: float, path: Path) -> None:
    """Plot how long before a breach its earliest alert fired."""
    fig, ax = plt.subplots(figsize=(6, 4))
    if lead_minutes.size:
        ax.hist(lead_minutes, bins=min(30, max(5, np.unique(lead_minutes).size)), color="#3b6ea5")
    ax.set(
        xlabel="minutes from the earliest alert to the breach",
        ylabel="caught breaches",
        title=f"lead time of alerts (H = {horizon:g} min, {lead_minutes.size:,} caught)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
