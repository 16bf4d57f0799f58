"""`predliq simulate`: run one scenario config through the engine and write its partition."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from engine.config import SimConfig
from engine.errors import PredliqError
from engine.history import check_partition, write_run
from engine.sim import Simulation

POLICY_CHOICES = ("static", "vol_scaled", "oi_scaled", "predictive", "analytic", "oracle")
"""``--policy`` values: the engine's policies, plus ``analytic`` and ``oracle`` — the predictive
policy fed by the first-passage probability or by the reactive run's own future."""


@dataclass(frozen=True)
class ForecastSource:
    """Where each run's forecaster comes from. Every run builds a fresh one (online features
    follow one run), on whichever process runs it."""

    kind: str = "none"  # none | model | remote | analytic | oracle | breached_only | random
    model: Any = None  # a BreachForecaster for kind "model", the server's URL for "remote"
    compiled: bool = True  # score with the compiled trees (same outputs, faster)
    timeout_s: float = 2.0  # how long a remote forecaster may take

    def build(self, cfg: SimConfig):
        if cfg.policy.name != "predictive" or self.kind == "none":
            return None
        if self.kind == "model":
            from predictor.serving import ModelForecaster

            return ModelForecaster(self.model, compiled=self.compiled)
        if self.kind == "remote":
            from predictor.serving import RemoteForecaster

            return RemoteForecaster(
                self.model, horizon_minutes=cfg.policy.horizon_minutes, timeout_s=self.timeout_s
            )
        if self.kind == "analytic":
            from predictor.serving import AnalyticForecaster

            return AnalyticForecaster(horizon_minutes=cfg.policy.horizon_minutes)
        if self.kind == "breached_only":
            from engine.forecasters import BreachedOnlyForecaster

            return BreachedOnlyForecaster()
        if self.kind == "random":
            from engine.forecasters import RandomRankingForecaster
            from predictor.serving import ModelForecaster

            inner = ModelForecaster(self.model, compiled=self.compiled)
            return RandomRankingForecaster(inner, cfg.seed)
        from engine.forecasters import oracle_forecaster

        return oracle_forecaster(cfg, cfg.policy.horizon_minutes)


NO_FORECASTS = ForecastSource()


def run(
    cfg: SimConfig, show_progress: bool = True, source: ForecastSource = NO_FORECASTS
) -> Simulation:
    """Run a config to the end, with a progress bar on stderr when it is a terminal."""
    sim = Simulation(cfg, forecaster=source.build(cfg))
    if show_progress and sys.stderr.isatty():
        with click.progressbar(
            length=sim.steps, label=f"{cfg.name} seed {cfg.seed}", file=sys.stderr
        ) as bar:
            sim.run(progress=lambda t: bar.update(1))
    else:
        sim.run()
    return sim


class SeedsError(PredliqError, ValueError):
    """A ``--seeds`` value that is not a list of seed ranges."""


class FallbackError(PredliqError, RuntimeError):
    """A run in which more forecasts fell back to the reactive policy than allowed: not the run
    that was asked for (exit 3; --max-fallback-share or --allow-fallback keeps it)."""


def simulate_to(
    cfg: SimConfig,
    out: Path,
    overwrite: bool,
    source: ForecastSource = NO_FORECASTS,
    max_fallback_share: float = 1.0,
) -> tuple[Simulation | None, Path]:
    """Run and write a partition; return (None, path) when an identical one is already there.
    A run in which more than ``max_fallback_share`` of the forecasts fell back to the reactive
    policy (0: any) raises :class:`FallbackError` and writes nothing."""
    from engine.history import partition_dir

    if check_partition(out, cfg, overwrite):
        return None, partition_dir(out, cfg)
    sim = run(cfg, source=source)
    if sim.policy is not None:
        summary = sim.policy.summary()
        fell, asked = summary["policy_fallbacks"], summary["policy_forecasts"]
        if fell > max_fallback_share * asked:
            reasons = ", ".join(
                f"{k.removeprefix('policy_fallbacks_')} {v:,}"
                for k, v in summary.items()
                if k.startswith("policy_fallbacks_") and v
            )
            raise FallbackError(
                f"{cfg.name} seed {cfg.seed}: {fell:,} of {asked:,} forecasts "
                f"({fell / asked:.1%}) fell back to the reactive policy ({reasons}), more than "
                f"the {max_fallback_share:.1%} allowed; nothing written (--max-fallback-share "
                "or --allow-fallback keeps such a run)"
            )
    return sim, write_run(sim, out)


def format_summary(sim: Simulation) -> str:
    """Return a plain-text table of the run per market plus totals (quote units)."""
    r = sim.records
    t_end = sim.t + 1
    cfg = sim.cfg
    rows = []
    for k, mk in enumerate(cfg.markets):
        index = sim.index_path[:t_end, k]
        mark = r["mark_price"][1:t_end, k]
        rows.append(
            [
                mk.name,
                f"{int(r['liquidations'][1:t_end, k].sum()):,}",
                f"{r['liquidated_notional'][1:t_end, k].sum():,.0f}",
                f"{r['bad_debt'][1:t_end, k].sum():,.0f}",
                f"{mk.insurance_fund_usd:,.0f}",
                f"{sim.ledger.insurance[k] / 1e6:,.0f}",
                f"{r['adl_notional'][1:t_end, k].sum():,.0f}",
                f"{r['socialized'][1:t_end, k].sum():,.0f}",
                f"{index.min() / index[0] - 1:+.1%}",
                f"{(mark.min() / index[0] - 1) if mark.size else 0.0:+.1%}",
                f"{int(r['paused'][1:t_end, k].sum())}",
            ]
        )
    header = [
        "market",
        "liquidations",
        "liq. notional",
        "bad debt",
        "IF before",
        "IF after",
        "ADL notional",
        "socialized",
        "index low",
        "mark low",
        "paused blocks",
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    s = sim.summary()
    lines.append("")
    lines.append(
        f"{s['accounts']:,} accounts, {s['steps']:,} blocks of {cfg.tick_ms / 1000:g}s, seed "
        f"{cfg.seed}: {s['liquidations']:,} liquidations, bad debt {s['bad_debt']:,.0f}, "
        f"insurance fund {s['insurance_fund_start']:,.0f} -> {s['insurance_fund_end']:,.0f}, "
        f"ADL {s['adl_notional']:,.0f}, keepers earned {s['keeper_rewards']:,.0f}, "
        f"{s['orders_rejected']:,} orders rejected by initial margin."
    )
    if s["below_maintenance_at_end"]:
        lines.append(
            f"At the end {s['below_maintenance_at_end']:,} accounts are still below maintenance "
            f"margin, not yet liquidated, with {s['deficit_at_end']:,.0f} of "
            "negative equity: loss not yet realized as bad debt (closing at the mark would "
            "realize at least that)."
        )
        note = _paced_liquidation_note(sim)
        if note:
            lines.append(note)
    if s["opening_below_maintenance"]:
        share = s["opening_below_maintenance"] / max(s["accounts"], 1)
        lines.append(
            f"{s['opening_below_maintenance']:,} accounts ({share:.1%}) start below this "
            "venue's maintenance margin: the starting leverage (the accounts' and traders' "
            "leverage settings) is more than its rules maintain, so keepers liquidate them from "
            "the first blocks, crash or not (--set accounts.opening_margin=initial starts every "
            "account at or above the venue's initial margin)."
        )
    pol = cfg.policy
    if pol.name != "static" or pol.knob != 1.0:
        lines.append(
            f"policy {pol.name} (knob {pol.knob:g}): {s['policy_scored_rows']:,} account "
            f"forecasts, {s['policy_warnings']:,} margin calls, "
            f"{s['policy_derisked_notional']:,.0f} de-risked pre-emptively, "
            f"{s['policy_gated_blocks']:,} gated market-blocks, {s['policy_fallbacks']:,} "
            "forecasts fell back to the reactive policy."
        )
        if s["policy_breach_onsets"]:
            kept = s["policy_onsets_scored_within_horizon"] / s["policy_breach_onsets"]
            lines.append(
                f"risk band: {kept:.1%} of {s['policy_breach_onsets']:,} breach onsets had been "
                f"scored within the horizon before them (the recall the band keeps)."
            )
    err = sim.ledger.conservation_error()
    lines.append(
        "value conserved exactly (sum of balances = net deposits)"
        if err == 0
        else f"VALUE NOT CONSERVED: off by {err} quote quantums"
    )
    net = np.abs(sim.ledger.size.sum(axis=0)).max()
    lines.append(
        "positions net to zero in every market"
        if net == 0
        else f"POSITIONS DO NOT NET TO ZERO: {net}"
    )
    return "\n".join(lines)


_ONE_SECOND_MS = 1_000
"""Blocks of at most this length pace liquidation about as fast as the venues (a dYdX block is
about a second): no note then."""


def _paced_liquidation_note(sim: Simulation) -> str:
    """Return why accounts may be left in breach by the venue's pacing of liquidations, or ""
    when every market may close a position whole in one block.

    Per-block rules (dYdX's portion and per-subaccount limit) and a cooldown shorter than a
    block (Hyperliquid's 30 s) act once per simulated block: with blocks longer than the
    venue's, positions are liquidated more slowly than on the venue (docs/venues.md).
    """
    cfg = sim.cfg
    paced: dict[str, list[str]] = {}  # what a block may close -> the markets
    for mk, rules in zip(cfg.markets, sim.venue.rules, strict=True):
        if not rules.sized_per_block:
            continue
        liq = mk.liquidation
        parts = []
        if liq.max_portion < 1.0:
            part = f"{liq.max_portion:.0%} of a position"
            if liq.min_notional_usd:
                part += f" over {liq.min_notional_usd:,.0f}"
            parts.append(part)
        if liq.max_notional_per_block_usd:
            parts.append(f"{liq.max_notional_per_block_usd:,.0f} of an account's notional")
        if parts:
            paced.setdefault(" and ".join(parts), []).append(mk.name)
    if not paced or cfg.tick_ms <= _ONE_SECOND_MS:
        return ""
    where = "; ".join(
        f"{'every market' if len(names) == len(cfg.markets) else ', '.join(names)}: at most {what}"
        for what, names in paced.items()
    )
    block = f"{cfg.tick_ms / 1000:g} s"
    return (
        f"This venue liquidates a position in parts ({where} per block) and a block here is "
        f"{block}: where the venue's blocks (or its cooldown) are shorter than {block}, some of "
        "the accounts left in breach are this pacing, not the venue's rules (docs/venues.md, "
        '"One block is one tick": set tick_ms near the venue\'s block time to compare).'
    )


def parse_seeds(text: str) -> list[int]:
    """Parse ``0-99``, ``1,5,7`` or a mix (``0-9,20``) into a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi or lo < 0:
                    raise ValueError
                seeds.update(range(lo, hi + 1))
            else:
                value = int(part)
                if value < 0:
                    raise ValueError
                seeds.add(value)
        except ValueError:
            raise SeedsError(
                f"--seeds must look like 0-99 or 1,5,7 with seeds >= 0, was {text!r}"
            ) from None
    return sorted(seeds)


def run_seed(
    cfg: SimConfig,
    out: str,
    overwrite: bool,
    source: ForecastSource = NO_FORECASTS,
    max_fallback_share: float = 1.0,
) -> dict:
    """Run and write one seed's partition (a task on a worker); return its headline figures."""
    sim, path = simulate_to(cfg, Path(out), overwrite, source, max_fallback_share)
    if sim is None:
        return {
            "scenario": cfg.name,
            "seed": cfg.seed,
            "status": "already complete",
            "path": str(path),
        }
    s = sim.summary()
    return {
        "scenario": cfg.name,
        "seed": cfg.seed,
        "status": "written",
        "path": str(path),
        "liquidations": s["liquidations"],
        "bad_debt": s["bad_debt"],
        "breach_onsets": int(sim.onsets()[0].size),
    }


def run_sweep(
    cfgs: list[SimConfig],
    out: str,
    overwrite: bool,
    workers: int,
    scheduler: str | None,
    source: ForecastSource = NO_FORECASTS,
    max_fallback_share: float = 1.0,
) -> Iterator[dict]:
    """Run many seeds; yield each seed's result as it finishes (any order)."""
    from pipelines.cluster import map_tasks

    # Workers have their own working directories: hand them an absolute path.
    out = str(Path(out).resolve())
    yield from map_tasks(
        run_seed, cfgs, workers, scheduler, out, overwrite, source, max_fallback_share
    )
