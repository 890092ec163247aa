"""Plan what to write back onto an object: the merged tag set, or the rewritten metadata.

Pure functions: they take what was read from the object and the chosen labels and return
exactly what to send. They never drop a user's tag or metadata; when room is short they
write fewer labels and say so.

Tag layout (one tag per label, so lifecycle rules and inventory filters can select on it):
    autotag                = v2:<upload token>:<owned>   the marker: this upload has been labeled
    autotag:<Name>         = <confidence 0-100>          a label, readable form
    autotag:b64:<base64>   = <confidence 0-100>          a label, encoded form
The marker's <owned> lists the label tag keys that write put on the object, each as the first
4 hex characters of sha256(key as UTF-8), joined by '.': the function (and `cos-autotag untag`)
removes only the `autotag:*` tags listed there, so a user's `autotag:note` is never touched. A
user's tag whose key digest collides with one of the function's (1 in 65,536 per pair) would be
taken for the function's: the accepted price of a marker that fits any tag rule. The legacy
marker `v1:<upload token>` owns the `autotag:*` tags whose value is a whole number 0-100
(exactly what v1 wrote). An `autotag` tag that is not a marker is the user's: the function
skips the object rather than overwrite it (`read_tags`, `parse_marker`).

COS's pages disagree on tag characters (the overview allows UTF-8 letters, the API page only
ASCII letters, digits, space and `+ - _ = . : /`). The encoded form uses only what both allow:
the label's UTF-8 in standard base64, cut at a character boundary so that the key stays within
127 bytes. A label whose readable form is already strict-safe is always written readable.
`decode_label_tag` reads both forms back; every reader (the tools included) goes through it.

Metadata layout:
    x-cos-meta-autotag        = v1:<upload token>      (or v2:<upload token>: ; both are read)
    x-cos-meta-autotag-labels = <name>:<confidence>,...   names percent-encoded (UTF-8)
The two headers are the function's only when `x-cos-meta-autotag` holds a marker: any other
value of it, or a labels header with no marker beside it, is the user's, never overwritten or
removed (the object is skipped with a reason that says what to rename). The copy that writes
them carries the object's encryption, ACL and user metadata (`carry.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, unquote

from . import cos_facts
from .label import Label

if TYPE_CHECKING:  # metadata mode's copy loads carry when it needs it
    from .carry import Kept

MARKER_TAG = "autotag"
LABEL_TAG_PREFIX = "autotag:"
ENCODED_TAG_PREFIX = LABEL_TAG_PREFIX + "b64:"
MARKER_META = cos_facts.USER_META_PREFIX + "autotag"
LABELS_META = cos_facts.USER_META_PREFIX + "autotag-labels"
MARKER_VERSION = "v1"
TAG_MARKER_VERSION = "v2"
OWNED_DIGEST_CHARS = 4
# An upload token is 16 hex characters; older tools wrote other short ASCII tokens.
_MARKER_RE = re.compile(
    r"v1(?::(?P<v1>[0-9A-Za-z_-]{0,64}))?"
    r"|v2:(?P<v2>[0-9A-Za-z_-]{0,64}):(?P<owned>(?:[0-9a-f]{4}(?:\.[0-9a-f]{4}){0,63})?)"
)
# What v1 wrote as a label's value: str() of a whole number 0-100.
_V1_CONFIDENCE_RE = re.compile(r"0|[1-9][0-9]?|100")
_CONFIDENCE_RE = re.compile(r"[0-9]{1,3}")


def marker_value(upload_token: str) -> str:
    return f"{MARKER_VERSION}:{upload_token}" if upload_token else MARKER_VERSION


# The values made for every record are NamedTuples rather than frozen dataclasses: immutable all
# the same, and several times cheaper to define, which every cold start pays for.
class Marker(NamedTuple):
    """A marker, parsed. `owned`: the key digests of the label tags it wrote (v2), None for v1."""

    version: str
    token: str
    owned: frozenset[str] | None = None


def parse_marker(value: str) -> Marker | None:
    """The marker in `value` (a tag's value or the marker header's), or None when it is not one.

    Strict and total: any string is either exactly one of the layouts above or not a marker."""
    if not isinstance(value, str):
        return None
    match = _MARKER_RE.fullmatch(value)
    if match is None:
        return None
    if match["owned"] is not None:
        owned = frozenset(match["owned"].split(".")) if match["owned"] else frozenset()
        return Marker("v2", match["v2"], owned)
    return Marker("v1", match["v1"] or "")


def marker_token(marker: str) -> str:
    """The upload token inside a marker ('' when it has none, or `marker` is not a marker)."""
    parsed = parse_marker(marker)
    return parsed.token if parsed is not None else ""


def clean_tag_text(text: str, max_chars: int) -> str:
    """`text` made acceptable to COS as a tag key or value, or '' when nothing usable is left."""
    cleaned = cos_facts.TAG_REFUSED_CHARACTER.sub(" ", text)
    cleaned = " ".join(cleaned.split())[:max_chars].strip()
    return cleaned if cos_facts.tag_text_is_valid(cleaned, max_chars) else ""


# --- tags ---------------------------------------------------------------------------------


def tag_key_digest(key: str) -> str:
    """How the marker lists a label tag it wrote."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:OWNED_DIGEST_CHARS]


def tag_marker_value(upload_token: str, label_keys: Iterable[str]) -> str:
    """The tags mode's marker: the upload token and the label tag keys this write puts on."""
    owned = ".".join(dict.fromkeys(tag_key_digest(key) for key in label_keys))
    return f"{TAG_MARKER_VERSION}:{upload_token}:{owned}"


def is_strict_tag_text(text: str) -> bool:
    """Whether `text` uses only the characters both of COS's tag rules allow."""
    return cos_facts.TAG_STRICT_CHARACTERS.issuperset(text)


def _cut_utf8(text: str, max_bytes: int) -> bytes:
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", "ignore").encode("utf-8")  # never half a character


def encoded_label_key(name: str) -> str | None:
    """The encoded form of a label's tag key (the name cut to fit 127 bytes), or None if empty."""
    room = (cos_facts.TAG_KEY_MAX_BYTES - len(ENCODED_TAG_PREFIX)) // 4 * 3  # base64: 3 bytes -> 4 chars
    data = _cut_utf8(name.strip(), room)
    return ENCODED_TAG_PREFIX + base64.b64encode(data).decode("ascii") if data else None


def label_tag_key(name: str, encode: bool) -> str | None:
    """The tag key a label is written under, or None when no valid key can hold it.

    Readable when the cleaned name is strict-safe (in every mode) or when `encode` is off;
    otherwise encoded. A readable name that would read back as the encoded form is encoded."""
    readable = clean_tag_text(name, cos_facts.TAG_KEY_MAX_CHARS - len(LABEL_TAG_PREFIX))
    ambiguous = (LABEL_TAG_PREFIX + readable).startswith(ENCODED_TAG_PREFIX)
    if readable and not ambiguous and (is_strict_tag_text(readable) or not encode):
        return LABEL_TAG_PREFIX + readable
    if encode or ambiguous:
        return encoded_label_key(name)
    return None


def decode_label_tag(key: str) -> str | None:
    """The label a tag key names, in either form, or None when the key is not a label tag's.

    This says what a key would mean; whether the function wrote it is `read_tags`' answer."""
    if not key.startswith(LABEL_TAG_PREFIX) or key == LABEL_TAG_PREFIX:
        return None
    if key.startswith(ENCODED_TAG_PREFIX):
        try:
            name = base64.b64decode(key[len(ENCODED_TAG_PREFIX) :], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            name = ""
        if name:
            return name
    return key[len(LABEL_TAG_PREFIX) :]


def confidence_value(value: str) -> int | None:
    """A label tag's value as a confidence 0-100, or None when it is not one."""
    return int(value) if _CONFIDENCE_RE.fullmatch(value) and int(value) <= 100 else None


class TagReading(NamedTuple):
    """A tag set read as the function's layout: what the function can show it wrote, and the rest."""

    marker: Marker | None  # the function's marker; None: none on the object
    marker_taken: bool  # an `autotag` tag holds something else: the user's, never touched
    ours: list[tuple[str, str]]  # the marker tag and the label tags the marker shows it wrote
    labels: list[tuple[str, int | None]]  # those labels, decoded, with their confidence
    user: list[tuple[str, str]]  # every other tag: kept as it is

    @property
    def marker_text(self) -> str | None:
        return None if self.marker is None else next(v for k, v in self.ours if k == MARKER_TAG)


def _owned(marker: Marker, key: str, value: str) -> bool:
    """Whether `marker` shows the function wrote the label tag `key`=`value`."""
    if marker.owned is None:  # v1 wrote a whole number 0-100 under each of its label tags
        return _V1_CONFIDENCE_RE.fullmatch(value) is not None
    return tag_key_digest(key) in marker.owned


def read_tags(existing: Iterable[tuple[str, str]]) -> TagReading:
    """The one reader of a tag set: the function's modes, `untag` and the read tools use it."""
    tags = list(existing)
    marker_text = next((v for k, v in tags if k == MARKER_TAG), None)
    marker = parse_marker(marker_text) if marker_text is not None else None
    ours: list[tuple[str, str]] = []
    labels: list[tuple[str, int | None]] = []
    user: list[tuple[str, str]] = []
    for key, value in tags:
        if key == MARKER_TAG and marker is not None:
            ours.append((key, value))
        elif marker is not None and (name := decode_label_tag(key)) is not None and _owned(marker, key, value):
            ours.append((key, value))
            labels.append((name, confidence_value(value)))
        else:
            user.append((key, value))
    return TagReading(marker, marker_text is not None and marker is None, ours, labels, user)


class TagPlan(NamedTuple):
    tags: list[tuple[str, str]]
    written: list[Label]
    left_out_for_room: list[Label]
    left_out_invalid: list[str]
    # Some label is written readable with characters COS's strict tag rule refuses.
    strict_unsafe: bool


def marker_in_tags(existing: Iterable[tuple[str, str]]) -> str | None:
    """The function's marker on the tag set (None when there is none, or `autotag` is the user's)."""
    return read_tags(existing).marker_text


def label_room_in_tags(existing: Iterable[tuple[str, str]]) -> int:
    """How many labels fit beside the user's tags and the marker."""
    return label_room(read_tags(existing))


def label_room(reading: TagReading) -> int:
    """How many labels fit beside the user's tags and the marker, from a tag set already read."""
    return cos_facts.TAGS_MAX_PER_OBJECT - len(reading.user) - 1


def plan_tags(
    existing: Iterable[tuple[str, str]], labels: Iterable[Label], upload_token: str, encode: bool = False
) -> TagPlan:
    """The whole tag set to PUT: the user's tags, the marker, and the labels that fit.

    `encode`: write a label whose readable form is not strict-safe in the encoded form."""
    reading = read_tags(existing)
    if reading.marker_taken:
        raise ValueError("the object's `autotag` tag is the user's: the function must not write its marker there")
    kept = reading.user
    room = cos_facts.TAGS_MAX_PER_OBJECT - len(kept) - 1
    ours: list[tuple[str, str]] = []
    written: list[Label] = []
    left_out_room: list[Label] = []
    invalid: list[str] = []
    seen: set[str] = {k for k, _ in kept}
    for label in labels:
        key = label_tag_key(label.name, encode)
        if key is None or key in seen:
            invalid.append(label.name)
            continue
        if len(ours) >= max(room, 0):
            left_out_room.append(label)
            continue
        seen.add(key)
        ours.append((key, str(label.confidence)))
        written.append(label)
    marker = [(MARKER_TAG, tag_marker_value(upload_token, [k for k, _ in ours]))] if room >= 0 else []
    unsafe = any(not is_strict_tag_text(k) for k, _ in ours)
    return TagPlan(kept + marker + ours, written, left_out_room, invalid, unsafe)


# --- metadata -----------------------------------------------------------------------------


class MetadataPlan(NamedTuple):
    metadata: dict[str, str]  # every x-cos-meta-* header to send, the user's first
    headers: dict[str, str]  # SDK keyword -> value for the standard headers to carry over
    storage_class: str
    written: list[Label]
    left_out_for_room: list[Label]
    carried: dict[str, str]  # encryption and x-cos-grant-* headers, raw names


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
# Compiled by `re` at its first use (and cached there): only metadata mode reads it, and tags mode,
# the default, does not pay for compiling it at every cold start.
_METADATA_MARKER = rf"v1(?::{_TOKEN})?|v2:(?:{_TOKEN})?:(?:[0-9a-f]{{4}}(?:\.[0-9a-f]{{4}})*)?"


def is_metadata_marker(value: object) -> bool:
    """Whether a value of `x-cos-meta-autotag` is the function's marker (any input: True or False)."""
    return isinstance(value, str) and re.fullmatch(_METADATA_MARKER, value) is not None


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
    return plan._replace(metadata=metadata)
