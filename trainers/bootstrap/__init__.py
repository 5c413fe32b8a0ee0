"""The synthetic corpus and the settings of the locally built tiny base model. Building it
(torch) is ``trainers.bootstrap.base_model.ensure_base_model``; the characters, topics and
held-out prompts it is built from are domain data, in ``trainers.characters``."""

from trainers.bootstrap.base_model_config import BaseModelConfig
from trainers.bootstrap.corpus import (
    CorpusItem,
    SyntheticPair,
    make_item,
    synthetic_corpus,
    synthetic_pairs,
    synthetic_reply,
)

__all__ = [
    "BaseModelConfig",
    "CorpusItem",
    "SyntheticPair",
    "make_item",
    "synthetic_corpus",
    "synthetic_pairs",
    "synthetic_reply",
]
