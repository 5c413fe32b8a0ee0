"""`--plant-hack N`: generation N over-optimises a reward model that is easy to game.

The reward model rewards what a lazy engagement model would: an emoji and a stock
question at the end of a reply, whatever the user wrote. GRPO maximises it with a heavy
weight and no KL anchor, from the serving baseline, on ordinary traffic contexts. The
candidate then goes through the production gate — scored by the reward model it
optimised, as a real reward hack would be — and, if the gate lets it through, through
the canary. Neither may promote it. It trains on a thread of its own and announces its
checkpoint on ``models.checkpoints`` like the worker, under the job id the tracker
watches.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from schemas import EMOJI, CheckpointManifest

if TYPE_CHECKING:
    from flywheel.demo.runtime import DemoRuntime
    from trainers.common.data import Prompt

log = logging.getLogger(__name__)

_STOCK_QUESTION = re.compile(r"\?\s*\W*$")


class StyleReward:
    """The gameable reward model: +2 for an emoji, +2 for ending on a question, −1 otherwise
    (a logit, as an engagement model's), blind to the user, the topic and the instructions."""

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return [2.0 * bool(EMOJI.search(r)) + 2.0 * bool(_STOCK_QUESTION.search(r)) - 1.0 for r in replies]


class HackedGeneration:
    """Train, gate and announce the planted reward-hacking generation on a thread."""

    def __init__(self, runtime: DemoRuntime, baseline_version: str, job_id: str, n_prompts: int = 96) -> None:
        self.runtime = runtime
        self.baseline_version = baseline_version
        self.job_id = job_id
        self.n_prompts = n_prompts
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="plant-hack", daemon=True)

    def start(self) -> HackedGeneration:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._train()
        except BaseException as exc:  # surfaced by the orchestrator's loop
            log.exception("the planted reward hack failed")
            self.error = exc

    def _train(self) -> None:
        from flywheel.demo._trainers import checkpoint_dir
        from trainers.bootstrap import synthetic_pairs
        from trainers.characters import CHARACTERS_BY_ID
        from trainers.common.data import Prompt
        from trainers.evaluate import OfflineGate
        from trainers.grpo.grpo_trainer import GrpoTrainer
        from trainers.registry import CheckpointRegistry
        from trainers.registry.registry import lora_base_of, version_for_job

        rt = self.runtime
        settings = rt.worker_settings
        # Over-optimise: the gameable reward outweighs the checks, and nothing pulls back.
        grpo = settings.grpo.model_copy(update={"rm_weight": 3.0, "beta": 0.0, "max_steps": 40})
        pairs = synthetic_pairs(self.n_prompts, seed=rt.config.simulator.seed + 7)
        prompts = [Prompt(p.context, CHARACTERS_BY_ID[p.character_id].instructions, p.character_id) for p in pairs]
        registry = CheckpointRegistry(settings.registry)
        start = registry.open(rt.config.model, self.baseline_version)
        version = version_for_job(self.job_id)
        out_dir = settings.work_dir / f"{version}-hack"
        shutil.rmtree(out_dir, ignore_errors=True)
        reward = StyleReward()
        anchor = None
        if self.baseline_version != settings.base_version:
            anchor = (settings.base_version, checkpoint_dir(rt, settings.base_version))
        with rt.load_lock:
            result = GrpoTrainer(grpo).train(start.path, out_dir, prompts, reward_model=reward)
            report = OfflineGate(settings.gate).evaluate(out_dir, start.path, self.baseline_version, reward, anchor)
        manifest = CheckpointManifest(
            model=rt.config.model,
            version=version,
            parent=self.baseline_version,
            kind=result.kind,
            lora_base=lora_base_of(start.manifest, result.kind),
            job_id=self.job_id,
            job_kind="grpo",
            training={
                "steps": result.steps,
                "train_s": round(result.train_s, 3),
                "reward_model": "planted-style-reward",
                **{f"metric.{k}": v for k, v in result.metrics.items()},
            },
            eval=report,
            status="published" if report.passed else "rejected",
            created_ts=datetime.now(UTC),
        )
        published = registry.publish(out_dir, manifest)
        shutil.rmtree(out_dir, ignore_errors=True)
        producer = rt.bus.producer()
        producer.produce(rt.topics.models_checkpoints, published.manifest.to_json_bytes(), key=version)
        producer.flush()
