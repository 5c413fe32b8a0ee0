"""Settings of the sample-curation processor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CurationConfig(BaseModel):
    """What makes a training sample. ``FLYWHEEL_STREAMS__CURATION__<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    continue_window_s: int = Field(
        default=600,
        gt=0,
        description="Same meaning as in the signals processor: a "
        "reply is 'continued' when the next user message comes within this window.",
    )
    grace_s: int = Field(
        default=120, ge=0, description="Out-of-order slack (event time) before a reply is finalised by timer."
    )
    session_idle_s: int = Field(
        default=1800, gt=0, description="Conversation state is dropped after this long without events (event time)."
    )
    context_turns: int = Field(default=6, gt=0, description="User turns of context kept per sample.")
    min_words: int = Field(default=2, ge=0, description="Replies with fewer words fail the quality filter.")
    max_words: int = Field(default=300, gt=0, description="Replies with more words fail the quality filter.")
    min_ascii_letter_share: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Language filter: share of letters that are ASCII (the models are trained on English).",
    )
    min_distinct_word_share: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description="Degenerate-repetition filter: distinct words / words, for replies of 6+ words.",
    )
    near_dup_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (word 3-shingles) above which an SFT reply is a near duplicate.",
    )
    minhash_perm: int = Field(default=32, gt=0, description="MinHash permutations (bands x rows).")
    lsh_bands: int = Field(default=8, gt=0, description="LSH bands; rows per band = minhash_perm / lsh_bands.")
    dedup_capacity: int = Field(
        default=20_000, gt=0, description="Signatures and hashes kept per partition (oldest evicted first)."
    )
    max_length_ratio: float = Field(
        default=1.5,
        ge=1,
        description="Preference pairs whose longer reply has more "
        "than this many times the words of the shorter one are dropped.",
    )
    max_emoji_difference: int = Field(
        default=2, ge=0, description="Preference pairs whose emoji counts differ by more are dropped."
    )
    pair_across_arms: bool = Field(
        default=False,
        description="Also pair the two arms' replies to the same context "
        "(same character and redacted messages, e.g. a common opening) in different "
        "conversations of one partition, when one was continued and the other not.",
    )
    pair_pool: int = Field(
        default=5_000,
        gt=0,
        description="Unpaired replies kept per partition for pair_across_arms (oldest evicted first).",
    )

    def model_post_init(self, __context: object) -> None:
        if self.minhash_perm % self.lsh_bands:
            raise ValueError(f"minhash_perm ({self.minhash_perm}) must be divisible by lsh_bands ({self.lsh_bands})")
