"""A label engine for tests: canned answers by content hash, hash-derived labels otherwise.

Unknown content gets labels named after its sha256 (`标签-<first 6 hex>` in Chinese, the default
as with real Cloud Infinite, or `label-<first 6 hex>` in English), so a test can tell from the
tags alone which upload was labeled, with no model and no randomness.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping, Sequence

from cos_autotag_tools.labels.classes import DEFAULT_LANGUAGE, category_name, check_language
from cos_autotag_tools.labels.errors import ImageDecodeError
from cos_autotag_tools.labels.scenes import Label, SceneLabels, normalise_scenes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
FALLBACK_CATEGORY = ("Object", "Deterministic")
# The prefix of the hash-derived label names, per language.
FALLBACK_PREFIX = {"zh": "标签-", "en": "label-"}
_LABEL_KEYS = frozenset({"Name", "Confidence", "FirstCategory", "SecondCategory"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fallback_name(data: bytes, language: str = DEFAULT_LANGUAGE) -> str:
    """The name of the top label the engine derives for `data` it has no canned answer for."""
    return FALLBACK_PREFIX[check_language(language)] + content_hash(data)[:6]


def fallback_labels(digest: str, language: str = DEFAULT_LANGUAGE) -> list[Label]:
    """Two labels derived from a sha256 hex digest; different contents give different names."""
    top = 60 + int(digest[12:14], 16) % 40  # 60..99
    second = 20 + int(digest[14:16], 16) % 40  # 20..59, always below `top`
    language = check_language(language)
    prefix = FALLBACK_PREFIX[language]
    first_cat, second_cat = (category_name(name, language) for name in FALLBACK_CATEGORY)
    return [
        {"Name": f"{prefix}{digest[:6]}", "Confidence": top, "FirstCategory": first_cat, "SecondCategory": second_cat},
        {
            "Name": f"{prefix}{digest[6:12]}",
            "Confidence": second,
            "FirstCategory": first_cat,
            "SecondCategory": second_cat,
        },
    ]


def _validated_label(raw: Mapping[str, object], where: str) -> Label:
    keys = set(raw)
    if keys != _LABEL_KEYS:
        raise ValueError(f"{where}: a label needs exactly {sorted(_LABEL_KEYS)}, got {sorted(keys)}")
    confidence = raw["Confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int) or not 0 <= confidence <= 100:
        raise ValueError(f"{where}: Confidence must be an int 0-100, got {confidence!r}")
    label: Label = {"Confidence": confidence}
    for key in ("Name", "FirstCategory", "SecondCategory"):
        value = raw[key]
        if not isinstance(value, str) or (key == "Name" and not value.strip()):
            raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
        label[key] = value
    return label


class DeterministicEngine:
    """Same `detect` as the real engine; answers from a table, else from the content hash."""

    def __init__(self, *, require_image_signature: bool = True, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = check_language(language)
        # Like CI, refuse bytes that are not even PNG/JPEG-shaped unless a test opts out.
        self.require_image_signature = require_image_signature
        self._table: dict[str, dict[str, list[Label]]] = {}
        self._lock = threading.Lock()
        self.seen: list[str] = []  # sha256 of every content detected, in call order

    def register(self, data_or_hash: bytes | str, labels_by_scene: Mapping[str, Sequence[Mapping[str, object]]]) -> str:
        """Answer `labels_by_scene` for this content (bytes, or its sha256 hex); returns the hash.

        Scenes missing from `labels_by_scene` answer no labels for this content.
        """
        if isinstance(data_or_hash, bytes):
            digest = content_hash(data_or_hash)
        else:
            digest = data_or_hash.strip().lower()
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(f"expected image bytes or a sha256 hex digest, got {data_or_hash!r}")
        table: dict[str, list[Label]] = {}
        for scene_name, labels in labels_by_scene.items():
            if not scene_name.strip():
                raise ValueError("empty scene name")
            (scene,) = normalise_scenes([scene_name])
            checked = [_validated_label(raw, f"{scene}[{i}]") for i, raw in enumerate(labels)]
            table[scene] = sorted(checked, key=lambda lb: -int(lb["Confidence"]))  # stable on ties
        with self._lock:
            self._table[digest] = table
        return digest

    def detect(self, data: bytes, scenes: Sequence[str]) -> SceneLabels:
        wanted = normalise_scenes(scenes)
        digest = content_hash(data)
        with self._lock:
            canned = self._table.get(digest)
            self.seen.append(digest)
        if canned is None and self.require_image_signature and not data.startswith((PNG_SIGNATURE, JPEG_SIGNATURE)):
            raise ImageDecodeError("not a PNG or JPEG image (no PNG/JPEG signature)")
        if canned is not None:
            # Copies, so a caller that edits the answer cannot change the table.
            return {scene: [dict(label) for label in canned.get(scene, [])] for scene in wanted}
        return {scene: fallback_labels(digest, self.language) for scene in wanted}
