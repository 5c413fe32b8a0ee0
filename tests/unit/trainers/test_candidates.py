"""Rejection sampling's tie order: on equal scores the reply users continued after wins."""

from __future__ import annotations

from trainers.common.candidates import candidate_order


def test_given_replies_come_before_the_policys_samples_and_blanks_go() -> None:
    assert candidate_order(["sampled one", "  ", "sampled two"], ["the curated reply"]) == [
        "the curated reply",
        "sampled one",
        "sampled two",
    ]


def test_on_a_tie_the_stable_ranking_keeps_the_curated_reply() -> None:
    candidates = candidate_order(["sampled, equally compliant"], ["the curated reply"])
    scores = [1.0, 1.0]
    best = sorted(range(len(candidates)), key=lambda j: -scores[j])[0]  # rank_candidates' ordering
    assert candidates[best] == "the curated reply"


class _Engagement:
    """An engagement model with fixed logits per reply (the scorer's only use of it)."""

    def __init__(self, logits: dict[str, float]) -> None:
        self.logits = logits

    def score(self, prompts: object, replies: list[str]) -> list[float]:
        return [self.logits[r] for r in replies]


def test_rejection_sampling_keeps_the_engagement_models_pick_among_compliant_replies_only() -> None:
    import random

    from trainers.bootstrap.corpus import CorpusItem, make_item
    from trainers.characters import CHARACTERS, TOPICS
    from trainers.common.data import Prompt
    from trainers.reward.scoring import BlendedScorer

    rng = random.Random(3)
    c, topic = CHARACTERS[0], TOPICS[0]

    def item(good: bool) -> CorpusItem:
        while True:  # the verifiers label each synthetic reply; keep drawing until it is what we need
            x = make_item(c, topic, topic.openers[0], rng, follow=good, violate=not good)
            if x.follows == good and x.violates != good:
                return x

    liked, plain, broken = item(True), item(True), item(False)
    prompt = Prompt(liked.context, c.instructions, c.id)
    replies = [plain.reply, liked.reply, broken.reply]
    scorer = BlendedScorer(_Engagement({plain.reply: 0.2, liked.reply: 2.0, broken.reply: 9.0}))  # type: ignore[arg-type]
    scores = scorer.score([prompt] * 3, replies)
    best = max(range(3), key=lambda j: scores[j])
    assert replies[best] == liked.reply  # the engagement model decides among compliant replies
    assert scores[2] < 1.0 <= scores[0]  # a reply that fails the checks never reaches min_score
    disliked = BlendedScorer(_Engagement({plain.reply: -1.0, liked.reply: 0.0, broken.reply: 0.0}))  # type: ignore[arg-type]
    assert disliked.score([prompt], [plain.reply])[0] < 1.0  # predicted below even odds: dropped
