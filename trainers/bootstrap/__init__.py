"""Catalogue of characters and topics, held-out evaluation prompts, the synthetic corpus,
and the settings of the locally built tiny base model. Building it (torch) is
``trainers.bootstrap.base_model.ensure_base_model``."""

from trainers.bootstrap.base_model_config import BaseModelSettings
from trainers.bootstrap.catalogue import (
    CHARACTERS,
    CHARACTERS_BY_ID,
    TOPICS,
    TOPICS_BY_ID,
    Character,
    EvalPrompt,
    Topic,
    character,
    chat_messages,
    held_out_prompts,
    instruction_sentence,
    is_held_out,
    render_system_prompt,
    traffic_follow_up,
    traffic_opener,
)
from trainers.bootstrap.corpus import (
    CorpusItem,
    SyntheticPair,
    make_item,
    synthetic_corpus,
    synthetic_pairs,
    synthetic_reply,
)

__all__ = [
    "CHARACTERS",
    "CHARACTERS_BY_ID",
    "TOPICS",
    "TOPICS_BY_ID",
    "BaseModelSettings",
    "Character",
    "CorpusItem",
    "EvalPrompt",
    "SyntheticPair",
    "Topic",
    "character",
    "chat_messages",
    "held_out_prompts",
    "instruction_sentence",
    "is_held_out",
    "make_item",
    "render_system_prompt",
    "synthetic_corpus",
    "synthetic_pairs",
    "synthetic_reply",
    "traffic_follow_up",
    "traffic_opener",
]
