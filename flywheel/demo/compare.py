"""`flywheel demo --compare sft,auto`: the same world, seed and budget once per recipe,
one after the other, and one report with every learning curve.

Each recipe runs as its own `flywheel demo` process (a fresh process per run: nothing
of one run's models, threads or metrics leaks into the next), with the same demo
settings but the recipe and the report folder; the comparison reads their report.json.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from flywheel.demo.config import DemoConfig
from flywheel.demo.report import DemoReport


class RecipeRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipe: str
    report: str = Field(description="Its report.json.")
    promoted: int
    final_oracle_continue_rate: float | None
    final_vs_base_oracle_lift: float | None
    final_vs_base_ci_low: float | None
    final_vs_base_ci_high: float | None
    oracle_by_generation: tuple[float | None, ...] = Field(description="Base first, then each generation.")


class CompareReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipes: tuple[str, ...]
    runs: tuple[RecipeRun, ...]
    ceiling_oracle_continue_rate: float | None
    last_minus_first: float | None = Field(
        default=None,
        description="Final oracle continue rate of the last recipe minus the first's (both paired against the "
        "same base replies on the same contexts, so the base cancels).",
    )
    last_minus_first_ci_low: float | None = Field(
        default=None,
        description="95 % interval, conservative: the two runs' paired-lift half-widths added in quadrature "
        "(each also carries the base model's sampling noise, which the difference does not).",
    )
    last_minus_first_ci_high: float | None = None


def run_compare(recipes: tuple[str, ...], config: DemoConfig, kafka: bool = False) -> CompareReport:
    """Run ``flywheel demo`` once per recipe into ``<report_dir>/<recipe>/`` and compare."""
    root = config.report_dir
    runs: list[DemoReport] = []
    for recipe in recipes:
        run_config = config.model_copy(update={"recipe": recipe, "report_dir": root / recipe})
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_DEMO__")}
        env["FLYWHEEL_DEMO"] = run_config.model_dump_json()
        print(f"== recipe {recipe}: flywheel demo into {run_config.report_dir}", flush=True)
        cmd = [sys.executable, "-m", "flywheel", "demo", *(["--kafka"] if kafka else [])]
        subprocess.run(cmd, env=env, check=True)
        runs.append(DemoReport.model_validate_json((run_config.report_dir / "report.json").read_text()))
    report = compare(recipes, runs, root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "compare.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    plot_compare(report, root / "compare.png")
    return report


def compare(recipes: tuple[str, ...], reports: list[DemoReport], root: Path) -> CompareReport:
    runs = tuple(_run(recipe, r, root / recipe / "report.json") for recipe, r in zip(recipes, reports, strict=True))
    first, last = reports[0].oracle_final_vs_base, reports[-1].oracle_final_vs_base
    diff: dict[str, float | None] = {}
    if first is not None and last is not None and len(reports) > 1:
        half = math.hypot(first.ci_high - first.lift, last.ci_high - last.lift)
        d = last.lift - first.lift
        diff = {"last_minus_first": d, "last_minus_first_ci_low": d - half, "last_minus_first_ci_high": d + half}
    ceilings = [r.ceiling_oracle_continue_rate for r in reports if r.ceiling_oracle_continue_rate is not None]
    return CompareReport(
        recipes=recipes, runs=runs, ceiling_oracle_continue_rate=ceilings[0] if ceilings else None, **diff
    )


def _run(recipe: str, r: DemoReport, path: Path) -> RecipeRun:
    lift = r.oracle_final_vs_base
    return RecipeRun(
        recipe=recipe,
        report=str(path),
        promoted=sum(g.decision == "promoted" for g in r.generations),
        final_oracle_continue_rate=r.final.oracle_continue_rate,
        final_vs_base_oracle_lift=None if lift is None else lift.lift,
        final_vs_base_ci_low=None if lift is None else lift.ci_low,
        final_vs_base_ci_high=None if lift is None else lift.ci_high,
        oracle_by_generation=(r.base.oracle_continue_rate, *(g.oracle_continue_rate for g in r.generations)),
    )


def render_compare(report: CompareReport) -> str:
    lines = [f"{'recipe':<8} {'promoted':>8} {'final oracle':>12} {'vs base [95 % CI]':<28}"]
    for run in report.runs:
        ci = (
            f"{100 * (run.final_vs_base_oracle_lift or 0):+.1f} pp "
            f"[{100 * (run.final_vs_base_ci_low or 0):+.1f}, {100 * (run.final_vs_base_ci_high or 0):+.1f}]"
            if run.final_vs_base_oracle_lift is not None
            else "-"
        )
        final = "-" if run.final_oracle_continue_rate is None else f"{100 * run.final_oracle_continue_rate:.1f}%"
        lines.append(f"{run.recipe:<8} {run.promoted:>8} {final:>12} {ci:<28}")
    if report.last_minus_first is not None:
        lines.append(
            f"{report.recipes[-1]} - {report.recipes[0]}: {100 * report.last_minus_first:+.1f} pp "
            f"[{100 * (report.last_minus_first_ci_low or 0):+.1f}, {100 * (report.last_minus_first_ci_high or 0):+.1f}] "
            "final oracle continue rate"
        )
    return "\n".join(lines)


def plot_compare(report: CompareReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in report.runs:
        points = [(i, 100 * y) for i, y in enumerate(run.oracle_by_generation) if y is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=run.recipe)
    if report.ceiling_oracle_continue_rate is not None:
        ax.axhline(100 * report.ceiling_oracle_continue_rate, ls="--", color="gray", label="ceiling (best of 32)")
    ax.set_xlabel("generation (0 = base)")
    ax.set_ylabel("oracle continue rate (%)")
    ax.set_title("Learning curves by recipe")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
