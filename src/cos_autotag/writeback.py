"""Plan what to write back onto an object: the merged tag set, or the rewritten metadata.

Pure functions: they take what was read from the object and the chosen labels and return
exactly what to send. They never drop a user's tag or metadata; when room is short they
write fewer labels and say so.

Tag layout (one tag per label, so lifecycle rules and inventory filters can select on it):
    autotag          = v1:<upload token>     the marker: this upload has been labeled
    autotag:<Name>   = <confidence 0-100>    one per label, most confident first
Metadata layout:
    x-cos-meta-autotag        = v1:<upload token>      (or v2:<upload token>: ; both are read)
    x-cos-meta-autotag-labels = <name>:<confidence>,...   names percent-encoded (UTF-8)
The two headers are the function's only when `x-cos-meta-autotag` holds a marker: any other
value of it, or a labels header with no marker beside it, is the user's, never overwritten or
removed (the object is skipped with a reason that says what to rename). The copy that writes
them carries the object's encryption, ACL and user metadata (`carry.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from . import cos_facts
from .carry import Kept
from .label import Label

MARKER_TAG = "autotag"
LABEL_TAG_PREFIX = "autotag:"
MARKER_META = cos_facts.USER_META_PREFIX + "autotag"
LABELS_META = cos_facts.USER_META_PREFIX + "autotag-labels"
MARKER_VERSION = "v1"


def marker_value(upload_token: str) -> str:
    return f"{MARKER_VERSION}:{upload_token}" if upload_token else MARKER_VERSION


def marker_token(marker: str) -> str:
    """The upload token inside a marker ('' when it has none)."""
    _, _, token = marker.partition(":")
    return token


def is_own_tag(key: str) -> bool:
    return key == MARKER_TAG or key.startswith(LABEL_TAG_PREFIX)


def clean_tag_text(text: str, max_chars: int) -> str:
    """`text` made acceptable to COS as a tag key or value, or '' when nothing usable is left."""
    cleaned = "".join(ch if (ch.isalnum() or ch in cos_facts.TAG_ALLOWED_PUNCTUATION) else " " for ch in text)
    cleaned = " ".join(cleaned.split())[:max_chars].strip()
    return cleaned if cos_facts.tag_text_is_valid(cleaned, max_chars) else ""


# --- tags ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagPlan:
    tags: list[tuple[str, str]]
    written: list[Label]
    left_out_for_room: list[Label] = field(default_factory=list)
    left_out_invalid: list[str] = field(default_factory=list)


def user_tags(existing: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in existing if not is_own_tag(k)]


def marker_in_tags(existing: Iterable[tuple[str, str]]) -> str | None:
    for key, value in existing:
        if key == MARKER_TAG:
            return value
    return None


def label_room_in_tags(existing: Iterable[tuple[str, str]]) -> int:
    """How many labels fit beside the user's tags and the marker."""
    return cos_facts.TAGS_MAX_PER_OBJECT - len(user_tags(existing)) - 1


def plan_tags(
    existing: Iterable[tuple[str, str]], labels: Iterable[Label], upload_token: str, ascii_only: bool = False
) -> TagPlan:
    kept = user_tags(existing)
    room = cos_facts.TAGS_MAX_PER_OBJECT - len(kept) - 1
    key_room = cos_facts.TAG_KEY_MAX_CHARS - len(LABEL_TAG_PREFIX)
    ours: list[tuple[str, str]] = []
    written: list[Label] = []
    left_out_room: list[Label] = []
    invalid: list[str] = []
    seen: set[str] = {k for k, _ in kept}
    for label in labels:
        name = clean_tag_text(label.name, key_room)
        if ascii_only and not name.isascii():
            name = clean_tag_text(name.encode("ascii", "ignore").decode(), key_room)
        key = LABEL_TAG_PREFIX + name
        if not name or key in seen:
            invalid.append(label.name)
            continue
        if len(ours) >= max(room, 0):
            left_out_room.append(label)
            continue
        seen.add(key)
        ours.append((key, str(label.confidence)))
        written.append(label)
    marker = [(MARKER_TAG, marker_value(upload_token))] if room >= 0 else []
    return TagPlan(kept + marker + ours, written, left_out_room, invalid)


# --- metadata -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataPlan:
    metadata: dict[str, str]  # every x-cos-meta-* header to send, the user's first
    headers: dict[str, str]  # SDK keyword -> value for the standard headers to carry over
    storage_class: str
    written: list[Label]
    left_out_for_room: list[Label] = field(default_factory=list)
    carried: dict[str, str] = field(default_factory=dict)  # encryption and x-cos-grant-* headers, raw names


def user_metadata(head: Mapping[str, str]) -> dict[str, str]:
    """The object's x-cos-meta-* headers other than the function's own, names lower-cased."""
    out = {}
    for name, value in head.items():
        lowered = name.lower()
        if lowered.startswith(cos_facts.USER_META_PREFIX) and lowered not in (MARKER_META, LABELS_META):
            out[lowered] = value
    return out


# The metadata marker, strictly: `v1`, `v1:<token>`, `v2:<token>:` (a tags-mode style digest
# list after the last colon is read too). Anything else in that header is the user's.
_TOKEN = r"[A-Za-z0-9_.=+/-]{1,64}"  # the upload token: hex as the function writes it, read leniently
_METADATA_MARKER_RE = re.compile(rf"v1(?::{_TOKEN})?|v2:(?:{_TOKEN})?:(?:[0-9a-f]{{4}}(?:\.[0-9a-f]{{4}})*)?")


def is_metadata_marker(value: object) -> bool:
    """Whether a value of `x-cos-meta-autotag` is the function's marker (any input: True or False)."""
    return isinstance(value, str) and _METADATA_MARKER_RE.fullmatch(value) is not None


def _meta_value(meta: Mapping[str, str], header: str) -> str | None:
    for name, value in meta.items():
        if name.lower() == header:
            return value
    return None


def marker_in_metadata(meta: Mapping[str, str]) -> str | None:
    """The function's marker in these headers; None when there is none (or the header is the user's)."""
    value = _meta_value(meta, MARKER_META)
    return value if value is not None and is_metadata_marker(value) else None


def metadata_not_ours(meta: Mapping[str, str]) -> str | None:
    """Why the function's two headers are the user's on this object (None: they are free or ours)."""
    marker = _meta_value(meta, MARKER_META)
    if marker is not None and not is_metadata_marker(marker):
        return (
            f"{MARKER_META} holds the user's value, not the function's marker: rename it "
            f"(for example to {MARKER_META}-user) to have the object labeled"
        )
    if marker is None and _meta_value(meta, LABELS_META) is not None:
        return (
            f"{LABELS_META} is the user's (the function's marker {MARKER_META} is not beside it): rename it "
            f"(for example to {LABELS_META}-user) to have the object labeled"
        )
    return None


def header_text(value: str) -> str:
    """A header value as read back, as the text it stands for.

    COS sends a non-ASCII value as its raw UTF-8 bytes and HTTP clients decode header bytes as
    latin-1, while the SDK encodes what it sends as UTF-8: a value sent back as read would be
    encoded twice ("小明" would come back as "å°\x8fæ\x98\x8e"). A value that is not latin-1
    text holding UTF-8 bytes is kept as it is."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _user_metadata_text(head: Mapping[str, str]) -> dict[str, str]:
    return {name: header_text(value) for name, value in user_metadata(head).items()}


def _meta_bytes(meta: Mapping[str, str]) -> int:
    # What the SDK sends: each name and value as UTF-8.
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in meta.items())


def encode_labels_meta(labels: Iterable[Label]) -> str:
    return ",".join(f"{quote(label.name, safe=' -_.')}:{label.confidence}" for label in labels)


def decode_labels_meta(value: str) -> list[tuple[str, int]]:
    out = []
    for item in value.split(","):
        name, _, confidence = item.rpartition(":")
        if name and confidence.isdigit():
            out.append((unquote(name), int(confidence)))
    return out


def metadata_room(head: Mapping[str, str], upload_token: str) -> int:
    """Bytes left for the labels value once the user's metadata and the marker are counted."""
    base = _user_metadata_text(head)
    base[MARKER_META] = marker_value(upload_token)
    return _room_beside(base)


def _room_beside(meta: Mapping[str, str]) -> int:
    """Bytes left for the labels value beside `meta` (the user's metadata and the marker)."""
    return cos_facts.USER_META_MAX_BYTES - _meta_bytes(meta) - len(LABELS_META)


def _sdk_keyword(header: str) -> str:
    return header.replace("-", "")  # Content-Type -> ContentType, as the SDK's maplist names them


def plan_metadata(
    head: Mapping[str, str], labels: list[Label], upload_token: str, kept: Kept | None = None
) -> MetadataPlan:
    """`kept`: the user's metadata, encryption and ACL as `carry` found them to send (None: the
    user's metadata as `header_text` reads it, nothing else carried)."""
    lowered = {k.lower(): header_text(v) for k, v in head.items()}
    meta = dict(kept.metadata) if kept is not None else _user_metadata_text(head)
    meta[MARKER_META] = marker_value(upload_token)
    room = _room_beside(meta)
    written = list(labels)
    while written and len(encode_labels_meta(written)) > room:
        written.pop()
    if written:
        meta[LABELS_META] = encode_labels_meta(written)
    headers = {}
    for header in cos_facts.PRESERVED_HEADERS:
        value = lowered.get(header.lower())
        if value:
            headers[_sdk_keyword(header)] = value
    # COS requires a Content-Type on a Replaced copy; keep the object's, or the generic one it had.
    headers.setdefault("ContentType", "application/octet-stream")
    storage_class = lowered.get(cos_facts.STORAGE_CLASS_HEADER) or cos_facts.DEFAULT_STORAGE_CLASS
    carried = dict(kept.headers) if kept is not None else {}
    return MetadataPlan(meta, headers, storage_class, written, labels[len(written) :], carried)


def plan_metadata_without_labels(head: Mapping[str, str], kept: Kept | None = None) -> MetadataPlan:
    """The copy onto itself that takes the function's marker and labels off (`cos-autotag untag`):
    everything else kept exactly as `plan_metadata` keeps it."""
    plan = plan_metadata(head, [], "", kept)
    metadata = {name: value for name, value in plan.metadata.items() if name not in (MARKER_META, LABELS_META)}
    return replace(plan, metadata=metadata)
