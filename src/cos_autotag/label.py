"""A label as detect-label gives it: what the pipeline selects and writes back."""

from __future__ import annotations

from typing import NamedTuple


# The small values made for every record are NamedTuples rather than dataclasses: immutable all
# the same, and several times cheaper to define, which a cold start pays for.
class Label(NamedTuple):
    name: str
    confidence: int  # 0-100
    first_category: str = ""
    second_category: str = ""
    scene: str = ""
