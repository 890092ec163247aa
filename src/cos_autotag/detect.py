"""Read Cloud Infinite detect-label responses, in every shape the SDK hands them over.

Without `scenes` the labels sit at the top level (`Labels`); with scenes each scene has
its own `<Scene>Labels` element. The SDK's XML parser gives one label as a dict and many
as a list, an empty element as None, and every value as a string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import cos_facts
from .eligibility import Verdict
from .label import Label
from .run import RecordRun

if TYPE_CHECKING:
    from .ports import LabelDetector, ObjectStore

# The rendition detect-label sees for a photo over its 3 MB limit: a JPEG at most 1280 px a side.
THUMBNAIL_RULE = "imageMogr2/thumbnail/1280x1280/format/jpg"


def detect(
    run: RecordRun, detector: LabelDetector, store: ObjectStore, verdict: Verdict, scenes: tuple[str, ...]
) -> list[Label]:
    """Every label detect-label finds in the object (the one paid call), or in its rendition when large."""
    record = run.record
    detect_url = None
    if verdict.large:
        detect_url = store.thumbnail_url(record.bucket, record.region, run.key, THUMBNAIL_RULE)
    response = run.call(
        "DetectLabel",
        lambda: detector.detect_labels(record.bucket, record.region, run.key, scenes, detect_url=detect_url),
    )
    return parse_detect_response(response)


def parse_detect_response(response: Any) -> list[Label]:
    """Every label in a detect-label response, across scenes, in response order."""
    if not isinstance(response, Mapping):
        return []
    root: Mapping[str, Any] = response
    # Tolerate a response that still carries its root element.
    if isinstance(response.get("RecognitionResult"), Mapping):
        root = response["RecognitionResult"]
    labels: list[Label] = []
    if "Labels" in root:
        labels.extend(_labels(root.get("Labels"), scene=""))
    for scene in cos_facts.DETECT_SCENES:
        block = root.get(scene.capitalize() + "Labels")
        if isinstance(block, Mapping):
            labels.extend(_labels(block.get("Labels"), scene=scene))
        elif isinstance(block, list):  # several <Labels> directly under the scene element
            labels.extend(_labels(block, scene=scene))
    return labels


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    return (value,)


def _labels(value: Any, scene: str) -> list[Label]:
    out = []
    for item in _as_list(value):
        if not isinstance(item, Mapping):
            continue
        if "Labels" in item and "Name" not in item:  # a nested <Labels><Labels>...</Labels></Labels>
            out.extend(_labels(item.get("Labels"), scene))
            continue
        name = item.get("Name")
        if not isinstance(name, str) or not name.strip():
            continue
        confidence = _confidence(item.get("Confidence"))
        if confidence is None:
            continue
        out.append(
            Label(
                name=name.strip(),
                confidence=confidence,
                first_category=str(item.get("FirstCategory") or "").strip(),
                second_category=str(item.get("SecondCategory") or "").strip(),
                scene=scene,
            )
        )
    return out


def _confidence(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    if 0 < number <= 1 and isinstance(value, float):  # a probability rather than a percentage
        number *= 100
    return max(0, min(100, round(number)))
