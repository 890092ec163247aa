"""How each detect-label scene turns class probabilities into CI-style labels.

Real CI tunes each scene differently (web, camera, album, news); the emulator mimics that with
a fixed, deterministic policy per scene so that tests can tell the scenes apart: how many
labels, how confident they must be, and whether the category is added as a label of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cos_autotag.cos_facts import DETECT_DEFAULT_SCENES, DETECT_SCENES
from cos_autotag_tools.labels.classes import ImageNetClass

# What one label looks like: {"Name", "Confidence" (int 0-100), "FirstCategory", "SecondCategory"}.
Label = dict[str, str | int]
SceneLabels = dict[str, list[Label]]

# Below this no scene reports a label: uniform random noise peaks at up to ~14 % with these weights.
NOISE_FLOOR = 20


@dataclass(frozen=True)
class ScenePolicy:
    top_k: int  # classes considered, best first
    min_confidence: int  # percent; labels below are dropped
    # Also report this category of the kept labels as a label, its confidence their sum.
    category_label: Literal["FirstCategory", "SecondCategory"] | None


SCENE_POLICIES: dict[str, ScenePolicy] = {
    "web": ScenePolicy(top_k=5, min_confidence=NOISE_FLOOR, category_label="SecondCategory"),
    "camera": ScenePolicy(top_k=5, min_confidence=NOISE_FLOOR, category_label=None),
    "album": ScenePolicy(top_k=3, min_confidence=30, category_label=None),
    "news": ScenePolicy(top_k=10, min_confidence=NOISE_FLOOR, category_label="FirstCategory"),
}
if set(SCENE_POLICIES) != set(DETECT_SCENES):
    raise RuntimeError("SCENE_POLICIES must cover exactly cos_facts.DETECT_SCENES")


def normalise_scenes(scenes: Sequence[str] | str) -> tuple[str, ...]:
    """Validated scene names, deduplicated in order; none requested means CI's default."""
    if isinstance(scenes, str):
        # The `scenes` query parameter is comma separated; accept it as is.
        scenes = scenes.split(",")
    wanted: list[str] = []
    for raw in scenes:
        scene = raw.strip().lower()
        if not scene:
            continue
        if scene not in SCENE_POLICIES:
            raise ValueError(f"unknown detect-label scene {raw!r}; expected one of {', '.join(DETECT_SCENES)}")
        if scene not in wanted:
            wanted.append(scene)
    return tuple(wanted) if wanted else tuple(DETECT_DEFAULT_SCENES)


def _percent(probability: float) -> int:
    return max(0, min(100, round(probability * 100)))


def _sorted(labels: list[Label]) -> list[Label]:
    # Stable: at equal confidence, classes keep probability order and come before categories.
    return sorted(labels, key=lambda label: -int(label["Confidence"]))


def labels_for_scene(probabilities: np.ndarray, classes: Sequence[ImageNetClass], scene: str) -> list[Label]:
    """The labels one scene reports for a probability vector over `classes`, best first."""
    policy = SCENE_POLICIES[scene]
    order = np.argsort(-probabilities, kind="stable")[: policy.top_k]
    kept = [(classes[int(i)], float(probabilities[int(i)])) for i in order]
    kept = [(cls, p) for cls, p in kept if _percent(p) >= policy.min_confidence]
    labels: list[Label] = [
        {
            "Name": cls.name,
            "Confidence": _percent(p),
            "FirstCategory": cls.first_category,
            "SecondCategory": cls.second_category,
        }
        for cls, p in kept
    ]
    if policy.category_label is not None:
        totals: dict[tuple[str, str], float] = {}
        for cls, p in kept:
            # A first-level category label is its own second level too ("Animal"/"Animal").
            if policy.category_label == "FirstCategory":
                key = (cls.first_category, cls.first_category)
            else:
                key = (cls.first_category, cls.second_category)
            totals[key] = totals.get(key, 0.0) + p
        names = {str(label["Name"]).lower() for label in labels}
        for (first, second), total in totals.items():
            if second.lower() not in names:
                labels.append(
                    {"Name": second, "Confidence": _percent(total), "FirstCategory": first, "SecondCategory": second}
                )
    return _sorted(labels)


def labels_for_scenes(
    probabilities: np.ndarray, classes: Sequence[ImageNetClass], scenes: Sequence[str] | str
) -> SceneLabels:
    """`labels_for_scene` for every requested scene (validated by `normalise_scenes`)."""
    return {scene: labels_for_scene(probabilities, classes, scene) for scene in normalise_scenes(scenes)}
