"""Settings of `flywheel demo` and `flywheel simulate` (``FLYWHEEL_DEMO__<FIELD>``).

The demo runs the production components in one process; each keeps its own config
model, and this one holds the demo's choices for them (small windows and thresholds so
that a generation fits in a couple of minutes on a laptop). Every field can be
overridden from the environment, e.g. ``FLYWHEEL_DEMO__CANARY__ALPHA=0.1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flywheel.sim.config import SimulatorConfig
from streams.processors import PolicyRecipe

AUTO_RECIPE: PolicyRecipe = "sft"
"""What ``recipe="auto"`` trains: the recipe that has measured best in this world so far
(docs/results.md): rejection-sampling SFT, the platform's default."""


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
    control_interval_s: float = Field(
        default=0.5, gt=0, description="How often the hot-swap and canary controllers run."
    )
    signals_window_s: int = Field(
        default=5, gt=0, description="Window of the per-arm aggregates the canary reads (event time = wall time)."
    )
    signals_grace_s: int = Field(
        default=1,
        ge=0,
        description="Grace for late events in those windows; curation "
        "uses it too (a session's end takes effect after it).",
    )
    canary_steps_bp: tuple[int, ...] = Field(
        default=(2000, 5000, 10_000), description="Candidate share per canary step (basis points)."
    )
    canary_burn_in_s: float = Field(
        default=20.0,
        ge=0,
        description="Windows this long after each canary step are left out "
        "of the comparison (a simulated session lasts up to about 20 s of wall time).",
    )
    canary_min_samples_per_step: int = Field(
        default=150, gt=0, description="Candidate responses before a canary step may advance."
    )
    canary_alpha: float = Field(
        default=0.1, gt=0, lt=0.5, description="Family-wise error rate of the canary's decisions."
    )
    canary_horizon_factor: float = Field(
        default=0.6,
        gt=0,
        description="A canary without a significant result ends "
        "(rolled back as inconclusive) once the candidate has this many times the "
        "fixed-horizon sample of the continue-rate MDE: about 760 replies, 2 minutes here.",
    )
    canary_mde_continue_rate: float = Field(
        default=0.06, gt=0, description="Minimum detectable continue-rate lift (sets the mSPRT mixture)."
    )
    gate_prompts_per_character: int = Field(
        default=12,
        gt=0,
        description="Held-out prompts per character in the offline "
        "gate of every candidate (and for the base model's numbers).",
    )
    buffer_min_samples: int = Field(
        default=340, gt=0, description="New SFT / preference samples that trigger a policy training job."
    )
    sft_candidates: int = Field(
        default=2,
        ge=0,
        description="Replies the SFT job samples per context for rejection sampling (the curated reply competes too).",
    )
    buffer_min_reward_samples: int = Field(
        default=1300,
        gt=0,
        description="New engagement-labelled replies that trigger a "
        "reward-model job (each retrains the engagement model from scratch, on these and a replay "
        "of as many earlier ones). 1300 comes just before the first policy trigger (about 1400 "
        "labels arrive with 340 SFT samples), and the worker takes reward jobs first, so the "
        "engagement model ranks, rewards and gates generation 1 already; it needs about 1000 "
        "training replies to pass its own held-out check (AUC 0.55 from 712, 0.67-0.69 from about "
        "1430 in one run).",
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
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="torch CPU threads of the process (engine and trainer share "
        "them); 1 avoids oversubscribing a small machine, 0 = torch's default.",
    )
    engine_max_batch_size: int = Field(default=32, gt=0, description="Requests the embedded engine generates together.")
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
    def planted_generation(self) -> int | None:
        return self.plant_bad_generation or self.plant_hack_generation

    @property
    def policy_recipe(self) -> PolicyRecipe:
        """The recipe the run trains with (``auto`` resolved)."""
        return AUTO_RECIPE if self.recipe == "auto" else self.recipe
