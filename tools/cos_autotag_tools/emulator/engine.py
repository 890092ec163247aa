"""The label engine detect-label answers from, and a tiny built-in one.

Any object with `detect(data: bytes, scenes: Sequence[str]) -> dict[str, list[dict]]` works:
scene name -> labels, each {"Name": str, "Confidence": int 0-100, "FirstCategory": str,
"SecondCategory": str}. The real engines live in `cos_autotag_tools.labels`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

Label = dict[str, str | int]


@runtime_checkable
class LabelEngine(Protocol):
    def detect(self, data: bytes, scenes: Sequence[str]) -> Mapping[str, Sequence[Mapping[str, object]]]: ...


class DigestLabelEngine:
    """Labels derived from the content's SHA-1: same bytes, same labels; different bytes, different.

    For tests that need predictable labels without a model: the first label of every scene is
    `label-<sha1[:6]>`, and the rest follow from later digest bytes.
    """

    def __init__(self, labels_per_scene: int = 3) -> None:
        self.labels_per_scene = labels_per_scene

    @staticmethod
    def expected_first_name(data: bytes) -> str:
        return "label-" + hashlib.sha1(data).hexdigest()[:6]

    def detect(self, data: bytes, scenes: Sequence[str]) -> dict[str, list[Label]]:
        digest = hashlib.sha1(data).hexdigest()
        out: dict[str, list[Label]] = {}
        for scene in scenes:
            labels: list[Label] = []
            for i in range(self.labels_per_scene):
                chunk = digest[6 * i : 6 * i + 6]
                labels.append(
                    {
                        "Name": f"label-{chunk}",
                        # Strictly decreasing, as CI lists labels best first.
                        "Confidence": max(1, 95 - 10 * i - int(digest[-2:], 16) % 5),
                        "FirstCategory": "digest",
                        "SecondCategory": scene,
                    }
                )
            out[scene] = labels
        return out


def default_engine() -> LabelEngine:
    """The project's deterministic engine when it is installed, else the digest engine."""
    try:
        labels = importlib.import_module("cos_autotag_tools.labels")
        engine_cls = labels.DeterministicEngine
    except (ImportError, AttributeError):
        return DigestLabelEngine()
    engine: LabelEngine = engine_cls()
    return engine


def load_engine(spec: str) -> LabelEngine:
    """An engine from a command-line spec: "auto", "digest", a name the label package knows
    ("deterministic", "efficientnet"), or "package.module:ClassName"."""
    if spec == "auto":
        return default_engine()
    if spec == "digest":
        return DigestLabelEngine()
    if ":" not in spec:
        labels = importlib.import_module("cos_autotag_tools.labels")
        engine_by_name: LabelEngine = labels.make_engine(spec)
        return engine_by_name
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"engine {spec!r} is not auto, digest or package.module:ClassName")
    engine: LabelEngine = getattr(importlib.import_module(module_name), class_name)()
    if not callable(getattr(engine, "detect", None)):
        raise ValueError(f"{spec} has no detect(data, scenes) method")
    return engine
