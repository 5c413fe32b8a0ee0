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
