"""Settings of `flywheel demo` and `flywheel simulate` (``FLYWHEEL_DEMO__<FIELD>``).

The demo runs the production components in one process. Its settings are an overlay on
FlywheelSettings: the components' own config models (canary, hot-swap, signals,
curation, buffer, gate, SFT, embedded engine) with the demo's choices as defaults (small
windows and thresholds so that a generation fits in a couple of minutes on a laptop),
put in place of the production ones for the run (flywheel/demo/_platform.py). Every
field can be overridden from the environment, e.g. ``FLYWHEEL_DEMO__CANARY__ALPHA=0.05``
or ``FLYWHEEL_DEMO__BUFFER__MIN_SAMPLES=500``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flywheel.sim.config import SimulatorConfig
from schemas import SAMPLES_PREFERENCE, SAMPLES_REWARD, SAMPLES_SFT
from serving.canary.canary_config import CanaryConfig
from serving.engines.embedded_config import EmbeddedEngineConfig
from serving.hotswap.hotswap_config import HotSwapConfig
from streams.processors.buffer_config import POLICY, BufferConfig, PolicyRecipe
from streams.processors.curation_config import CurationConfig
from streams.processors.signals_config import SignalsConfig
from trainers.evaluate.gate_config import GateConfig
from trainers.sft.sft_config import SftTrainerConfig

AUTO_RECIPE: PolicyRecipe = "sft"
"""What ``recipe="auto"`` trains: the recipe that has measured best in this world so far
(docs/results.md): rejection-sampling SFT, the platform's default."""


def _canary() -> CanaryConfig:
    return CanaryConfig(
        steps_bp=(2000, 5000, 10_000),
        alpha=0.1,
        min_samples_per_step=150,
        mde={"continue_rate": 0.06, "depth": 0.3, "breadth": 0.03},
        burn_in_s=20.0,
        horizon_factor=0.6,
        poll_interval_s=0.5,
    )


def _buffer() -> BufferConfig:
    return BufferConfig(
        min_samples=340,
        min_samples_per_topic={SAMPLES_REWARD: 1300},
        kinds={SAMPLES_REWARD: ("reward",), SAMPLES_SFT: (POLICY,), SAMPLES_PREFERENCE: (POLICY,)},
    )


def _simulator() -> SimulatorConfig:
    # Many users, each visiting on a minority of days, arriving all through the day: the
    # sticky canary split then holds in every window, as on real traffic (a few hundred
    # users, or everyone arriving at once, trips the sample-ratio-mismatch check). A
    # simulated minute lasts a real second: think times of 15-90 s take 0.25-1.5 s, and
    # a day's arrivals spread over a minute.
    return SimulatorConfig(
        users=4000,
        concurrency=48,
        time_scale=60.0,
        active_window_s=3600.0,
        max_turns=6,
        visit_probability=0.3,
        return_base=0.3,
    )


class DemoConfig(BaseModel):
    """The closed loop in one process: how many generations, how much traffic, where the report goes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generations: int = Field(
        default=3, gt=0, description="Candidate generations to decide (each: traffic → train → gate → canary)."
    )
    report_dir: Path = Field(default=Path("report"), description="Where report.json and report.png are written.")
    model: str = Field(default="policy", description="Public model name served and trained.")
    simulator: SimulatorConfig = Field(default_factory=_simulator, description="The simulated user population.")
    recipe: Literal["auto", "sft", "dpo", "grpo"] = Field(
        default="auto",
        description="Policy recipe of every generation (the buffer's recipe): sft, dpo (online DPO) "
        "or grpo; auto = the default recipe (AUTO_RECIPE, today sft).",
    )
    plant_bad_generation: int | None = Field(
        default=None,
        ge=1,
        description="Train this generation on deliberately "
        "corrupted preferences (chosen and rejected swapped): the gate or the canary must stop it.",
    )
    plant_hack_generation: int | None = Field(
        default=None,
        ge=1,
        description="Train this generation by over-optimising a reward model that rewards emoji and stock "
        "questions (GRPO, heavy reward weight, no KL): the style-drift guard or the canary must stop it. "
        "At most one of plant_bad_generation and plant_hack_generation per run.",
    )
    max_wall_s: float = Field(
        default=560.0,
        gt=0,
        description="The run's wall-time budget from start, base-model build included: the loop stops "
        "in time for the report's oracle step (30 s, or 120 s when the ceiling is not cached yet), "
        "so the default run stays within 10 minutes.",
    )
    canary: CanaryConfig = Field(
        default_factory=_canary,
        description="The canary controller's settings for this run (FLYWHEEL_DEMO__CANARY__<FIELD>, e.g. "
        "FLYWHEEL_DEMO__CANARY__ALPHA): steps 20 -> 50 -> 100 %, alpha 0.1, continue-rate MDE 6 pp, 150 "
        "candidate replies per step, a 20 s burn-in (a simulated session lasts up to about 20 s), a horizon "
        "of 0.6x the fixed-horizon sample (about 760 replies, 2 minutes here), evaluated every 0.5 s.",
    )
    hotswap: HotSwapConfig = Field(
        default_factory=lambda: HotSwapConfig(poll_interval_s=0.5),
        description="The hot-swap controller's settings (FLYWHEEL_DEMO__HOTSWAP__<FIELD>).",
    )
    signals: SignalsConfig = Field(
        default_factory=lambda: SignalsConfig(window_s=5, grace_s=1),
        description="The signals processor's settings: 5 s windows of the per-arm aggregates the canary reads "
        "(event time = wall time), 1 s grace for late events.",
    )
    curation: CurationConfig = Field(
        default_factory=lambda: CurationConfig(grace_s=1),
        description="The curation processor's settings: the signals' grace (a session's end takes effect after it).",
    )
    buffer: BufferConfig = Field(
        default_factory=_buffer,
        description="The buffer's settings: a policy job per 340 SFT or preference samples, an engagement "
        "reward-model job per 1300 labelled replies (each retrains it from scratch, on these and a replay of "
        "as many earlier ones). 1300 comes just before the first policy trigger (about 1400 labels arrive "
        "with 340 SFT samples), and the worker takes reward jobs first, so the engagement model ranks, "
        "rewards and gates generation 1 already; it needs about 1000 training replies to pass its own "
        "held-out check (AUC 0.55 from 712, 0.67-0.69 from about 1430 in one run). Preference pairs go to "
        "the policy job only (the demo's worker trains no Bradley-Terry model). Its model and recipe are "
        "the demo's `model` and `recipe`.",
    )
    gate: GateConfig = Field(
        default_factory=lambda: GateConfig(prompts_per_character=12),
        description="The offline gate of every candidate (and the base model's numbers): 12 held-out "
        "prompts per character, 2 samples each.",
    )
    sft: SftTrainerConfig = Field(
        default_factory=lambda: SftTrainerConfig(num_candidates=2),
        description="Rejection-sampling SFT: 2 sampled replies per context compete with the curated one.",
    )
    embedded: EmbeddedEngineConfig = Field(
        default_factory=lambda: EmbeddedEngineConfig(max_batch_size=32, max_new_tokens=128, threads=1),
        description="The embedded engine: 32 requests generated together, on 1 torch thread (the engine and "
        "the trainer share the process's threads; 1 avoids oversubscribing a small machine).",
    )
    pause_training_during_canary: bool = Field(
        default=True,
        description="The trainer takes no new job while a candidate "
        "is in canary (a job under way finishes): the canary's traffic gets the CPU, and "
        "each generation is decided before the next one is trained.",
    )
    pause_traffic_while_training: bool = Field(
        default=True,
        description="Hold the simulated users while the trainer works "
        "and no canary needs traffic (two cores cannot serve and train at full speed).",
    )
    engine: Literal["embedded", "vllm"] = Field(
        default="embedded",
        description="embedded: transformers in this process; vllm: the vLLM server at vllm_url, serving "
        "the base model as <model>@base (deploy/local/vllm.sh start); every policy generation is then "
        "a LoRA adapter over that base, loaded at run time.",
    )
    vllm_url: str = Field(default="http://127.0.0.1:18000", description="Base URL of the vLLM server (engine=vllm).")

    @model_validator(mode="after")
    def _one_plant(self) -> DemoConfig:
        if self.plant_bad_generation is not None and self.plant_hack_generation is not None:
            raise ValueError("plant_bad_generation and plant_hack_generation: choose one planted generation per run")
        return self

    @property
    def policy_recipe(self) -> PolicyRecipe:
        """The recipe the run trains with (``auto`` resolved)."""
        return AUTO_RECIPE if self.recipe == "auto" else self.recipe
