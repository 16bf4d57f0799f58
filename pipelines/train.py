"""`predliq train`: features, LightGBM forecaster, baselines, MLflow run, registry, export."""

from __future__ import annotations

from predictor.train import MODELS, Evaluation, TrainResult

TABLE_KEYS = (
    ("pr_auc", "PR-AUC"),
    ("pr_auc_lift", "PR-AUC/prev"),
    ("roc_auc", "ROC-AUC"),
    ("brier_skill", "Brier skill"),
    ("ece", "ECE"),
    ("log_loss", "log loss"),
    ("precision_at_k", "prec@k"),
    ("precision_at_k_active", "prec@k act."),
    ("event_recall", "event recall"),
    ("lead_minutes_median", "lead (min)"),
)


def format_evaluation(title: str, ev: Evaluation) -> str:
    """Return a plain-text table of every model's metrics on one evaluation set."""
    prevalence = ev.metrics["model"]["prevalence"]
    head = f"{title}: {ev.rows:,} rows, {ev.positives:,} positive ({prevalence:.3%})"
    widths = [14] + [max(len(label), 8) for _, label in TABLE_KEYS]
    lines = [
        head,
        "  ".join(
            [f"{'':<{widths[0]}}"]
            + [f"{label:>{w}}" for (_, label), w in zip(TABLE_KEYS, widths[1:], strict=True)]
        ),
    ]
    for name in MODELS:
        m = ev.metrics[name]
        cells = [f"{name:<{widths[0]}}"]
        for (key, _), w in zip(TABLE_KEYS, widths[1:], strict=True):
            v = m[key]
            cells.append(f"{v:>{w}.1f}" if key == "pr_auc_lift" else f"{v:>{w}.4f}")
        lines.append("  ".join(cells))
    lines.append(loss_line(ev))
    return "\n".join(lines)


def loss_line(ev: Evaluation) -> str:
    """Return one line on the expected-loss forecasts: rank correlation with the bad debt
    that followed on breach rows, and the share of it in the top 10% of rows."""
    parts = []
    for name in ("model", "analytic"):
        m = ev.metrics[name]
        parts.append(
            f"{name} Spearman {m['loss_spearman']:.3f}, top 10% of rows hold "
            f"{m['loss_capture_10']:.1%} (of breach rows: {m['loss_capture_10_positive']:.1%})"
        )
    realised = ev.metrics["model"]["realised_loss"]
    return f"expected bad debt (realised {realised:,.0f}): " + "; ".join(parts)


def format_importance(importance: dict) -> str:
    """Return the grouped permutation importance as lines of text."""
    lines = [
        f"permutation importance by feature group ({importance['rows']:,} held-out rows; PR-AUC "
        f"{importance['pr_auc']:.4f}, loss Spearman {importance['loss_spearman']:.3f}):"
    ]
    for group, d in importance["groups"].items():
        lines.append(
            f"  {group:<22} PR-AUC drop {d['pr_auc_drop']:+.4f} ({d['pr_auc_share']:.0%} of the "
            f"total), loss Spearman drop {d['loss_spearman_drop']:+.3f} "
            f"({d['loss_spearman_share']:.0%})"
        )
    return "\n".join(lines)


def format_result(result: TrainResult) -> str:
    """Return the held-out tables of a training run (seed split, regime shift, walk-forward)."""
    out = [
        format_evaluation(
            f"held-out seeds {list(result.split.test)}, H={result.horizon_minutes:g}m, "
            f"k={result.keeper_k}",
            result.seed_split,
        )
    ]
    if result.regime_shift is not None:
        out.append(
            format_evaluation(
                f"regime shift: trained without {result.regime_shift_scenario}, tested on it",
                result.regime_shift,
            )
        )
    for family, ev in result.family_holdouts.items():
        if family != result.regime_shift_scenario:
            out.append(format_evaluation(f"family held out: trained without {family}", ev))
    if result.importance:
        out.append(format_importance(result.importance))
    wf = ["walk-forward folds of the held-out paths (purge and embargo of H):"]
    for f in result.walk_forward:
        wf.append(
            f"  fold {f['fold']} ({f['share_of_path']} of each path): "
            f"{f['rows']:,} rows, {f['positives']:,} positive, PR-AUC model "
            f"{f['model_pr_auc']:.3f} vs analytic {f['analytic_pr_auc']:.3f}"
        )
    out.append("\n".join(wf))
    return "\n\n".join(out)
