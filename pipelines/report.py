"""The evaluation's report: one self-contained HTML page (figures embedded) for a risk committee.

``write_report`` turns ``summary.json``'s content, the per-run table and the replays' timelines
into ``report.html``: the headline table, the frontiers, bad-debt distributions, replay
timelines (price, liquidations, insurance fund per policy), the reliability diagram, margin
coverage, and the caveats. Every figure is a PNG inside the page, so the file travels alone.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines.evaluate import headline_rows  # noqa: E402

COLORS = {
    "static": "#444444",
    "vol_scaled": "#1f77b4",
    "oi_scaled": "#9467bd",
    "analytic": "#ff7f0e",
    "predictive": "#2ca02c",
    "breached_only": "#8c564b",
    "random": "#7f7f7f",
    "oracle": "#d62728",
}
CAVEATS = (
    "Every path is simulated: the traders, the book and the keepers follow this project's "
    "models, whose stylized facts are compared with real data in the README, not fitted to a "
    "venue.",
    "The forecaster was trained on simulated crash scenarios; on a family it has not seen its "
    "ranking and calibration can fall below the analytic first-passage forecast (see forecast "
    "quality below), and the predictive policy then acts on worse information.",
    "Policies are matched on the all-in cost: maintenance margin held per unit of open interest "
    "plus forced deposits, what de-risking paid and the margin-equivalent of refused orders, each "
    "per unit of open interest (engine/outcomes.py); each part is in the frontier table.",
    "Knobs are chosen on the tuning seeds and reported on the evaluation seeds; the frontiers "
    "below are in sample (every knob on the evaluation seeds) and only show the trade-off.",
    "Confidence intervals resample paths within each family; with few paths they are wide, and "
    "a headline whose interval spans zero is not evidence that anticipation helps.",
    "Real replays drive one market with a real price path and taker flow; the population and "
    "book are synthetic and the same for every policy.",
)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def frontier_figure(summary: dict[str, Any]) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for policy, points in summary["frontier_in_sample"].items():
        x = [p["all_in_cost"] for p in points]
        for ax, key in zip(axes, ("bad_debt_mean", "bad_debt_es99"), strict=True):
            y = [p[key] for p in points]
            ax.plot(x, y, "o-", color=COLORS.get(policy), label=policy)
            for p, xi, yi in zip(points, x, y, strict=True):
                ax.annotate(
                    f"{p['knob']:g}",
                    (xi, yi),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    for ax, title in zip(axes, ("mean bad debt", "bad debt ES99"), strict=True):
        ax.set_xlabel("all-in cost (per unit of open interest)")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("In-sample frontiers: each point a knob (labelled), means over evaluation paths")
    return _png(fig)


def distribution_figure(results: pd.DataFrame, knobs: dict[str, float | None]) -> str:
    fig, ax = plt.subplots(figsize=(11, 4))
    data, labels = [], []
    evaluation = results[results["role"] == "eval"]
    for policy, knob in knobs.items():
        sel = evaluation[(evaluation["policy"] == policy) & (evaluation["knob"] == knob)]
        if not sel.empty:
            data.append(sel["bad_debt"].to_numpy())
            labels.append(f"{policy}\n(knob {knob:g})")
    if data:
        ax.boxplot(data, tick_labels=labels, showmeans=True)
    ax.set_ylabel("bad debt per path")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Bad debt across evaluation paths at each policy's tuned knob")
    return _png(fig)


def replay_figure(stem: str, series: dict[str, pd.DataFrame]) -> str:
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for policy, frame in series.items():
        minutes = (frame["time_ms"] - frame["time_ms"].iloc[0]) / 60_000.0
        color = COLORS.get(policy)
        axes[0].plot(minutes, frame["mark"], color=color, lw=0.9, label=f"{policy} mark")
        axes[1].plot(minutes, frame["liquidations"].cumsum(), color=color, label=policy)
        axes[2].plot(minutes, frame["insurance_fund"], color=color, label=policy)
    first = next(iter(series.values()))
    minutes = (first["time_ms"] - first["time_ms"].iloc[0]) / 60_000.0
    axes[0].plot(minutes, first["index"], color="black", lw=0.6, ls="--", label="index (real)")
    axes[0].set_ylabel("price")
    axes[1].set_ylabel("liquidations (cumulative)")
    axes[2].set_ylabel("insurance fund")
    axes[2].set_xlabel("minutes from the start of the file")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=3)
    fig.suptitle(f"Replay {stem}")
    return _png(fig)


def reliability_figure(forecast: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for name, color in (("model", COLORS["predictive"]), ("analytic", COLORS["analytic"])):
        bins = np.array(forecast.get(name, {}).get("reliability") or [], dtype=float)
        if bins.size:
            ax.plot(bins[:, 0], bins[:, 1], "o-", color=color, label=name)
            top = max(top, bins[:, :2].max())
    top = top or 1.0
    ax.plot([0, top], [0, top], color="grey", ls=":", label="perfect calibration")
    ax.set_xlabel("forecast probability (quantile bin mean)")
    ax.set_ylabel("observed breach rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Reliability on the evaluation paths")
    return _png(fig)


def _money(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.0f}"


def headline_table(summary: dict[str, Any]) -> str:
    head = summary["headline"]
    rows = []

    def add(policy: str, baseline: str, row: dict[str, Any]) -> None:
        if "not_reached" in row:
            why = "; ".join(f"{p}: {w}" for p, w in row["not_reached"].items())
            rows.append(
                f"<tr><td>{policy}</td><td>{baseline}</td><td colspan=9>not reached — "
                f"{html.escape(why)}</td></tr>"
            )
            return
        knobs = row["tuning"]["knobs"]
        for family, f in row["families"].items():
            lo, hi = f["ci95"]
            share = f.get("share_of_predictive_reduction")
            corr = f["paired_correlation"]
            rows.append(
                f"<tr><td>{policy} {knobs[policy]:g}</td><td>{baseline} {knobs[baseline]:g}</td>"
                f"<td>{html.escape(family)}</td><td>{f['paths']}</td>"
                f"<td>{f['all_in_cost'][policy]:.4f} / {f['all_in_cost'][baseline]:.4f}</td>"
                f"<td>{_money(f['baseline_bad_debt'])}</td><td>{_money(f['policy_bad_debt'])}</td>"
                f"<td>{f['reduction_share']:.1%}</td><td>[{_money(lo)}, {_money(hi)}]</td>"
                f"<td>{'–' if corr is None else f'{corr:.2f}'}</td>"
                f"<td>{'' if share is None else f'{share:.0%}'}</td></tr>"
            )

    for policy, baseline, row in headline_rows(head):
        add(policy, baseline, row)
    return (
        '<table id="headline"><thead><tr><th>policy (knob)</th><th>baseline (knob)</th>'
        "<th>family</th><th>paths</th><th>all-in cost (policy / baseline)</th>"
        "<th>baseline bad debt</th><th>policy bad debt</th><th>reduction</th>"
        "<th>95% CI of the reduction</th><th>paired corr.</th>"
        "<th>share of predictive's reduction</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _frame_table(frame: pd.DataFrame, table_id: str) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:,.4g}", table_id=table_id)


def write_report(
    folder: Path,
    summary: dict[str, Any],
    results: pd.DataFrame,
    replay_series: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> Path:
    """Write ``folder / report.html`` and return its path."""
    replay_series = replay_series or {}
    lineage = summary["lineage"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>predliq evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img.figure{max-width:100%;display:block;margin:1em 0}</style></head><body>",
        "<h1>Anticipatory against reactive liquidation</h1>",
        f"<p>Model {html.escape(str(lineage['model_uri']))} (version "
        f"{lineage.get('model_version')}), trained on seeds {lineage['training_seeds']} of "
        f"{', '.join(lineage['training_scenarios'])}. Knobs chosen on tuning seeds "
        f"{lineage['tuning_seeds'][0]}–{lineage['tuning_seeds'][-1]}; reported on evaluation "
        f"seeds {lineage['evaluation_seeds'][0]}–{lineage['evaluation_seeds'][-1]} "
        f"({len(lineage['evaluation_seeds'])} per family) of "
        f"{', '.join(sorted(lineage['scenarios']))}; every policy on the same paths.</p>",
        "<h2>Headline: out of sample, at matched all-in cost</h2>",
        headline_table(summary),
        "<h2>Frontiers (in sample)</h2>",
        _img(frontier_figure(summary), "frontiers"),
        _img(distribution_figure(results, summary["knobs"]), "bad-debt distributions"),
    ]
    rows = [
        {"policy": policy, **{k: v for k, v in p.items() if k != "paths"}}
        for policy, points in summary["frontier_in_sample"].items()
        for p in points
    ]
    parts.append(_frame_table(pd.DataFrame(rows), "frontier"))
    if summary.get("same_budget"):
        parts.append("<h2>The ranking at the same budget of actions</h2>")
        parts.append(
            "<p>Each rival spends as many actions per forecast as the model-driven arm; the "
            "reduction is the rival's bad debt less the model's, with its paired bootstrap "
            "interval (not at matched cost: what the ranking alone is worth).</p>"
        )
        rows = [
            {
                "rival": rival,
                "actions per forecast": knob,
                "family": family,
                "paths": f["paths"],
                "rival bad debt": f["baseline_bad_debt"],
                "model bad debt": f["policy_bad_debt"],
                "reduction": f["reduction_share"],
                "95% CI low": f["ci95"][0],
                "95% CI high": f["ci95"][1],
            }
            for rival, budgets in summary["same_budget"].items()
            for knob, families in budgets.items()
            for family, f in families.items()
        ]
        parts.append(_frame_table(pd.DataFrame(rows), "same-budget"))
    if summary.get("replays"):
        parts.append("<h2>Real crash replays</h2>")
        table = pd.DataFrame(
            [
                {"replay": stem, "policy": policy, **values}
                for stem, policies in summary["replays"].items()
                for policy, values in policies.items()
            ]
        )
        knobs = ", ".join(
            f"{p} {k:g}" for p, k in {**summary["knobs"], "static": 1.0}.items() if k is not None
        )
        parts.append(f"<p>One population per file, each policy at its knob ({knobs}).</p>")
        parts.append(_frame_table(table, "replays"))
        for stem, series in replay_series.items():
            parts.append(_img(replay_figure(stem, series), f"replay {stem}"))
    forecast = summary.get("forecast") or {}
    if forecast:
        parts.append("<h2>Forecast quality on the evaluation paths</h2>")
        rows = []
        for label, sets in (("acted", forecast["acted"]), ("all rows", forecast["all_rows"])):
            sets = sets if label == "acted" else {"pooled": sets}
            for family, q in sets.items():
                for name in ("model", "analytic"):
                    if name in q:
                        figures = {k: v for k, v in q[name].items() if k != "reliability"}
                        rows.append(
                            {
                                "rows scored": label,
                                "family": family,
                                "forecast": name,
                                "rows": q["rows"],
                                "breach rate": q["prevalence"],
                                **figures,
                            }
                        )
        parts.append(
            "<p>Rows of the reactive runs' histories "
            f"({forecast.get('account_fraction', 0.25):.1%} of each path's accounts, every 5 "
            "minutes). <b>acted</b>: the rows the policy acts on — an open position, not in "
            "breach, inside the risk band; <b>all rows</b> includes rows no forecast is asked "
            "about.</p>"
        )
        parts.append(_frame_table(pd.DataFrame(rows), "forecast"))
        parts.append(_img(reliability_figure(forecast["acted"]["pooled"]), "reliability"))
    cover = summary.get("coverage") or {}
    if cover:
        rows = [
            {"policy": policy, "knob": knob, **test}
            for policy, knobs in cover.items()
            for knob, test in knobs.items()
        ]
        parts.append("<h2>Margin coverage (Kupiec test against 99% per 15-minute window)</h2>")
        parts.append(_frame_table(pd.DataFrame(rows), "coverage"))
    parts.append("<h2>Caveats</h2><ul>")
    parts.extend(f"<li>{html.escape(c)}</li>" for c in CAVEATS)
    parts.append("</ul>")
    # Lets a headless browser confirm that every figure decoded.
    parts.append(
        "<script>window.addEventListener('load',function(){var i=document.images,n=0;"
        "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
        "document.body.setAttribute('data-figures',n+'/'+i.length);});</script>"
    )
    parts.append("</body></html>")
    path = folder / "report.html"
    path.write_text("\n".join(parts))
    return path
