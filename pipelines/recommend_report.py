"""report.html of `predliq recommend`: the recommendation, its confirmed intervals, the Pareto
front of cost against the first budget's statistic, and the one-at-a-time sensitivity."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from pipelines.report import STYLE, _figure_html, _plain_table


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} = {v:.6g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()
    )


def verdict(evidence: dict[str, Any]) -> str:
    """The one paragraph a committee reads first."""
    best = evidence["recommendation"]
    q = evidence["question"]
    confirmed = best.get("confirmed", {})
    cells = []
    for metric, m in confirmed.get("metrics", {}).items():
        lo, hi = m["ci95"]
        cells.append(
            f"{metric} {m['value']:,.4g} (95% interval {lo:,.4g} to {hi:,.4g}; budget "
            f"{m['op']} {m['bound']:,.4g}: {'holds' if m['holds'] else 'NOT held'})"
        )
    head = (
        "Recommended" if evidence["feasible"] else "No candidate keeps the budget; the closest is"
    )
    cost = confirmed.get("objective")
    cost_text = (
        "" if cost is None else f" at a cost of {cost:.4%} of open interest ({q['objective']})"
    )
    paths = confirmed.get("paths", 0)
    return (
        f"{head}: {_params(best['params'])}{cost_text}; " + "; ".join(cells) + f". Confirmed on "
        f"{paths} fresh paths (seeds {q['confirm_seeds'][0]}–{q['confirm_seeds'][-1]} of "
        f"{', '.join(q['scenarios'])}) after {q['trials']} search trials."
    )


def pareto_figure(evidence: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    points = evidence["pareto"]
    metric = evidence["question"]["budgets"][0]
    fig = go.Figure()
    for label, pick, symbol in (
        ("trial (feasible)", lambda p: p["feasible"] and not p["front"], "circle"),
        ("trial (infeasible)", lambda p: not p["feasible"], "x"),
        ("Pareto front", lambda p: p["front"], "diamond"),
    ):
        chosen = [p for p in points if pick(p)]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p["objective"] for p in chosen],
                y=[p["metric"] for p in chosen],
                mode="markers",
                name=label,
                marker={"symbol": symbol, "size": 9},
                text=[f"trial {p['trial']}: {_params(p['params'])}" for p in chosen],
                hoverinfo="text+x+y",
            )
        )
    bound = evidence["recommendation"].get("confirmed", {}).get("metrics", {})
    first = next(iter(bound.values()), None)
    if first is not None:
        fig.add_hline(y=first["bound"], line_dash="dash", annotation_text="budget")
    fig.update_layout(
        title=f"Cost against {html.escape(metric)} over the search trials (search seeds)",
        xaxis_title="cost, share of open interest",
        yaxis_title=metric.split("<")[0].split(">")[0],
        xaxis_tickformat=".2%",
        height=460,
    )
    return _figure_html(fig, "pareto")


def write_report(path: Path, evidence: dict[str, Any]) -> Path:
    """Write the recommendation's report.html (self-contained) to ``path``."""
    import plotly.offline

    q = evidence["question"]
    candidates = []
    for c in evidence["candidates"]:
        row: dict[str, Any] = {"trial": str(c["trial"]), "parameters": _params(c["params"])}
        if "failure" in c:
            row["confirmed"] = f"failed: {c['failure']}"
        else:
            conf = c["confirmed"]
            lo, hi = conf["objective_ci95"]
            row["cost (95% CI)"] = f"{conf['objective']:.4%} [{lo:.4%}, {hi:.4%}]"
            for metric, m in conf["metrics"].items():
                mlo, mhi = m["ci95"]
                how = "exact" if m.get("interval", "").startswith("exact") else "bootstrap"
                row[metric] = f"{m['value']:,.4g} [{mlo:,.4g}, {mhi:,.4g}] ({how})"
            row["paths"] = str(conf["paths"])
            row["budgets hold"] = "yes" if conf["holds"] else "no"
        candidates.append(row)
    sweep = []
    for s in evidence["sensitivity"]:
        row = {"key": s["key"], "from": str(s["from"]), "to": str(s["value"])}
        if "failure" in s:
            row["cost"] = f"failed: {s['failure']}"
        else:
            row["cost"] = f"{s['objective']:.4%}"
            for metric, value in s["metrics"].items():
                row[metric] = f"{value:,.4g}"
        sweep.append(row)
    question = (
        f"Scenarios {html.escape(', '.join(q['scenarios']))}; search seeds "
        f"{q['search_seeds'][0]}–{q['search_seeds'][-1]}, confirmation seeds "
        f"{q['confirm_seeds'][0]}–{q['confirm_seeds'][-1]}; budgets "
        f"{html.escape('; '.join(q['budgets']))}; objective {html.escape(q['objective'])} "
        f"({html.escape(q['objective_means'])}); {q['trials']} trials ("
        f"{html.escape(q['sampler'])}); space: "
        + html.escape(
            "; ".join(
                f"{d['key']} in {list(d['choices'])}"
                if d["kind"] == "choice"
                else f"{d['key']} in [{d['low']:g}, {d['high']:g}] ({d['kind']})"
                for d in q["space"]
            )
        )
        + "."
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>predliq recommendation</title>",
        f"<style>{STYLE}</style>",
        f"<script>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        "<h1>Recommendation</h1>",
        f'<div class="verdict" id="verdict"><p>{html.escape(verdict(evidence))}</p></div>',
        f'<p class="lineage">{question}</p>',
        "<h2 id='candidates'>Confirmed candidates</h2>",
        "<p>The best search trials (feasible first, by cost), each re-run on the confirmation "
        "seeds: the figures with their 95% bootstrap intervals over those paths. The "
        "recommendation is the cheapest whose budgets hold at the far end of the interval.</p>",
        _plain_table(candidates, "candidates", set()),
        "<h2 id='pareto'>Pareto front</h2>",
        pareto_figure(evidence),
        "<h2 id='sensitivity'>Sensitivity around the recommendation</h2>",
        "<p>Each key moved alone by a tenth of its range either way (a choice to each other "
        "choice), on the confirmation seeds.</p>",
        _plain_table(sweep, "sensitivity", set()) if sweep else "<p>Not run.</p>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
