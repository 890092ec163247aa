"""What must hold for every object at the end of a scenario, whatever faults were on.

Each check compares the object's final state, read straight from the emulator's store, with what
the uploader sent and with COS's rules from `cos_facts`; it answers a list of violations (empty
when the object is fine), each naming the key and what differs. The expected labels come from
an oracle independent of the function: the emulator's own Cloud Infinite rules and label engine
run on the object's *current* body, then the documented selection (confidence floor, top N).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cos_autotag.detect import THUMBNAIL_RULE
from cos_autotag.label import Label
from cos_autotag.selection import select_labels
from cos_autotag.settings import Settings
from cos_autotag.writeback import (
    LABEL_TAG_PREFIX,
    LABELS_META,
    MARKER_META,
    MARKER_TAG,
    decode_labels_meta,
    encode_labels_meta,
    marker_token,
)
from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import ci
from cos_autotag_tools.emulator.errors import CosError
from cos_autotag_tools.emulator.store import ObjectState

# What COS serves for an object stored without a Content-Type.
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Expected:
    """The object as its last uploader left it (or gone, if they deleted it)."""

    key: str
    body: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # other standard headers, canonical names
    metadata: Mapping[str, str] = field(default_factory=dict)  # x-cos-meta-*, names lower-cased
    tags: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = cos_facts.DEFAULT_STORAGE_CLASS
    upload_token: str = ""  # the token the function derives from the last upload's request id
    deleted: bool = False


def upload_token(request_id: str) -> str:
    """The marker token of an upload (events.CosRecord.upload_token for an event without a vid)."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:16]


# --- the oracle ------------------------------------------------------------------------------------


class OracleError(RuntimeError):
    """The expected labels of some content cannot be computed (so nothing about them can be checked)."""


def _decodable(body: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except Exception:  # Pillow raises many kinds for bad bytes
        return False
    return True


def expected_labels(body: bytes, content_type: str, engine: Any, settings: Settings) -> list[Label] | None:
    """The labels the function should write for this content, best first; None when CI cannot label it."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in cos_facts.GENERIC_CONTENT_TYPES and mime not in cos_facts.DETECT_CONTENT_TYPES:
        return None  # declared as something other than an image: not the function's business
    if len(body) > cos_facts.CI_PROCESS_MAX_BYTES:
        return None
    data = body
    if len(body) > cos_facts.DETECT_MAX_BYTES:
        if settings.large_images != "thumbnail" or not _decodable(body):
            return None
        try:
            data = ci.apply_processing(body, THUMBNAIL_RULE)  # the rendition CI labels
        except CosError as error:
            # CI renders any decodable photo up to its limit: not knowing the answer is no answer.
            raise OracleError(f"cannot render {THUMBNAIL_RULE!r} of a decodable photo: {error.message}") from error
    try:
        ci.check_image(data)
        answer = ci.run_engine(engine, data, settings.scenes)
    except CosError:
        return None
    labels = [
        Label(name=str(raw["Name"]), confidence=int(str(raw["Confidence"])), scene=scene)
        for scene, found in answer.items()
        for raw in found
    ]
    return select_labels(labels, settings.min_confidence, settings.max_labels)


def _meta_size(meta: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())


def labels_that_fit(expected: Expected, labels: Sequence[Label], mode: str, upload_token_: str) -> list[Label]:
    """The most confident labels that fit beside the user's own tags or metadata under COS's limits."""
    if mode == "tags":
        room = cos_facts.TAGS_MAX_PER_OBJECT - len(expected.tags) - 1  # one tag is the marker
        return list(labels[: max(room, 0)])
    base = dict(expected.metadata)
    base[MARKER_META] = "v1:" + upload_token_
    count = len(labels)
    while (
        count and _meta_size({**base, LABELS_META: encode_labels_meta(labels[:count])}) > cos_facts.USER_META_MAX_BYTES
    ):
        count -= 1
    return list(labels[:count])


# --- reading what the function wrote ---------------------------------------------------------------


def own_labels(state: ObjectState, mode: str) -> tuple[dict[str, int], str | None]:
    """(label name -> confidence, marker) as the function wrote them on the object."""
    if mode == "tags":
        labels = {}
        for key, value in state.tags.items():
            if key.startswith(LABEL_TAG_PREFIX):
                labels[key[len(LABEL_TAG_PREFIX) :]] = int(value) if value.isdigit() else -1
        return labels, state.tags.get(MARKER_TAG)
    raw = state.metadata.get(LABELS_META, "")
    return dict(decode_labels_meta(raw)) if raw else {}, state.metadata.get(MARKER_META)


def user_tags_of(state: ObjectState, mode: str) -> dict[str, str]:
    if mode != "tags":
        return dict(state.tags)
    return {k: v for k, v in state.tags.items() if k != MARKER_TAG and not k.startswith(LABEL_TAG_PREFIX)}


def user_metadata_of(state: ObjectState, mode: str) -> dict[str, str]:
    if mode != "metadata":
        return dict(state.metadata)
    return {k: v for k, v in state.metadata.items() if k not in (MARKER_META, LABELS_META)}


# --- the checks ------------------------------------------------------------------------------------


def check_object(
    expected: Expected,
    state: ObjectState | None,
    mode: str,
    labels: Sequence[Label] | None,
) -> list[str]:
    """Every invariant on one object's final state. `labels`: the oracle's answer for its current body."""
    key = expected.key
    if expected.deleted:
        return [] if state is None else [f"{key}: deleted by its uploader but exists again"]
    if state is None:
        return [f"{key}: the object is gone"]
    problems: list[str] = []
    problems += _check_content(expected, state)
    problems += _check_user_data(expected, state, mode)
    problems += check_tag_rules(key, state.tags)
    problems += _check_labels(expected, state, mode, labels)
    return problems


def _check_content(expected: Expected, state: ObjectState) -> list[str]:
    key, problems = expected.key, []
    if hashlib.sha256(state.body).digest() != hashlib.sha256(expected.body).digest():
        problems.append(f"{key}: body changed ({len(expected.body)} bytes uploaded, {len(state.body)} stored)")
    wanted_type = expected.content_type or DEFAULT_CONTENT_TYPE
    got_type = state.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
    if got_type != wanted_type:
        problems.append(f"{key}: Content-Type {wanted_type!r} became {got_type!r}")
    for header in cos_facts.PRESERVED_HEADERS:
        if header == "Content-Type":
            continue
        if state.headers.get(header) != expected.headers.get(header):
            problems.append(f"{key}: {header} {expected.headers.get(header)!r} became {state.headers.get(header)!r}")
    if state.storage_class != expected.storage_class:
        problems.append(f"{key}: storage class {expected.storage_class} became {state.storage_class}")
    return problems


def _check_user_data(expected: Expected, state: ObjectState, mode: str) -> list[str]:
    key, problems = expected.key, []
    tags = user_tags_of(state, mode)
    if tags != dict(expected.tags):
        problems.append(f"{key}: user tags {dict(expected.tags)} became {tags}")
    meta = user_metadata_of(state, mode)
    if meta != dict(expected.metadata):
        problems.append(f"{key}: user metadata {dict(expected.metadata)} became {meta}")
    other = "metadata" if mode == "tags" else "tags"
    if other == "metadata" and any(k in state.metadata for k in (MARKER_META, LABELS_META)):
        problems.append(f"{key}: labels written to metadata in tags mode")
    if other == "tags" and any(k == MARKER_TAG or k.startswith(LABEL_TAG_PREFIX) for k in state.tags):
        problems.append(f"{key}: labels written to tags in metadata mode")
    return problems


def check_tag_rules(key: str, tags: Mapping[str, str]) -> list[str]:
    """At most TAGS_MAX_PER_OBJECT tags, each key and value valid under COS's rules."""
    problems = []
    if len(tags) > cos_facts.TAGS_MAX_PER_OBJECT:
        problems.append(f"{key}: {len(tags)} tags, more than {cos_facts.TAGS_MAX_PER_OBJECT}")
    for tag_key, value in tags.items():
        if not cos_facts.tag_text_is_valid(tag_key, cos_facts.TAG_KEY_MAX_CHARS):
            problems.append(f"{key}: tag key {tag_key!r} breaks COS's rules")
        if not cos_facts.tag_text_is_valid(value, cos_facts.TAG_VALUE_MAX_CHARS):
            problems.append(f"{key}: tag value {value!r} (of {tag_key!r}) breaks COS's rules")
    return problems


def _check_labels(expected: Expected, state: ObjectState, mode: str, labels: Sequence[Label] | None) -> list[str]:
    key = expected.key
    written, marker = own_labels(state, mode)
    if labels is None:
        # CI cannot label this content: any label on it describes something else.
        return [f"{key}: labels {written} on content that cannot be labeled"] if written else []
    wanted = {lb.name: lb.confidence for lb in labels_that_fit(expected, labels, mode, expected.upload_token)}
    if written != wanted:
        return [f"{key}: labels {written} do not describe the current content, which has {wanted}"]
    if wanted and marker is None:
        return [f"{key}: labels without the marker"]
    return []


def stale_marker(expected: Expected, state: ObjectState | None, mode: str) -> bool:
    """Whether the marker names an upload other than the one that wrote the current content."""
    if state is None or expected.deleted:
        return False
    _, marker = own_labels(state, mode)
    return marker is not None and marker_token(marker) != expected.upload_token


# --- logs ------------------------------------------------------------------------------------------

# A request signature in any form: the SDK's Authorization header or a presigned URL.
SIGNATURE_RE = re.compile(r"q-signature=[0-9a-fA-F]{8,}")


def find_secrets(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """One line per text that holds a secret value or a request signature (the secret itself is not repeated)."""
    secrets = [s for s in secrets if s]
    found = []
    for index, text in enumerate(texts):
        for number, secret in enumerate(secrets):
            if secret in text:
                found.append(f"log text #{index} holds secret #{number}")
        if SIGNATURE_RE.search(text):
            found.append(f"log text #{index} holds a request signature")
    return found


def parse_log_lines(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(JSON objects, lines that are not a JSON object) of captured stdout."""
    parsed, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad.append(line[:200])
            continue
        if isinstance(value, dict):
            parsed.append(value)
        else:
            bad.append(line[:200])
    return parsed, bad
