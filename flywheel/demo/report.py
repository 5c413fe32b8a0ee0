"""The demo's result: per-generation numbers, the table printed at the end, report.json
and report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.demo.prediction import PredictionCheck, PredictionPoint
from schemas import MetricResult

Decision = Literal["promoted", "rolled_back", "rejected", "undecided"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeldOutMetrics(_Model):
    """A model on the held-out prompts of the offline gate."""

    instruction_following: float
    violation_rate: float
    oracle_continue_rate: float | None = Field(
        default=None, description="Mean true continue probability of its replies on held-out contexts (simulator)."
    )


class OracleLift(_Model):
    """The final model's oracle continue rate minus the base's, paired by held-out context."""

    lift: float
    ci_low: float = Field(description="Lower end of the 95 % interval.")
    ci_high: float
    contexts: int
    samples_per_context: int


class OfflineMetrics(_Model):
    instruction_following: float
    violation_rate: float
    rm_win_rate: float | None = Field(description="Reward-model win rate of the candidate's replies vs the baseline's.")
    rm_predicted_lift: float | None = Field(
        default=None, description="Engagement model's predicted continue-rate lift over the baseline (gate)."
    )
    rm_predicted_lift_ci_low: float | None = Field(default=None, description="Its 95 % interval, paired by prompt.")
    rm_predicted_lift_ci_high: float | None = None
    passed: bool = True
    reasons: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


class OnlineMetrics(_Model):
    """Canary statistics of a candidate vs the concurrent baseline (absolute lifts,
    always-valid confidence interval of the continue-rate lift)."""

    continue_rate_lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    depth_lift: float | None = None
    breadth_lift: float | None = None
    continue_rate_baseline: float | None = None
    continue_rate_candidate: float | None = None
    n_baseline: int = 0
    n_candidate: int = 0
    max_share_bp: int = 0
    guardrails: tuple[MetricResult, ...] = Field(
        default=(),
        description="The guardrails at the last analysis: each arm's value, the harm's interval, the verdict.",
    )


class RewardModelResult(_Model):
    """A reward model trained in the loop, with its own held-out check."""

    model: str = Field(description="<model>-reward (engagement) or <model>-preference (Bradley–Terry).")
    version: str
    status: str
    auc: float | None = Field(description="Engagement models: ROC AUC on held-out labelled traffic.")
    calibration_error: float | None = None
    pairwise_accuracy: float | None = None
    n_train: int


class GenerationResult(_Model):
    generation: int
    version: str
    parent: str | None
    job_kind: str | None = Field(default=None, description="The policy recipe it was trained with (sft, dpo, grpo).")
    planted_bad: bool = Field(default=False, description="Trained on deliberately corrupted preferences.")
    planted_hack: bool = Field(
        default=False, description="Trained to over-optimise a gameable reward model (emoji, stock questions)."
    )
    training: dict[str, float] = Field(
        default_factory=dict,
        description="The job's own numbers (the manifest's metric.*): e.g. kept contexts (sft), "
        "given and own pairs (dpo), selected prompts, skipped_groups and zero_advantage_groups (grpo).",
    )
    offline: OfflineMetrics
    decision: Decision
    decision_reason: str = ""
    online: OnlineMetrics = Field(default_factory=OnlineMetrics)
    reward_model: str | None = Field(
        default=None, description="Version of the engagement model that ranked, rewarded and gated it (None: none yet)."
    )
    oracle_continue_rate: float | None = None
    headroom_captured: float | None = Field(
        default=None,
        description="(oracle - base oracle) / (ceiling - base oracle): its share of the reachable headroom.",
    )
    wall_s: float = 0.0
    canary_s: float | None = Field(
        default=None, description="Seconds from the canary's start to its decision (None: never on canary)."
    )


class VersionTraffic(_Model):
    """What simulated users experienced with one model version (client-side view)."""

    version: str
    replies: int
    continue_rate: float
    instruction_following: float
    violation_rate: float
    mean_depth: float
    mean_latency_ms: float = Field(default=0.0, description="Request to whole reply, as the client measured it.")
    mean_reply_words: float = 0.0


class DemoReport(_Model):
    recipe: str | None = Field(default=None, description="Policy recipe of the run (auto resolved).")
    engine: str = Field(default="embedded", description="The serving engine of the run (embedded or vllm).")
    base_version: str
    base: HeldOutMetrics
    final_version: str
    final: HeldOutMetrics
    generations: tuple[GenerationResult, ...]
    final_vs_base: OnlineMetrics = Field(
        default_factory=OnlineMetrics,
        description="Online continue rate of the final "
        "model vs the base model (simulated users' traffic), always-valid interval.",
    )
    ceiling_oracle_continue_rate: float | None = Field(
        default=None,
        description="Best of 32 base-model replies per held-out context, picked by the oracle: "
        "a reachable target; its gap to base.oracle_continue_rate is the headroom.",
    )
    oracle_final_vs_base: OracleLift | None = None
    prediction: PredictionCheck = Field(
        default_factory=PredictionCheck,
        description="The engagement model's predicted lift (offline) against the canary's measured "
        "lift (online) across generations: Spearman correlation and mean absolute error, with n.",
    )
    reward_models: tuple[RewardModelResult, ...] = ()
    traffic: tuple[VersionTraffic, ...] = ()
    stages: dict[str, int] = Field(default_factory=dict, description="Messages each stage emitted (topic → count).")
    wall_s: float
    settings: dict[str, object] = Field(default_factory=dict)

    @property
    def promoted(self) -> list[GenerationResult]:
        return [g for g in self.generations if g.decision == "promoted"]


def prediction_points(generations: tuple[GenerationResult, ...]) -> list[PredictionPoint]:
    """Generations with a predicted lift (the gate had an engagement model) and a measured
    one (the canary compared replies of both arms: promoted, rolled back, or still running
    when the run ended; a canary that opened without data yet reports a lift of 0 over
    0 replies, which is no measurement)."""
    return [
        PredictionPoint(
            generation=g.generation,
            version=g.version,
            decision=g.decision,
            predicted=g.offline.rm_predicted_lift,
            predicted_ci_low=g.offline.rm_predicted_lift_ci_low,
            predicted_ci_high=g.offline.rm_predicted_lift_ci_high,
            observed=g.online.continue_rate_lift,
            observed_ci_low=g.online.ci_low,
            observed_ci_high=g.online.ci_high,
        )
        for g in generations
        if g.offline.rm_predicted_lift is not None
        and g.online.continue_rate_lift is not None
        and g.online.n_baseline > 0
        and g.online.n_candidate > 0
    ]


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def _signed(x: float | None, scale: float = 100.0, unit: str = "pp") -> str:
    return "   -   " if x is None else f"{scale * x:+6.2f}{unit}"


def render_table(report: DemoReport) -> str:
    """The per-generation table printed at the end of the demo."""
    head = (
        f"{'gen':>3} {'version':<22} {'recipe':<6} {'IF':>6} {'viol.':>6} {'RM win':>6} {'RM pred.':>8} "
        f"{'decision':<11} {'continue lift [always-valid CI]':<34} {'depth':>8} {'breadth':>9} {'oracle':>6} "
        f"{'headroom':>8} {'reward model':<20}"
    )
    lines = [
        head,
        "-" * len(head),
        f"{0:>3} {report.base_version:<22} {'':<6} {_pct(report.base.instruction_following)} "
        f"{_pct(report.base.violation_rate)} {'':>6} {'':>8} {'base':<11}",
    ]
    for g in report.generations:
        o = g.online
        ci = "" if o.ci_low is None or o.ci_high is None else f" [{100 * o.ci_low:+.2f}, {100 * o.ci_high:+.2f}]"
        name = g.version + (" (planted)" if g.planted_bad else " (hack)" if g.planted_hack else "")
        lines.append(
            f"{g.generation:>3} {name:<22} {g.job_kind or '-':<6} {_pct(g.offline.instruction_following)} "
            f"{_pct(g.offline.violation_rate)} {_pct(g.offline.rm_win_rate)} {_signed(g.offline.rm_predicted_lift):>8} "
            f"{g.decision:<11} {(_signed(o.continue_rate_lift) + ci):<34} "
            f"{_signed(o.depth_lift, 1.0, ''):>8} {_signed(o.breadth_lift):>9} {_pct(g.oracle_continue_rate)} "
            f"{_pct(g.headroom_captured):>8} {g.reward_model or '-':<20}"
        )
    f, b = report.final, report.base
    lines.append("")
    lines.append(
        f"held-out: instruction following {_pct(b.instruction_following)} → {_pct(f.instruction_following)}, "
        f"violations {_pct(b.violation_rate)} → {_pct(f.violation_rate)} ({report.base_version} → {report.final_version})"
    )
    fb = report.final_vs_base
    if fb.continue_rate_lift is not None:
        lines.append(
            f"online continue rate, final vs base: {_pct(fb.continue_rate_baseline)} → {_pct(fb.continue_rate_candidate)} "
            f"(lift {_signed(fb.continue_rate_lift)}, always-valid CI [{100 * (fb.ci_low or 0):+.2f}, {100 * (fb.ci_high or 0):+.2f}] pp)"
        )
    ob = report.oracle_final_vs_base
    if ob is not None and report.ceiling_oracle_continue_rate is not None:
        headroom = report.ceiling_oracle_continue_rate - (b.oracle_continue_rate or 0.0)
        captured = ob.lift / headroom if headroom > 0 else float("nan")
        lines.append(
            f"oracle continue rate: base {_pct(b.oracle_continue_rate)} → final {_pct(f.oracle_continue_rate)} "
            f"(lift {_signed(ob.lift)}, 95% CI [{100 * ob.ci_low:+.2f}, {100 * ob.ci_high:+.2f}] pp over "
            f"{ob.contexts} contexts x {ob.samples_per_context}); ceiling {_pct(report.ceiling_oracle_continue_rate)}, "
            f"{captured:.0%} of the headroom captured"
        )
    pc = report.prediction
    if pc.n >= 2:
        rho = "undefined (no spread)" if pc.spearman is None else f"{pc.spearman:+.2f}"
        lines.append(
            f"offline predicted vs online measured continue lift over {pc.n} generations: Spearman {rho}, "
            f"mean absolute error {100 * (pc.mae or 0.0):.2f} pp"
        )
    else:
        lines.append(
            f"offline predicted vs online measured continue lift: {pc.n} generation(s) with both, too few to compare"
        )
    lines.append(f"recipe {report.recipe or '-'}, wall time {report.wall_s:.0f} s")
    return "\n".join(lines)


def write_report(report: DemoReport, directory: Path) -> tuple[Path, Path]:
    """Write report.json and report.png into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    doc = report.model_dump(mode="json")
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    from flywheel.demo.report_plot import plot_report

    png_path = directory / "report.png"
    plot_report(report, png_path)
    return json_path, png_path
