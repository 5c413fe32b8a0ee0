"""Moved to ``trainers.characters`` (domain data, not bootstrap). This alias remains only
while ``flywheel.demo`` still imports the old path; remove it once nothing does."""

from trainers.characters import CHARACTERS_BY_ID

__all__ = ["CHARACTERS_BY_ID"]
