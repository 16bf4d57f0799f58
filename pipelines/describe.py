"""`predliq simulate --describe` and `predliq facts`: is the simulated market realistic?

For a simulated run: the stylized facts of each market's 1-minute mark-price bars (the same
statistics as for real files), how much liquidations cluster in time, and the cascade
amplification factor: the venue's deepest drawdown with liquidation impact divided by the same
run's drawdown when liquidations fill without moving the book (same seed, same index path).
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.config import SimConfig
from engine.sim import Simulation
from engine.stylized import (
    COLUMNS,
    bar_statistics,
    file_statistics,
    liquidation_clustering,
    max_drawdown,
    minute_bars,
)

EXTRA = (
    ("index_drawdown_pct", "index max drawdown %", "{:.1f}"),
    ("mark_drawdown_pct", "venue max drawdown %", "{:.1f}"),
    ("no_impact_drawdown_pct", "venue drawdown, liquidations without impact %", "{:.1f}"),
    ("amplification", "cascade amplification (x)", "{:.2f}"),
    ("liquidations", "liquidations", "{:.0f}"),
    ("liquidation_dispersion", "liquidation clustering (var/mean per minute)", "{:.1f}"),
)


def market_statistics(sim: Simulation, k: int) -> dict[str, float]:
    """Return the stylized facts of market k's mark price in a finished run."""
    r = sim.records
    ticks_per_minute = max(1, 60_000 // sim.cfg.tick_ms)
    t_end = sim.t + 1
    bars = minute_bars(
        r["mark_price"][:t_end, k],
        r["taker_buy_usd"][:t_end, k],
        r["taker_sell_usd"][:t_end, k],
        ticks_per_minute,
    )
    stats = bar_statistics(*bars)
    n = bars[0].size - 1
    liq = r["liquidations"][1 : 1 + n * ticks_per_minute, k].reshape(n, ticks_per_minute)
    stats["liquidations"] = float(r["liquidations"][:t_end, k].sum())
    stats["liquidation_dispersion"] = liquidation_clustering(liq.sum(axis=1))
    stats["index_drawdown_pct"] = 100 * max_drawdown(sim.index_path[:t_end, k])
    stats["mark_drawdown_pct"] = 100 * max_drawdown(r["mark_price"][:t_end, k])
    return stats


def describe(cfg: SimConfig) -> tuple[Simulation, list[dict[str, float]]]:
    """Run a config and its no-liquidation-impact counterfactual; return the run and the
    statistics per market."""
    sim = Simulation(cfg)
    sim.run()
    calm = Simulation(cfg)
    calm.liquidator.impact = False
    calm.run()
    out = []
    for k in range(len(cfg.markets)):
        stats = market_statistics(sim, k)
        base = 100 * max_drawdown(calm.records["mark_price"][: calm.t + 1, k])
        stats["no_impact_drawdown_pct"] = base
        stats["amplification"] = stats["mark_drawdown_pct"] / base if base > 0 else math.nan
        out.append(stats)
    return sim, out


def format_table(names: list[str], rows: list[dict[str, float]], columns=COLUMNS + EXTRA) -> str:
    """Return statistics as a plain-text table: one row per statistic, one column per series."""
    label_w = max(len(label) for _, label, _ in columns)
    widths = [max(10, len(n)) for n in names]
    lines = ["  ".join([" " * label_w] + [n.rjust(w) for n, w in zip(names, widths, strict=True)])]
    for key, label, fmt in columns:
        cells = []
        for row, w in zip(rows, widths, strict=True):
            v = row.get(key, math.nan)
            cells.append(
                (
                    "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
                ).rjust(w)
            )
        lines.append("  ".join([label.ljust(label_w), *cells]))
    return "\n".join(lines)


def real_files(paths: list[str]) -> list[Path]:
    """Return the 1-minute bar files named, or found in the folders named."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                x for x in p.iterdir() if x.name.endswith((".csv", ".csv.gz")) and "_1m_" in x.name
            )
        else:
            found.append(p)
    return found


def facts_table(paths: list[Path]) -> str:
    """Return the stylized facts of real bar files as a table."""
    rows = [file_statistics(p) for p in paths]
    names = [p.name.split(".")[0].replace("BTCUSDT-PERP_1m_", "") for p in paths]
    return format_table(names, rows, COLUMNS)
