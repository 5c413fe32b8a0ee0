"""The closed loop end to end: `flywheel demo` with small settings, on the embedded bus.

One run, two kinds of check:
- plumbing, deterministic: every stage emitted, every generation decided with its reason,
  the planted bad generation (trained on corrupted preferences) never promoted;
- quality, on evidence: base and promoted model replying to every held-out prompt several
  times, compared paired by prompt; the lower end of the 95 % interval of the improvement
  must be above zero.

The run is built so that promotion is not left to chance: the honest generation is
rejection-sampling SFT from the base model (+20 pp instruction following offline, a
continue-rate lift of about +10 pp online, where the canary is tuned to detect 6 pp), at an
even split and with a horizon far past the sample that lift needs.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

import pytest

from flywheel.demo.orchestrator import run_demo
from flywheel.demo.progress import Progress
from flywheel.settings import FlywheelSettings
from schemas import SAMPLES_REWARD

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# Every held-out prompt (45 per character), each answered this many times per model.
HELD_OUT_PER_CHARACTER = 45
SAMPLES_PER_PROMPT = 3
Z_95 = 1.959964


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    report_dir = tmp_path_factory.mktemp("demo-report")
    settings = FlywheelSettings(bus="embedded")
    config = settings.demo.model_copy(
        update={
            "generations": 2,
            "plant_bad_generation": 1,
            "report_dir": report_dir,
            "max_wall_s": 900.0,
            # Small: the planted generation first (queued before any honest job), then one honest
            # SFT generation; no reward-model job.
            "buffer": settings.demo.buffer.model_copy(
                update={"min_samples": 150, "min_samples_per_topic": {SAMPLES_REWARD: 1_000_000}}
            ),
            # One sample per held-out prompt: this test's own paired check below measures quality.
            "gate": settings.demo.gate.model_copy(update={"prompts_per_character": 8, "samples_per_prompt": 1}),
            # One canary step at an even split: the comparison is most precise per second there.
            # A horizon of 3x the fixed-horizon sample of the 6 pp MDE: a +10 pp candidate is
            # decided long before it (the canary's mSPRT has power 1 as the sample grows).
            "canary": settings.demo.canary.model_copy(
                update={"min_samples_per_step": 100, "steps_bp": (5000, 10_000), "horizon_factor": 3.0}
            ),
        }
    )
    run_demo(settings, config, progress=Progress(enabled=False))
    return json.loads((Path(report_dir) / "report.json").read_text()) | {"_dir": str(report_dir)}


def test_every_stage_emitted_and_every_generation_was_decided_with_a_reason(demo_report: dict) -> None:
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
    generations = demo_report["generations"]
    assert [g["decision"] for g in generations].count("undecided") == 0, generations
    assert len(generations) == 2, generations
    for g in generations:
        assert g["decision_reason"], f"generation {g['generation']} was {g['decision']} without a reason"
        assert g["offline"]["reasons"] or g["offline"]["passed"], g
    assert (Path(demo_report["_dir"]) / "report.png").stat().st_size > 10_000


def test_planted_bad_generation_is_rejected_and_the_honest_one_promoted(demo_report: dict) -> None:
    planted = [g for g in demo_report["generations"] if g["planted_bad"]]
    honest = [g for g in demo_report["generations"] if not g["planted_bad"]]
    assert len(planted) == 1 and planted[0]["generation"] == 1, demo_report["generations"]
    assert planted[0]["decision"] in ("rejected", "rolled_back")
    assert [g["decision"] for g in honest] == ["promoted"], honest
    assert demo_report["final_version"] == honest[0]["version"]
    # The canary decided on its always-valid test: the p-value it decided on is below its α.
    online = honest[0]["online"]
    assert online["continue_rate_lift"] > 0 and online["p_value"] < 0.1, online


def _paired_interval(per_prompt_diffs: list[float]) -> tuple[float, float, float]:
    """Mean of the paired differences and its 95 % interval (normal approximation; n is in
    the hundreds)."""
    mean = statistics.fmean(per_prompt_diffs)
    half = Z_95 * statistics.stdev(per_prompt_diffs) / math.sqrt(len(per_prompt_diffs))
    return mean, mean - half, mean + half


def test_promoted_model_beats_the_base_on_every_held_out_prompt_paired(demo_report: dict) -> None:
    import torch

    from schemas import check_policy, follows_instructions
    from trainers.bootstrap.base_model import ensure_base_model
    from trainers.common.loading import load_policy
    from trainers.evaluate import GateConfig, OfflineGate

    torch.set_num_threads(os.cpu_count() or 1)  # the demo left the process on its one serving thread
    gate = OfflineGate(GateConfig(prompts_per_character=HELD_OUT_PER_CHARACTER, samples_per_prompt=SAMPLES_PER_PROMPT))
    judged: dict[str, list[tuple[float, float]]] = {}
    for name, path in (("base", ensure_base_model()), ("final", Path(demo_report["_dir"]) / "final-model")):
        model, tokenizer = load_policy(path)
        prompts, replies = gate.replies(model, tokenizer)
        per_prompt: dict[int, list[tuple[bool, bool]]] = {}
        for i, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
            per_prompt.setdefault(i // SAMPLES_PER_PROMPT, []).append(
                (follows_instructions(reply, prompt.instructions), not check_policy(reply).passed)
            )
        judged[name] = [
            (statistics.fmean(f for f, _ in rs), statistics.fmean(v for _, v in rs))
            for _, rs in sorted(per_prompt.items())
        ]
    n = len(judged["base"])
    assert n == len(gate.prompts) == len(judged["final"])
    if_gain = _paired_interval([f[0] - b[0] for f, b in zip(judged["final"], judged["base"], strict=True)])
    violation_drop = _paired_interval([b[1] - f[1] for f, b in zip(judged["final"], judged["base"], strict=True)])
    print(
        f"\nheld-out, {n} prompts x {SAMPLES_PER_PROMPT} samples per model, paired by prompt:\n"
        f"  instruction following gain {if_gain[0]:+.3f}, 95% CI [{if_gain[1]:+.3f}, {if_gain[2]:+.3f}]\n"
        f"  violation rate drop        {violation_drop[0]:+.3f}, 95% CI [{violation_drop[1]:+.3f}, {violation_drop[2]:+.3f}]"
    )
    assert if_gain[1] > 0, f"instruction following gain {if_gain} (n={n} prompts): the interval reaches zero"
    assert violation_drop[1] > 0, f"violation drop {violation_drop} (n={n} prompts): the interval reaches zero"
