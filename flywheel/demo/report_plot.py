"""report.png: the learning curves of a demo run (continue rate per generation, oracle
against the ceiling, offline against online)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.demo.prediction import PredictionCheck
from flywheel.demo.report import DemoReport

_COLOURS = {"promoted": "tab:green", "rolled_back": "tab:red", "rejected": "tab:gray", "undecided": "tab:orange"}


def plot_report(report: DemoReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [0] + [g.generation for g in report.generations]
    fig, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = grid.flatten()
    ax = axes[0]
    ax.plot(
        gens,
        [report.base.instruction_following] + [g.offline.instruction_following for g in report.generations],
        "o-",
        label="instruction following",
    )
    ax.plot(
        gens,
        [report.base.violation_rate] + [g.offline.violation_rate for g in report.generations],
        "s-",
        label="violation rate",
    )
    for g in report.generations:
        ax.annotate(
            g.decision.replace("_", " "),
            (g.generation, g.offline.instruction_following),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
            color=_COLOURS[g.decision],
        )
    ax.axhline(0.85, color="tab:blue", ls=":", lw=0.8)
    ax.axhline(0.05, color="tab:orange", ls=":", lw=0.8)
    ax.set(title="Offline gate (held-out prompts)", xlabel="generation", ylim=(0, 1), xticks=gens)
    ax.legend(loc="center right", fontsize=8)

    ax = axes[1]
    xs = [g.generation for g in report.generations if g.online.continue_rate_lift is not None]
    for g in report.generations:
        o = g.online
        if o.continue_rate_lift is None:
            continue
        colour = _COLOURS[g.decision]
        if o.ci_low is not None and o.ci_high is not None:
            _span(ax, (g.generation, g.generation), (100 * o.ci_low, 100 * o.ci_high), colour)
        ax.plot([g.generation], [100 * o.continue_rate_lift], "o", color=colour)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(
        title="Canary: continue-rate lift vs baseline\n(always-valid CI; colour = decision)",
        xlabel="generation",
        ylabel="percentage points",
        xticks=gens if not xs else sorted(set(gens)),
    )

    ax = axes[2]
    oracle = [(0, report.base.oracle_continue_rate)] + [
        (g.generation, g.oracle_continue_rate) for g in report.generations
    ]
    points = [(x, y) for x, y in oracle if y is not None]
    if points:
        ax.plot([x for x, _ in points], [100 * y for _, y in points], "o-", label="model (held-out contexts)")
        for g in report.generations:
            if g.oracle_continue_rate is not None:
                ax.plot([g.generation], [100 * g.oracle_continue_rate], "o", color=_COLOURS[g.decision])
    if report.ceiling_oracle_continue_rate is not None:
        ax.axhline(
            100 * report.ceiling_oracle_continue_rate,
            color="tab:green",
            ls="--",
            lw=1,
            label="ceiling: best of 32 base samples",
        )
    ax.set(title="Oracle continue rate (simulator's ground truth)", xlabel="generation", ylabel="%", xticks=gens)
    ax.legend(fontsize=8)
    _plot_prediction(axes[3], report.prediction)
    fig.suptitle(
        f"Flywheel demo ({report.recipe or 'recipe ?'}): {report.base_version} → {report.final_version} "
        f"in {report.wall_s:.0f} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_prediction(ax: Any, check: PredictionCheck) -> None:
    """Predicted (offline) against observed (canary) continue-rate lift, one point per
    generation with both intervals, and the identity line a perfect prediction lies on."""
    points = check.points
    for p in points:
        colour = _COLOURS.get(p.decision, "tab:blue")
        x, y = 100 * p.predicted, 100 * p.observed
        if p.predicted_ci_low is not None and p.predicted_ci_high is not None:
            _span(ax, (100 * p.predicted_ci_low, 100 * p.predicted_ci_high), (y, y), colour)
        if p.observed_ci_low is not None and p.observed_ci_high is not None:
            _span(ax, (x, x), (100 * p.observed_ci_low, 100 * p.observed_ci_high), colour)
        ax.plot([x], [y], "o", color=colour)
        ax.annotate(str(p.generation), (100 * p.predicted, 100 * p.observed), textcoords="offset points", xytext=(5, 5))
    values = [
        100 * v
        for p in points
        for v in (
            p.predicted,
            p.observed,
            p.predicted_ci_low,
            p.predicted_ci_high,
            p.observed_ci_low,
            p.observed_ci_high,
        )
        if v is not None
    ] or [0.0]
    low, high = min(min(values), 0.0) - 1, max(max(values), 0.0) + 1
    ax.plot([low, high], [low, high], color="black", ls="--", lw=0.8, label="identity (perfect prediction)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    if check.n >= 2:
        rho = "n/a" if check.spearman is None else f"{check.spearman:+.2f}"
        summary = f"Spearman {rho}, MAE {100 * (check.mae or 0.0):.2f} pp, n = {check.n}"
    else:
        summary = f"n = {check.n}: too few generations with both"
    ax.set(
        title=f"Offline predicted vs online measured continue-rate lift\n({summary})",
        xlabel="engagement model's predicted lift (pp, 95% CI)",
        ylabel="canary's measured lift (pp, always-valid CI)",
        xlim=(low, high),
        ylim=(low, high),
    )
    ax.legend(loc="upper left", fontsize=8)


def _span(ax: Any, xs: tuple[float, float], ys: tuple[float, float], colour: str) -> None:
    """An interval drawn from end to end, capped. Not an error bar around the point: the
    canary reports the running intersection of its intervals, which need not contain the
    latest estimate."""
    cap = "_" if xs[0] == xs[1] else "|"
    ax.plot(xs, ys, color=colour, lw=1, marker=cap, markersize=8)
