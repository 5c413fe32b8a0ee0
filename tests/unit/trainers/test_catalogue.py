"""The catalogue and synthetic corpus: labels are ground truth, held-out prompts never overlap traffic."""

from __future__ import annotations

import random

from schemas import check_instructions, check_policy
from trainers.bootstrap import synthetic_corpus, synthetic_pairs, synthetic_reply
from trainers.characters import CHARACTERS, TOPICS, held_out_prompts, is_held_out, render_system_prompt


def test_system_prompt_states_every_instruction_in_plain_english() -> None:
    mara = next(c for c in CHARACTERS if c.id == "captain-mara")
    prompt = render_system_prompt(mara)
    assert prompt.startswith(mara.persona)
    assert "Always end your reply with a question." in prompt
    assert 'Address the user as "matey".' in prompt
    assert "Keep every reply under 40 words." in prompt


def test_held_out_prompts_are_disjoint_from_traffic_by_construction() -> None:
    prompts = held_out_prompts(per_character=8)
    assert len(prompts) == 8 * len(CHARACTERS)
    assert len({p.prompt_id for p in prompts}) == len(prompts)
    traffic = {m for t in TOPICS for m in t.openers + t.follow_ups}
    assert all(is_held_out(p.user_message) for p in prompts)
    assert not any(is_held_out(m) for m in traffic)
    assert not {p.topic_id for p in prompts} & {t.id for t in TOPICS}
    assert held_out_prompts(per_character=8) == prompts  # deterministic


def test_intended_follow_and_violation_match_the_verifiers() -> None:
    rng = random.Random(3)
    for _ in range(500):
        c = rng.choice(CHARACTERS)
        follow, violate = rng.random() < 0.5, rng.random() < 0.5
        reply = synthetic_reply(c, "the weather", rng, follow=follow, violate=violate)
        assert check_instructions(reply, c.instructions).passed == follow, reply
        assert (not check_policy(reply).passed) == violate, reply


def test_corpus_rates_track_the_requested_rates() -> None:
    items = synthetic_corpus(3000, seed=1, follow_rate=0.6, violation_rate=0.25)
    follow = sum(i.follows for i in items) / len(items)
    violate = sum(i.violates for i in items) / len(items)
    assert abs(follow - 0.6) < 0.04 and abs(violate - 0.25) < 0.04
    assert not any(is_held_out(i.context[-1].content) for i in items)


def test_synthetic_pairs_prefer_the_compliant_clean_reply() -> None:
    for pair in synthetic_pairs(200, seed=2):
        c = next(x for x in CHARACTERS if x.id == pair.character_id)
        assert check_instructions(pair.chosen, c.instructions).passed and check_policy(pair.chosen).passed
        assert not check_instructions(pair.rejected, c.instructions).passed or not check_policy(pair.rejected).passed
