"""GRPO with verifiable-instruction and reward-model rewards (trl GRPOTrainer)."""

from trainers.grpo.grpo_config import GrpoSettings
from trainers.grpo.grpo_trainer import GrpoTrainer, instruction_reward, select_prompts

__all__ = ["GrpoSettings", "GrpoTrainer", "instruction_reward", "select_prompts"]
