"""A label as detect-label gives it: what the pipeline selects and writes back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    name: str
    confidence: int  # 0-100
    first_category: str = ""
    second_category: str = ""
    scene: str = ""
