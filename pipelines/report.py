"""The evaluation's report: one self-contained HTML page for a risk committee.

``write_report`` turns ``summary.json``'s content, the per-run table and the replays' timelines
into ``report.html``: the verdict in plain words (per family and pooled, with intervals), a
table of contents, the headline table, frontiers and bad-debt distributions per family (tabs),
replay timelines with a shared zoom, forecast quality, margin coverage and the caveats.

Figures are Plotly: its JavaScript is written into the page once, so the file works offline and
travels alone, and every point shows its knob, cost and outcomes on hover. Numbers read as
money ($1.2M), shares (3.4%) or counts; wide tables scroll inside their own box.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.methodology import headline_rows

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
    "per unit of open interest (engine/outcomes.py); each part is in the frontier tables.",
    "Knobs are chosen on the tuning seeds and reported on the evaluation seeds; the frontiers "
    "are in sample (every knob on the evaluation seeds) and only show the trade-off.",
    "Confidence intervals resample paths within each family; with few paths they are wide, and "
    "a headline whose interval spans zero is not evidence that anticipation helps.",
    "Real replays drive one market with a real price path and taker flow; the population and "
    "book are synthetic and the same for every policy.",
)
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# How each outcome reads: money in quote units, a share (of open interest, of the fund), a count.
MONEY = {
    "bad_debt_mean",
    "bad_debt_var95",
    "bad_debt_es99",
    "bad_debt",
    "liquidated_notional",
    "if_drawdown_max",
    "adl_notional",
    "liquidation_slippage",
    "call_deposits",
    "derisk_paid",
    "refused_notional",
    "derisked_notional",
    "derisked_needless",
}
SHARES = {
    "all_in_cost",
    "capital_cost",
    "deposit_cost",
    "derisk_cost",
    "refusal_cost",
    "if_drawdown_share",
    "if_exhausted",
}
LABELS = {
    "knob": "knob",
    "paths": "paths",
    "bad_debt_mean": "bad debt (mean)",
    "bad_debt_var95": "bad debt VaR95",
    "bad_debt_es99": "bad debt ES99",
    "liquidations": "liquidations",
    "liquidated_notional": "liquidated notional",
    "cascade_size": "cascade size",
    "if_drawdown_max": "IF drawdown",
    "if_exhausted": "IF exhausted (share of paths)",
    "adl_notional": "ADL + socialized",
    "liquidation_slippage": "liquidation slippage",
    "all_in_cost": "all-in cost (of OI)",
    "capital_cost": "margin held",
    "deposit_cost": "forced deposits",
    "derisk_cost": "de-risking paid",
    "refusal_cost": "refused orders",
    "call_deposits": "call deposits ($)",
    "derisk_paid": "de-risking paid ($)",
    "refused_notional": "refused notional",
    "derisked_notional": "de-risked notional",
    "derisked_needless": "needless de-risking",
    "trader_cost": "trader cost ($·h)",
    "fallbacks": "forecast fallbacks",
}
OUTCOME_COLUMNS = (
    "knob",
    "paths",
    "bad_debt_mean",
    "bad_debt_var95",
    "bad_debt_es99",
    "liquidations",
    "liquidated_notional",
    "cascade_size",
    "if_drawdown_max",
    "if_exhausted",
    "adl_notional",
)
COST_COLUMNS = (
    "knob",
    "all_in_cost",
    "capital_cost",
    "deposit_cost",
    "derisk_cost",
    "refusal_cost",
    "call_deposits",
    "derisk_paid",
    "refused_notional",
    "derisked_notional",
    "derisked_needless",
    "fallbacks",
)


# --- numbers a person reads -------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, int | float | np.number) and math.isfinite(x)


def money(x: Any) -> str:
    """$1.2M, $540k, $12, −$3.4k; – for a missing value."""
    if not _finite(x):
        return "–"
    sign = "−" if x < 0 else ""
    a = abs(float(x))
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= size:
            value = a / size
            return f"{sign}${value:.{1 if value < 10 else 0}f}{suffix}"
    return f"{sign}${a:.0f}"


def share(x: Any, digits: int = 1) -> str:
    """3.4%, 0.12% (small shares keep two significant figures); – for a missing value."""
    if not _finite(x):
        return "–"
    pct = float(x) * 100.0
    if pct != 0 and abs(pct) < 1:
        text = f"{pct:.2g}%"
    else:
        text = f"{pct:.{digits}f}%"
    return text.replace("-", "−")


def count(x: Any) -> str:
    """1,234 or 12.5 (a mean over paths); – for a missing value."""
    if not _finite(x):
        return "–"
    x = float(x)
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}M"
    return f"{x:,.0f}" if abs(x) >= 100 or x == int(x) else f"{x:,.1f}"


def fmt(column: str, x: Any) -> str:
    """Format ``x`` as the kind of figure ``column`` holds."""
    if column in MONEY:
        return money(x)
    if column in SHARES:
        return share(x, 2)
    if column == "knob":
        return "–" if not _finite(x) else f"{float(x):g}"
    if column == "trader_cost":
        return money(x) + "·h" if _finite(x) else "–"
    return count(x)


def _interval(f: dict[str, Any]) -> str:
    """The 95% interval of a reduction as shares of the baseline's mean bad debt."""
    base = f["baseline_bad_debt"]
    if not base or base <= 0:
        return f"[{money(f['ci95'][0])}, {money(f['ci95'][1])}]"
    return f"[{share(f['ci95'][0] / base)}, {share(f['ci95'][1] / base)}]"


# --- the verdict --------------------------------------------------------------------------------


def _significance(f: dict[str, Any]) -> str:
    low, high = f["ci95"]
    if low > 0:
        return "significant"
    if high < 0:
        return "significantly worse"
    return "not significant"


def _change(f: dict[str, Any]) -> str:
    """'cut mean bad debt by 12.3% [3.1%, 20.0%] (significant)' — the interval runs the way the
    verb does — or 'left the same bad debt' / 'left no bad debt, as did' when nothing moved."""
    if f["baseline_bad_debt"] <= 0 and f["policy_bad_debt"] <= 0:
        return "left no bad debt, nor did"
    low, high = f["ci95"]
    if f["reduction"] == 0 and low == high == 0:
        return "left the same bad debt, path by path, as"
    r = f["reduction_share"]
    base = f["baseline_bad_debt"]
    if base > 0:
        low, high = low / base, high / base
        if r >= 0:
            size, interval = share(r), f"[{share(low)}, {share(high)}]"
        else:
            size, interval = share(-r), f"[{share(-high)}, {share(-low)}]"
    else:
        size, interval = money(abs(f["reduction"])), f"[{money(low)}, {money(high)}]"
    verb = "cut" if r >= 0 else "raised"
    return f"{verb} mean bad debt by {size} {interval} ({_significance(f)}) against"


def verdict(summary: dict[str, Any]) -> list[str]:
    """Return the report's opening sentences: predictive against the strongest reactive baseline
    at matched all-in cost, pooled and per family with 95% intervals; the other baselines; what
    perfect foresight and random ranking did at the same cost."""
    head = summary["headline"]
    comparisons = {b: row for b, row in head.get("comparisons", {}).items() if "families" in row}
    reactive = {b: r for b, r in comparisons.items() if b != "analytic"}
    if not reactive:
        why = "; ".join(
            f"{b}: " + "; ".join(f"{p} {w}" for p, w in row["not_reached"].items())
            for b, row in head.get("comparisons", {}).items()
            if "not_reached" in row
        )
        return [
            "No comparison at matched all-in cost could be made: "
            + (why or "the evaluation has no predictive runs")
            + "."
        ]
    # The strongest baseline: the one whose pooled bad debt at the matched cost is lowest.
    strongest = min(reactive, key=lambda b: reactive[b]["families"]["pooled"]["baseline_bad_debt"])
    families = reactive[strongest]["families"]
    pooled = families["pooled"]
    out = [
        f"At matched all-in cost, the predictive policy {_change(pooled)} {strongest}, the "
        f"strongest reactive baseline, pooled over {pooled['paths']} held-out paths."
    ]
    per_family = [
        f"on {name} ({f['paths']} paths) it {_change(f)} {strongest}"
        for name, f in families.items()
        if name != "pooled"
    ]
    if per_family:
        text = "; ".join(per_family)
        out.append(text[0].upper() + text[1:] + ".")
    others = [
        f"{_change(r['families']['pooled'])} {b}" for b, r in comparisons.items() if b != strongest
    ]
    if others:
        out.append("Pooled, it " + "; ".join(others) + ".")
    controls = head.get("controls", {})
    notes = [
        f"{label} ({arm}) {_change(controls[arm]['families']['pooled'])} static"
        for arm, label in (("oracle", "perfect foresight"), ("random", "random ranking"))
        if controls.get(arm, {}).get("families", {}).get("pooled")
    ]
    if notes:
        out.append("At predictive's cost, " + "; ".join(notes) + ".")
    return out


# --- figures ------------------------------------------------------------------------------------


def _figure_html(fig, div_id: str) -> str:
    import plotly.io as pio

    fig.update_layout(
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 100, "b": 50},
        font={"size": 12},
        # Above the plots: a legend below a fixed-height figure would run into the next one.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0},
        title={"y": 0.99, "yanchor": "top", "x": 0.01, "xanchor": "left"},
    )
    body = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG
    )
    return f'<div class="figure">{body}</div>'


HOVER_FIELDS = (
    "bad_debt_mean",
    "bad_debt_es99",
    "bad_debt_var95",
    "liquidations",
    "if_drawdown_max",
    "adl_notional",
    "capital_cost",
    "deposit_cost",
    "derisk_cost",
    "refusal_cost",
    "paths",
)


def _hover(policy: str, point: dict[str, Any]) -> str:
    lines = [
        f"<b>{html.escape(policy)}</b> knob {fmt('knob', point['knob'])}",
        f"all-in cost {fmt('all_in_cost', point.get('all_in_cost'))}",
    ]
    lines += [f"{LABELS[k]} {fmt(k, point.get(k))}" for k in HOVER_FIELDS if k in point]
    return "<br>".join(lines)


def frontier_figure(
    frontier: dict[str, list[dict[str, Any]]], title: str, matched_cost: float | None, div_id: str
) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean bad debt", "bad debt ES99"))
    for policy, points in frontier.items():
        points = sorted(points, key=lambda p: p["all_in_cost"])
        x = [p["all_in_cost"] for p in points]
        hover = [_hover(policy, p) for p in points]
        for col, key in ((1, "bad_debt_mean"), (2, "bad_debt_es99")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[p[key] for p in points],
                    mode="lines+markers",
                    name=policy,
                    legendgroup=policy,
                    showlegend=col == 1,
                    line={"color": COLORS.get(policy)},
                    hovertext=hover,
                    hoverinfo="text",
                ),
                row=1,
                col=col,
            )
    if matched_cost is not None:
        for col in (1, 2):
            fig.add_vline(x=matched_cost, line_dash="dot", line_color="#999", row=1, col=col)
    fig.update_xaxes(title_text="all-in cost (share of open interest)", tickformat=".2%")
    fig.update_yaxes(tickprefix="$", tickformat="~s")
    fig.update_layout(title=title, height=430)
    return _figure_html(fig, div_id)


def distribution_figure(
    results: pd.DataFrame, knobs: dict[str, float | None], title: str, div_id: str
) -> str | None:
    import plotly.graph_objects as go

    fig = go.Figure()
    evaluation = results[results["role"] == "eval"]
    for policy, knob in knobs.items():
        if knob is None:
            continue
        sel = evaluation[(evaluation["policy"] == policy) & (evaluation["knob"] == knob)]
        if sel.empty:
            continue
        fig.add_trace(
            go.Box(
                y=sel["bad_debt"],
                name=f"{policy} ({knob:g})",
                marker_color=COLORS.get(policy),
                boxmean=True,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                hovertext=[f"seed {s}" for s in sel["seed"]],
            )
        )
    if not fig.data:
        return None
    fig.update_yaxes(title_text="bad debt per path", tickprefix="$", tickformat="~s")
    fig.update_layout(title=title, height=380, showlegend=False)
    return _figure_html(fig, div_id)


def replay_figure(stem: str, series: dict[str, pd.DataFrame], div_id: str) -> str:
    """Price, cumulative liquidations and insurance fund per policy, one shared time axis: a zoom
    on any panel zooms all three."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=("mark price (policy) and index (real)", "liquidations", "insurance fund"),
    )
    first = next(iter(series.values()))
    start = first["time_ms"].iloc[0]
    for policy, frame in series.items():
        minutes = (frame["time_ms"] - start) / 60_000.0
        style = {"color": COLORS.get(policy), "width": 1.2}
        common = {"legendgroup": policy, "line": style}
        fig.add_trace(go.Scatter(x=minutes, y=frame["mark"], name=policy, **common), row=1, col=1)
        fig.add_trace(
            go.Scatter(
                x=minutes,
                y=frame["liquidations"].cumsum(),
                showlegend=False,
                name=policy,
                **common,
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=minutes, y=frame["insurance_fund"], showlegend=False, name=policy, **common
            ),
            row=3,
            col=1,
        )
    minutes = (first["time_ms"] - start) / 60_000.0
    fig.add_trace(
        go.Scatter(
            x=minutes,
            y=first["index"],
            name="index (real)",
            line={"color": "black", "width": 1, "dash": "dash"},
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="minutes from the start of the file", row=3, col=1)
    fig.update_yaxes(tickprefix="$", tickformat="~s", row=1, col=1)
    fig.update_yaxes(tickprefix="$", tickformat="~s", row=3, col=1)
    fig.update_layout(title=f"Replay {stem}", height=680, hovermode="x unified")
    return _figure_html(fig, div_id)


def reliability_figure(forecast: dict[str, Any], div_id: str) -> str | None:
    import plotly.graph_objects as go

    fig = go.Figure()
    top = 0.0
    for name, color in (("model", COLORS["predictive"]), ("analytic", COLORS["analytic"])):
        bins = np.array(forecast.get(name, {}).get("reliability") or [], dtype=float)
        if bins.size:
            fig.add_trace(
                go.Scatter(
                    x=bins[:, 0],
                    y=bins[:, 1],
                    mode="lines+markers",
                    name=name,
                    line={"color": color},
                    hovertemplate="forecast %{x:.2%}<br>observed %{y:.2%}<extra>"
                    + name
                    + "</extra>",
                )
            )
            top = max(top, float(bins[:, :2].max()))
    if not fig.data:
        return None
    top = top or 1.0
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="perfect calibration",
            line={"color": "grey", "dash": "dot"},
        )
    )
    fig.update_xaxes(title_text="forecast probability (quantile bin mean)", tickformat=".1%")
    fig.update_yaxes(title_text="observed breach rate", tickformat=".1%")
    fig.update_layout(title="Reliability on the evaluation paths", height=450, width=620)
    return _figure_html(fig, div_id)


# --- tables -------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str] | str], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    # A row given as a string is a whole-width note (e.g. a comparison that was not reached).
    body = "".join(
        f'<tr><td class="note" colspan="{len(header)}">{row}</td></tr>'
        if isinstance(row, str)
        else "<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _records_table(records: list[dict[str, Any]], columns: list[str], table_id: str) -> str:
    """A table of ``records`` whose columns are formatted by kind; text columns as they are."""
    header = [LABELS.get(c, c) for c in columns]
    rows = [
        [
            html.escape(str(r.get(c, ""))) if isinstance(r.get(c), str) else fmt(c, r.get(c))
            for c in columns
        ]
        for r in records
    ]
    return _table(header, rows, table_id)


def headline_table(
    summary: dict[str, Any], family: str | None = None, table_id: str = "headline"
) -> str:
    """Predictive and every control arm against each baseline at the knobs chosen on the tuning
    seeds; only ``family``'s rows when it is given."""
    head = summary["headline"]
    rows: list[list[str] | str] = []
    for policy, baseline, row in headline_rows(head):
        if "not_reached" in row:
            why = "; ".join(f"{p}: {w}" for p, w in row["not_reached"].items())
            rows.append(f"{policy} against {baseline}: not reached — {html.escape(why)}")
            continue
        knobs = row["tuning"]["knobs"]
        for name, f in row["families"].items():
            if family is not None and name != family:
                continue
            corr = f["paired_correlation"]
            part = f.get("share_of_predictive_reduction")
            rows.append(
                [
                    f"{policy} ({knobs[policy]:g})",
                    f"{baseline} ({knobs[baseline]:g})",
                    html.escape(name),
                    str(f["paths"]),
                    " / ".join(share(f["all_in_cost"][p], 2) for p in (policy, baseline)),
                    money(f["baseline_bad_debt"]),
                    money(f["policy_bad_debt"]),
                    f"{share(f['reduction_share'])} ({money(f['reduction'])})",
                    f"{_interval(f)} <span class='sig'>{_significance(f)}</span>",
                    "–" if corr is None else f"{corr:.2f}",
                    "–" if part is None else share(part, 0),
                ]
            )
    header = [
        "policy (knob)",
        "baseline (knob)",
        "family",
        "paths",
        "all-in cost (policy / baseline)",
        "baseline bad debt",
        "policy bad debt",
        "reduction",
        "95% CI of the reduction",
        "paired corr.",
        "share of predictive's reduction",
    ]
    return _table(header, rows, table_id)


def _frontier_records(frontier: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"policy": policy, **p} for policy, points in frontier.items() for p in points]


# --- the page -----------------------------------------------------------------------------------

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;
margin:0 auto;padding:1.5em 1.2em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{background:#f4f6f9;border-left:5px solid #4a6fa5;padding:.8em 1.1em;font-size:1.05em}
.verdict p{margin:.35em 0}
.lineage{color:#555;font-size:.92em}
nav.toc{columns:2;font-size:.95em;background:#fafafa;border:1px solid #eee;padding:.6em 1.2em}
nav.toc a{display:block;text-decoration:none;color:#1f5fa8;padding:1px 0}
.scroll{max-width:100%;overflow-x:auto;margin:.8em 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f5f5f5;white-space:normal;vertical-align:bottom;max-width:9em}
td:first-child,th:first-child{text-align:left}
.sig{color:#666;font-size:.9em;display:block}
td.note{text-align:left;white-space:normal;color:#555}
.figure{max-width:100%;overflow:hidden;margin:.6em 0}
.tabs{display:flex;flex-wrap:wrap;gap:4px;margin-top:.8em;border-bottom:2px solid #2ca02c}
.tabs button{border:1px solid #ccc;border-bottom:none;background:#f3f3f3;padding:5px 14px;
cursor:pointer;font-size:14px;border-radius:4px 4px 0 0}
.tabs button.active{background:#2ca02c;color:white;border-color:#2ca02c}
.panel{display:none}.panel.active{display:block}
"""
TABS_SCRIPT = """
document.querySelectorAll('.tabs').forEach(function(bar){
  bar.querySelectorAll('button').forEach(function(button){
    button.addEventListener('click',function(){
      var group=bar.dataset.group;
      bar.querySelectorAll('button').forEach(function(b){b.classList.remove('active');});
      document.querySelectorAll('.panel[data-group="'+group+'"]').forEach(function(p){
        p.classList.toggle('active',p.id===button.dataset.panel);});
      button.classList.add('active');
      // A figure drawn while its tab was hidden takes its size now.
      document.getElementById(button.dataset.panel).querySelectorAll('.js-plotly-plot')
        .forEach(function(plot){Plotly.Plots.resize(plot);});
    });
  });
});
"""


def _tabs(group: str, panels: list[tuple[str, str]]) -> str:
    """Tabs of ``(label, content)``; the first is shown."""
    buttons, bodies = [], []
    for i, (label, content) in enumerate(panels):
        pid = f"{group}-{i}"
        active = " active" if i == 0 else ""
        buttons.append(
            f'<button class="{active.strip()}" data-panel="{pid}">{html.escape(label)}</button>'
        )
        bodies.append(f'<div class="panel{active}" id="{pid}" data-group="{group}">{content}</div>')
    return f'<div class="tabs" data-group="{group}">{"".join(buttons)}</div>' + "".join(bodies)


def _family_panel(
    summary: dict[str, Any], results: pd.DataFrame, family: str, index: int, matched: float | None
) -> str:
    if family == "pooled":
        frontier = summary["frontier_in_sample"]
        frame = results
    else:
        frontier = summary.get("frontier_in_sample_by_family", {}).get(family, {})
        frame = results[results["scenario"] == family]
    parts = [
        headline_table(summary, family, f"headline-{index}"),
        frontier_figure(
            frontier,
            f"Frontiers, {family}: each point a knob; hover for its cost and outcomes",
            matched,
            f"frontier-{index}",
        ),
    ]
    box = distribution_figure(
        frame,
        summary["knobs"],
        f"Bad debt per evaluation path at each policy's tuned knob, {family}",
        f"distribution-{index}",
    )
    if box:
        parts.append(box)
    return "".join(parts)


def _forecast_records(forecast: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label, sets in (("acted", forecast["acted"]), ("all rows", forecast["all_rows"])):
        sets = sets if label == "acted" else {"pooled": sets}
        for family, q in sets.items():
            for name in ("model", "analytic"):
                if name in q:
                    rows.append(
                        {
                            "rows scored": label,
                            "family": family,
                            "forecast": name,
                            "rows": q["rows"],
                            "breach rate": q["prevalence"],
                            **{k: v for k, v in q[name].items() if k != "reliability"},
                        }
                    )
    return rows


def _plain_table(records: list[dict[str, Any]], table_id: str, shares: set[str]) -> str:
    """A table of mixed records: ``shares`` columns as percentages, other numbers to 3 figures."""
    if not records:
        return ""
    columns = list(dict.fromkeys(k for r in records for k in r))

    def cell(c: str, v: Any) -> str:
        if isinstance(v, str):
            return html.escape(v)
        if c in shares:
            return share(v, 2)
        if isinstance(v, int | np.integer):
            return f"{int(v):,}"
        return "–" if not _finite(v) else f"{float(v):,.3g}"

    rows: list[list[str] | str] = [[cell(c, r.get(c)) for c in columns] for r in records]
    return _table([c.replace("_", " ") for c in columns], rows, table_id)


def _attested(section: dict[str, Any]) -> str:
    """The attested-health section: each policy's verified figures and how to check them."""
    records = [
        {
            "policy": policy,
            "knob": f"{p['knob']:g}",
            "block": str(p["block"]),
            "accounts": count(p["accounts"]),
            "below maintenance": count(p["below_maintenance"]),
            "notional below": money(p["notional_below_maintenance"]),
            "margin they lack": money(p["gap_below_maintenance"]),
            "collateral": money(p["collateral"]),
            "maintenance": money(p["maintenance"]),
            "shortfall": money(p["shortfall"]),
            "bad debt": money(p["bad_debt"]),
            "root": f"{p['root'][:12]}…",
        }
        for policy, p in section["policies"].items()
    ]
    local = any(p["setup"] == "local" for p in section["policies"].values())
    return (
        f"<p>Path {html.escape(str(section['scenario']))} seed {section['seed']}, where the "
        "reactive venue left the most bad debt. Each policy's book at its worst block (where "
        "the accounts below maintenance lack the most margin, read after every block) is "
        "committed account by account and its totals proved in zero knowledge; the figures "
        "below are read from the verified attestation, not from the simulator. Anyone can check "
        "one with <code>predliq verify attestations/POLICY</code> in this folder; the openings "
        "each trader would receive are in <code>attestations-private/</code>.</p>"
        + _plain_table(records, "attested", set())
        + "".join(
            f"<p>{html.escape(policy)} not attested: {html.escape(why)}.</p>"
            for policy, why in section.get("not_attested", {}).items()
        )
        + (
            "<p>Setup made locally with one contribution: whoever made it could forge proofs. "
            "A venue publishing these uses a public ceremony's powers of tau.</p>"
            if local
            else ""
        )
    )


def write_report(
    folder: Path,
    summary: dict[str, Any],
    results: pd.DataFrame,
    replay_series: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> Path:
    """Write ``folder / report.html`` and return its path."""
    import plotly.offline

    replay_series = replay_series or {}
    lineage = summary["lineage"]
    evaluation_seeds = lineage["evaluation_seeds"]
    tuning_seeds = lineage["tuning_seeds"]
    static = summary["headline"].get("comparisons", {}).get("static", {})
    matched = static.get("tuning", {}).get("matched_cost")
    families = ["pooled", *sorted(summary.get("frontier_in_sample_by_family", {}))]
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)

    sections.append(
        (
            "headline",
            "Headline: out of sample, at matched all-in cost",
            "<p>Each policy at the knob chosen on the tuning seeds at the matched cost; the "
            "reduction is the baseline's mean bad debt less the policy's, path by path, with a "
            "paired bootstrap 95% interval as a share of the baseline's bad debt.</p>"
            + headline_table(summary),
        )
    )
    panels = [
        (family, _family_panel(summary, results, family, i, matched))
        for i, family in enumerate(families)
    ]
    sections.append(
        (
            "families",
            "By family: frontiers and bad-debt distributions",
            "<p>In sample: every knob on the evaluation paths (the trade-off, not the headline). "
            "The dotted line is the matched cost of predictive against static, read off the "
            "tuning seeds.</p>" + _tabs("family", panels),
        )
    )
    frontier_records = _frontier_records(summary["frontier_in_sample"])
    sections.append(
        (
            "frontier-tables",
            "Frontier tables (pooled, in sample)",
            "<h3>Outcomes</h3>"
            + _records_table(frontier_records, ["policy", *OUTCOME_COLUMNS], "frontier")
            + "<h3>Costs: what each lever cost, per unit of open interest and in dollars</h3>"
            + _records_table(frontier_records, ["policy", *COST_COLUMNS], "frontier-costs"),
        )
    )
    if summary.get("same_budget"):
        records = [
            {
                "rival": rival,
                "actions per forecast": knob,
                "family": family,
                "paths": f["paths"],
                "rival bad debt": money(f["baseline_bad_debt"]),
                "model bad debt": money(f["policy_bad_debt"]),
                "reduction": share(f["reduction_share"]),
                "95% CI": f"{_interval(f)} {_significance(f)}",
            }
            for rival, budgets in summary["same_budget"].items()
            for knob, families_ in budgets.items()
            for family, f in families_.items()
        ]
        sections.append(
            (
                "same-budget",
                "The ranking at the same budget of actions",
                "<p>Each rival spends as many actions per forecast as the model-driven arm; the "
                "reduction is the rival's bad debt less the model's, with its paired bootstrap "
                "interval (not at matched cost: what the ranking alone is worth).</p>"
                + _plain_table(records, "same-budget", set()),
            )
        )
    if summary.get("replays"):
        knobs = ", ".join(
            f"{p} {k:g}" for p, k in {**summary["knobs"], "static": 1.0}.items() if k is not None
        )
        records = [
            {"replay": stem, "policy": policy, **values}
            for stem, policies in summary["replays"].items()
            for policy, values in policies.items()
        ]
        columns = ["replay", "policy", "knob", "bad_debt", "liquidations", "liquidated_notional"]
        columns += ["if_drawdown_max", "adl_notional", "all_in_cost"]
        timelines = [
            (stem, replay_figure(stem, series, f"replay-figure-{i}"))
            for i, (stem, series) in enumerate(replay_series.items())
        ]
        sections.append(
            (
                "replays",
                "Real crash replays",
                f"<p>One population per file, each policy at its knob ({html.escape(knobs)}). "
                "Zoom on any panel of a timeline to zoom all three.</p>"
                + _records_table(records, columns, "replays")
                + (_tabs("replay", timelines) if timelines else ""),
            )
        )
    forecast = summary.get("forecast") or {}
    if forecast:
        reliability = reliability_figure(forecast["acted"]["pooled"], "reliability") or ""
        sections.append(
            (
                "forecast",
                "Forecast quality on the evaluation paths",
                "<p>Rows of the reactive runs' histories "
                f"({forecast.get('account_fraction', 0.25):.1%} of each path's accounts, every 5 "
                "minutes). <b>acted</b>: the rows the policy acts on — an open position, not in "
                "breach, inside the risk band; <b>all rows</b> includes rows no forecast is "
                "asked about.</p>"
                + _plain_table(_forecast_records(forecast), "forecast", {"breach rate", "ece"})
                + reliability,
            )
        )
    attested = summary.get("attested") or {}
    if attested.get("failed"):
        sections.append(
            (
                "attested",
                "Attested health at the worst block",
                f"<p>Not attested: {html.escape(attested['failed'])}</p>",
            )
        )
    elif attested:
        sections.append(("attested", "Attested health at the worst block", _attested(attested)))
    cover = summary.get("coverage") or {}
    if cover:
        records = [
            {"policy": policy, "knob": float(knob), **test}
            for policy, knobs in cover.items()
            for knob, test in knobs.items()
        ]
        sections.append(
            (
                "coverage",
                "Margin coverage (Kupiec test against 99% per 15-minute window)",
                _plain_table(records, "coverage", {"rate"}),
            )
        )
    sections.append(
        (
            "caveats",
            "Caveats",
            "<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in CAVEATS) + "</ul>",
        )
    )

    lineage_text = (
        f"Model {html.escape(str(lineage['model_uri']))} (version "
        f"{html.escape(str(lineage.get('model_version')))}), trained on seeds "
        f"{lineage['training_seeds']} of {html.escape(', '.join(lineage['training_scenarios']))}. "
        f"Knobs chosen on tuning seeds {tuning_seeds[0]}–{tuning_seeds[-1]}; reported on "
        f"evaluation seeds {evaluation_seeds[0]}–{evaluation_seeds[-1]} "
        f"({len(evaluation_seeds)} per family) of "
        f"{html.escape(', '.join(sorted(lineage['scenarios'])))}; every policy on the same "
        "paths."
    )
    toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>predliq evaluation: anticipatory against reactive liquidation</title>",
        f"<style>{STYLE}</style>",
        f"<script>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        "<h1>Anticipatory against reactive liquidation</h1>",
        '<div class="verdict" id="verdict">'
        + "".join(f"<p>{html.escape(s)}</p>" for s in verdict(summary))
        + "</div>",
        f'<p class="lineage">{lineage_text}</p>',
        f'<nav class="toc" id="toc">{toc}</nav>',
    ]
    parts += [f'<h2 id="{a}">{html.escape(t)}</h2>{body}' for a, t, body in sections]
    parts.append(f"<script>{TABS_SCRIPT}</script></body></html>")
    path = folder / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
