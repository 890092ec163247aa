"""Choose which labels to keep: merge scenes, one entry per name, the most confident first."""

from __future__ import annotations

from collections.abc import Iterable

from .label import Label


def select_labels(labels: Iterable[Label], min_confidence: int, max_labels: int) -> list[Label]:
    best: dict[str, Label] = {}
    for label in labels:
        folded = label.name.casefold()
        kept = best.get(folded)
        if kept is None or label.confidence > kept.confidence:
            best[folded] = label
    confident = [label for label in best.values() if label.confidence >= min_confidence]
    confident.sort(key=lambda label: (-label.confidence, label.name.casefold()))
    return confident[:max_labels]
