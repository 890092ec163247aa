"""The label engines the local emulator answers detect-label with, and how to pick one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from cos_autotag_tools.labels.classes import DEFAULT_LANGUAGE, check_language, imagenet_classes
from cos_autotag_tools.labels.efficientnet import EfficientNetLite0, shared_model, softmax
from cos_autotag_tools.labels.image import preprocess
from cos_autotag_tools.labels.scenes import SceneLabels, labels_for_scenes


class LabelEngine(Protocol):
    def detect(self, data: bytes, scenes: Sequence[str]) -> SceneLabels:
        """Labels per requested scene: [{"Name", "Confidence" 0-100, "FirstCategory", "SecondCategory"}].

        Raises `ImageDecodeError` when `data` is not a decodable PNG or JPEG, and `ValueError`
        for an unknown scene. No scenes means CI's default scene.
        """
        ...


class EfficientNetEngine:
    """Real labels from EfficientNet-Lite0 run in numpy; the weights load on first use.

    Labels are named in Chinese by default, as Cloud Infinite names them; `language="en"` gives
    the English ImageNet names.
    """

    def __init__(self, checkpoint: str | Path | None = None, language: str = DEFAULT_LANGUAGE) -> None:
        self._checkpoint = checkpoint
        self.language = check_language(language)

    @property
    def model(self) -> EfficientNetLite0:
        # Shared by every engine in the process: the weights are loaded once.
        return shared_model(self._checkpoint)

    def probabilities(self, data: bytes) -> np.ndarray:
        """Softmax over the 1000 ImageNet classes for the image in `data`."""
        return softmax(self.model.logits(preprocess(data)))

    def detect(self, data: bytes, scenes: Sequence[str]) -> SceneLabels:
        return labels_for_scenes(self.probabilities(data), imagenet_classes(self.language), scenes)


ENGINE_NAMES = ("efficientnet", "deterministic")


def make_engine(name: str, language: str = DEFAULT_LANGUAGE) -> LabelEngine:
    """`"efficientnet"` (real model) or `"deterministic"` (hash-derived, for tests), naming
    labels in `language` ("zh" or "en")."""
    key = name.strip().lower()
    if key == "efficientnet":
        return EfficientNetEngine(language=language)
    if key == "deterministic":
        from cos_autotag_tools.labels.deterministic import DeterministicEngine

        return DeterministicEngine(language=language)
    raise ValueError(f"unknown label engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}")
