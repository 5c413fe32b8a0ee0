"""The closed loop end to end: `flywheel demo` with small settings, on the embedded bus.

One run, several assertions on what it produced: every stage emitted its outputs, at
least two generations were decided, the planted bad generation (trained on corrupted
preferences) never got promoted, and the promoted model beats the base model offline
(held-out instruction following and violations) and online (continue rate, with the
always-valid interval above zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel.demo.orchestrator import run_demo
from flywheel.demo.progress import Progress
from flywheel.settings import FlywheelSettings

# Margins the promoted model must clear on the held-out prompts.
IF_MARGIN = 0.10
VIOLATION_MARGIN = 0.05


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    report_dir = tmp_path_factory.mktemp("demo-report")
    settings = FlywheelSettings(bus="embedded")
    config = settings.demo.model_copy(
        update={
            "generations": 2,
            "plant_bad_generation": 1,
            "report_dir": report_dir,
            "max_wall_s": 600.0,
            # Small: the planted generation first (queued before any honest job), then one honest
            # SFT generation; no reward-model job.
            "buffer_min_samples": 150,
            "buffer_min_reward_samples": 1_000_000,
            "gate_prompts_per_character": 8,
            "canary_min_samples_per_step": 100,
            # One canary step at an even split: the comparison is most precise per second there.
            "canary_steps_bp": (5000, 10_000),
            "canary_horizon_factor": 1.0,
        }
    )
    run_demo(settings, config, progress=Progress(enabled=False))
    return json.loads((Path(report_dir) / "report.json").read_text()) | {"_dir": str(report_dir)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_stage_emitted_and_two_generations_were_decided(demo_report: dict) -> None:
    stages = demo_report["stages"]
    for topic in (
        "chat.events",
        "engagement.signals",
        "samples.reward",
        "samples.sft",
        "trainer.jobs",
        "models.checkpoints",
        "serving.deployments",
    ):
        assert stages[topic] > 0, f"{topic} is empty"
    decided = [g for g in demo_report["generations"] if g["decision"] != "undecided"]
    assert len(decided) >= 2
    assert (Path(demo_report["_dir"]) / "report.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_planted_bad_generation_is_never_promoted(demo_report: dict) -> None:
    planted = [g for g in demo_report["generations"] if g["planted_bad"]]
    assert planted, "the corrupted-preference generation was not produced"
    assert all(g["decision"] in ("rejected", "rolled_back") for g in planted)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_promoted_model_beats_the_base_offline_and_online(demo_report: dict) -> None:
    promoted = [g for g in demo_report["generations"] if g["decision"] == "promoted"]
    assert promoted and not any(g["planted_bad"] for g in promoted)
    base, final = demo_report["base"], demo_report["final"]
    assert final["instruction_following"] >= base["instruction_following"] + IF_MARGIN
    assert final["violation_rate"] <= base["violation_rate"] - VIOLATION_MARGIN
    # Online: the canary's randomized, concurrent comparison of the promoted model with the
    # base model (its baseline, the first promotion of the run) is significant.
    # The decision uses the always-valid p-value (its running minimum over looks); the interval
    # in the report is the current look's, which can reach below zero after an earlier look
    # already showed the gain.
    first = promoted[0]["online"]
    assert first["continue_rate_lift"] > 0 and first["p_value"] < 0.05
    # All replies of the final model vs all of the base model's (not concurrent: only the
    # direction is asserted; the run ends soon after the promotion).
    assert demo_report["final_vs_base"]["continue_rate_lift"] > 0
