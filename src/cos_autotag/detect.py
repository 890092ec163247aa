"""Read Cloud Infinite detect-label responses, in every shape the SDK hands them over.

Without `scenes` the labels sit at the top level (`Labels`); with scenes each scene has
its own `<Scene>Labels` element. The SDK's XML parser gives one label as a dict and many
as a list, an empty element as None, and every value as a string.

A reply is untrusted input like the event. One that is not this shape (an HTML page, another
XML document, JSON of another shape) is an `UnreadableReply`: the record fails, never retried
(a retry reads the same reply), and never counts as a label-less success. A single label
whose name or confidence cannot be read is dropped; the others are kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import cos_facts
from .eligibility import Verdict
from .errors import CosCallError, UnreadableReply
from .label import Label
from .run import RecordRun

if TYPE_CHECKING:
    from .ports import LabelDetector, ObjectStore

# The rendition detect-label sees for a photo over its 3 MB limit: a JPEG at most 1280 px a side.
THUMBNAIL_RULE = "imageMogr2/thumbnail/1280x1280/format/jpg"
# detect-label requests one record may make in one invocation, retries included: a reply that
# keeps failing costs at most this many paid calls before SCF's own retry, a minute later.
MAX_DETECT_REQUESTS = 3
# `<Labels>` inside `<Labels>` is tolerated this deep; deeper is not the documented shape.
MAX_NESTING = 4
MAX_NAME_CHARS = 1000  # longer than any label; a tag or header could not hold it anyway
_OPERATION = "DetectLabel"
# Each scene's element in a reply (`camera` -> `CameraLabels`), built once, not per reply.
_SCENE_ELEMENTS = tuple((scene, scene.capitalize() + "Labels") for scene in cos_facts.DETECT_SCENES)


def detect(
    run: RecordRun,
    detector: LabelDetector,
    store: ObjectStore,
    verdict: Verdict,
    scenes: tuple[str, ...],
    max_requests: int = MAX_DETECT_REQUESTS,
) -> list[Label]:
    """Every label detect-label finds in the object (the one paid call), or in its rendition when large."""
    record = run.record
    detect_url = None
    if verdict.large:
        detect_url = store.thumbnail_url(record.bucket, record.region, run.key, THUMBNAIL_RULE)
    budget = max_requests - run.result.calls[_OPERATION]
    if budget <= 0:  # a second detect (the object changed meanwhile) after retries used them all
        raise CosCallError(_OPERATION, "RequestBudgetSpent", "detect-label request budget spent", None, "", True)
    response = run.call(
        _OPERATION,
        lambda: detector.detect_labels(record.bucket, record.region, run.key, scenes, detect_url=detect_url),
        max_attempts=budget,
    )
    return parse_detect_response(response)


def parse_detect_response(response: Any) -> list[Label]:
    """Every label in a detect-label response, across scenes, in response order.

    Raises `UnreadableReply` when the response is not the documented shape.
    """
    if not isinstance(response, Mapping):
        raise UnreadableReply(_OPERATION, f"a {type(response).__name__}, not a RecognitionResult document")
    root: Mapping[str, Any] = response
    # Tolerate a response that still carries its root element.
    if "RecognitionResult" in response:
        root = response["RecognitionResult"]
        if root is None:
            return []  # an empty <RecognitionResult/>: nothing recognised
        if not isinstance(root, Mapping):
            raise UnreadableReply(_OPERATION, "RecognitionResult is not an element")
    if "Labels" not in root and not any(element in root for _, element in _SCENE_ELEMENTS):
        raise UnreadableReply(_OPERATION, "no Labels element in the reply")
    labels: list[Label] = []
    if "Labels" in root:
        labels.extend(_labels(root.get("Labels"), scene=""))
    for scene, element in _SCENE_ELEMENTS:
        block = root.get(element)
        if isinstance(block, Mapping):
            labels.extend(_labels(block.get("Labels"), scene=scene))
        elif isinstance(block, list):  # several <Labels> directly under the scene element
            labels.extend(_labels(block, scene=scene))
        elif block is not None:
            raise UnreadableReply(_OPERATION, f"{element} is not an element")
    return labels


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    return (value,)


def _labels(value: Any, scene: str, depth: int = 0) -> list[Label]:
    if depth > MAX_NESTING:
        raise UnreadableReply(_OPERATION, f"Labels nested more than {MAX_NESTING} deep")
    out = []
    for item in _as_list(value):
        if not isinstance(item, Mapping):
            continue
        if "Labels" in item and "Name" not in item:  # a nested <Labels><Labels>...</Labels></Labels>
            out.extend(_labels(item.get("Labels"), scene, depth + 1))
            continue
        name = item.get("Name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            continue
        confidence = _confidence(item.get("Confidence"))
        if confidence is None:
            continue
        out.append(
            Label(
                name=name.strip(),
                confidence=confidence,
                first_category=_text(item.get("FirstCategory")),
                second_category=_text(item.get("SecondCategory")),
                scene=scene,
            )
        )
    return out


def _text(value: Any) -> str:
    return value.strip()[:MAX_NAME_CHARS] if isinstance(value, str) else ""


def _confidence(value: Any) -> int | None:
    """A percentage 0-100, or None when the value is not a finite number in that range."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, str) and len(value) > 32:  # no real confidence is that long
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    if 0 < number <= 1 and isinstance(value, float):  # a probability rather than a percentage
        number *= 100
    if not 0 <= number <= 100:
        return None
    return round(number)
