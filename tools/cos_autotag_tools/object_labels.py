"""An object's labels read back as the function wrote them, in either write-back mode.

Tags mode:      autotag = <marker>, autotag:<name> = <confidence>   (GET Object tagging)
Metadata mode:  x-cos-meta-autotag = <marker>,
                x-cos-meta-autotag-labels = <name>:<confidence>,...  (HEAD Object; names percent-encoded)

`decode_labels` is the one place the tools turn an object's tags or metadata into labels: `show`,
`find`, the gallery's index and the dataset query all go through it, so a change of layout lands
here. It never raises on what COS would store: a value it cannot read (`²`, `9.5`, `1e400`, a
5,000-digit number) is kept aside as unreadable and shown as such.

`show`, `find` and `gallery` share this reader, the backfill's listing, and the way the backfill
builds its settings, client and credentials (AUTOTAG_COS_ENDPOINT, TENCENTCLOUD_*).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote

from cos_autotag import observability
from cos_autotag.errors import ConfigurationError, CosCallError, SettingsError
from cos_autotag.retry import Deadline, call_with_retry
from cos_autotag.settings import Settings
from cos_autotag.writeback import (
    LABEL_TAG_PREFIX,
    LABELS_META,
    MARKER_META,
    MARKER_TAG,
    MARKER_VERSION,
    decode_label_tag,
    read_tags,
)
from cos_autotag_tools.gateway import ToolGateway

from .backfill.listing import ListedObject
from .bucket_args import UsageError, resolve_bucket

MODES = ("auto", "tags", "metadata")
READ_DEADLINE_S = 30.0  # per object, retries of a throttled or failing read included
MAX_CONCURRENCY = 64
# A confidence as the function writes it: a whole number 0-100 in ASCII digits. `str.isdigit()`
# is true for `²` and `٣`, which `int()` refuses or reads as another number: never used here.
_CONFIDENCE = re.compile(r"[0-9]{1,3}")


@dataclass(frozen=True)
class ObjectLabels:
    key: str
    # Where the labels were found: "tags", "metadata", or "" when the object carries none.
    found_in: str
    marker: str | None
    labels: tuple[tuple[str, int], ...] = ()
    # (name, raw value) of entries in the labels' place that are not a label the function wrote
    # (a confidence that is not a whole number 0-100, a metadata item without `name:confidence`).
    unreadable: tuple[tuple[str, str], ...] = ()

    @property
    def labeled(self) -> bool:
        return self.marker is not None or bool(self.labels)

    def confidence(self, name: str) -> int | None:
        """The label's confidence when the object carries it (names compared as `same_label`)."""
        wanted = label_key(name)
        for label, confidence in self.labels:
            if label_key(label) == wanted:
                return confidence
        return None

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "mode": self.found_in or None,
            "marker": self.marker,
            "labels": [{"name": n, "confidence": c} for n, c in self.labels],
            "unreadable": [{"name": n, "value": v} for n, v in self.unreadable],
        }


def label_key(name: str) -> str:
    """How labels compare: Unicode-normalized (full-width forms too) and case-folded."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def read_confidence(value: str) -> int | None:
    """A confidence 0-100 as the function writes it, or None for anything else."""
    text = value.strip()
    if _CONFIDENCE.fullmatch(text) is None:
        return None
    confidence = int(text)
    return confidence if confidence <= 100 else None


def decode_labels(
    key: str, tags: Iterable[tuple[str, str]] | None = None, head: Mapping[str, str] | None = None
) -> ObjectLabels:
    """An object's labels from its tags (tags mode) or its HEAD headers (metadata mode).

    Never raises for any text: what is not a label the function wrote is `unreadable`.
    """
    if tags is not None:
        return _from_tags(key, list(tags))
    return _from_head(key, head or {})


def _from_tags(key: str, tags: list[tuple[str, str]]) -> ObjectLabels:
    # The function's own reader (writeback.read_tags): only the label tags its marker shows it
    # wrote, in either form (`autotag:<name>` or `autotag:b64:<base64>`); the user's tags
    # (`owner`, `autotag:note`, an `autotag` that is not a marker) are never labels.
    reading = shown = read_tags(tags)
    if reading.marker is None:  # labels left without their marker (a hand-edited set) show as v1 wrote them
        shown = read_tags([(MARKER_TAG, MARKER_VERSION), *((k, v) for k, v in tags if k != MARKER_TAG)])
    labels, unreadable = [], []
    for name, value in shown.ours:
        if name == MARKER_TAG:
            continue
        label = decode_label_tag(name) or name[len(LABEL_TAG_PREFIX) :]
        confidence = read_confidence(value)
        if confidence is None:
            unreadable.append((label, value))
        else:
            labels.append((label, confidence))
    if reading.marker is None or reading.marker.owned is None:
        # Without a v2 marker ownership rests on the value (v1 wrote a whole number 0-100), so a
        # label tag holding anything else cannot be told from a broken one: shown as unreadable.
        for name, value in shown.user:
            other = decode_label_tag(name)
            if other is None or name == MARKER_TAG:
                continue
            confidence = read_confidence(value)  # lenient for display: " 42 " reads as 42
            if confidence is None:
                unreadable.append((other, value))
            else:
                labels.append((other, confidence))
    labels.sort(key=lambda item: -item[1])
    marker = reading.marker_text
    found_in = "tags" if marker is not None or labels else ""
    return ObjectLabels(key, found_in, marker, tuple(labels), tuple(unreadable))


def _from_head(key: str, head: Mapping[str, str]) -> ObjectLabels:
    lowered = {str(name).lower(): str(value) for name, value in head.items()}
    marker = lowered.get(MARKER_META)
    labels, unreadable = [], []
    for item in lowered.get(LABELS_META, "").split(","):
        if not item.strip():
            continue
        quoted, _, value = item.rpartition(":")
        confidence = read_confidence(value)
        name = unquote(quoted, errors="replace")
        if not name or confidence is None:
            unreadable.append((name or item, value))
        else:
            labels.append((name, confidence))
    labels.sort(key=lambda item: -item[1])
    found_in = "metadata" if marker is not None or labels else ""
    return ObjectLabels(key, found_in, marker, tuple(labels), tuple(unreadable))


def from_tags(key: str, tags: Iterable[tuple[str, str]]) -> ObjectLabels:
    return decode_labels(key, tags=tags)


def from_head(key: str, head: Mapping[str, str]) -> ObjectLabels:
    return decode_labels(key, head=head)


def read_labels(gateway: ToolGateway, bucket: str, region: str, key: str, mode: str = "auto") -> ObjectLabels:
    """The object's labels. `auto` reads the tags first and the metadata only when the tags hold none.

    Raises CosCallError (`.not_found` when the object is gone).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode in ("auto", "tags"):
        tags = call_with_retry(partial(gateway.get_tags, bucket, region, key), Deadline(READ_DEADLINE_S))
        found = from_tags(key, tags)
        if mode == "tags" or found.labeled:
            return found
    head = call_with_retry(partial(gateway.head, bucket, region, key), Deadline(READ_DEADLINE_S))
    return from_head(key, head)


@dataclass
class ReadResult:
    listed: ListedObject
    labels: ObjectLabels | None = None
    error: CosCallError | None = None

    @property
    def gone(self) -> bool:
        return self.error is not None and self.error.not_found


def read_many(
    gateway: ToolGateway,
    bucket: str,
    region: str,
    objects: Iterable[ListedObject],
    mode: str,
    concurrency: int,
    on_done: Callable[[ReadResult], None] | None = None,
) -> Iterator[ReadResult]:
    """Read each object's labels, `concurrency` at a time, yielding results in listing order.

    At most a few reads per worker are queued ahead, so a bucket of millions streams through
    in constant memory while the listing is still paging.
    """

    def read(obj: ListedObject) -> ReadResult:
        try:
            return ReadResult(obj, read_labels(gateway, bucket, region, obj.key, mode))
        except CosCallError as error:
            return ReadResult(obj, error=error)

    window: deque[Future[ReadResult]] = deque()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="read-labels") as pool:
        try:
            for obj in objects:
                window.append(pool.submit(read, obj))
                while len(window) >= concurrency * 4:
                    yield _finish(window.popleft(), on_done)
            while window:
                yield _finish(window.popleft(), on_done)
        finally:
            for future in window:  # interrupted: do not start what is still queued
                future.cancel()


def _finish(future: Future[ReadResult], on_done: Callable[[ReadResult], None] | None) -> ReadResult:
    result = future.result()
    if on_done is not None:
        on_done(result)
    return result


# --- the bucket, settings, client and credentials, as the backfill builds them ----------------


@dataclass(frozen=True)
class Bucket:
    name: str
    region: str
    settings: Settings
    gateway: ToolGateway = field(repr=False)


def add_mode_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="where the labels are: tags, metadata, or auto (tags first, then metadata; default). "
        "Naming the function's AUTOTAG_MODE saves a read per unlabeled object",
    )


def open_bucket(args: argparse.Namespace, env: Mapping[str, str]) -> Bucket:
    """The bucket named on the command line with the function's settings and credentials.

    Raises UsageError with what to do next.
    """
    name, region = resolve_bucket(args, env)
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        raise UsageError(str(error)) from error
    gateway = ToolGateway(settings, env)
    try:
        creds = gateway.credentials()
    except ConfigurationError as error:
        raise UsageError(
            f"{error}; set them to a key that may read the bucket "
            "(for the local emulator, the --secret-id/--secret-key `cos-autotag local` printed)"
        ) from error
    observability.register_credentials(creds.secret_id, creds.secret_key, creds.token)
    return Bucket(name, region, settings, gateway)


@contextmanager
def sdk_quiet() -> Iterator[None]:
    """The SDK logs every error response as XML; these commands say what failed themselves."""
    logger = logging.getLogger("qcloud_cos")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}, not {value}")
    return value


def explain(error: CosCallError, bucket: Bucket) -> str:
    """A failed call with a hint of what to do next."""
    hint = ""
    if error.code == "NoSuchBucket":
        hint = f": check --bucket and --region ({bucket.name} in {bucket.region})"
    elif error.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        hint = ": check TENCENTCLOUD_SECRETID/SECRETKEY (and SESSIONTOKEN for temporary keys) and the key's permissions"
    elif error.code == "NetworkError" and bucket.settings.cos_endpoint is not None:
        scheme, host, port = bucket.settings.cos_endpoint
        hint = f": is AUTOTAG_COS_ENDPOINT={scheme}://{host}:{port} serving?"
    return f"{error}{hint}"


# --- text output ----------------------------------------------------------------------------

# Escape sequences (CSI, OSC, DCS, ... up to their terminator) and single escapes, then every
# control character left: C0, DEL, C1 (0x9b is a CSI on its own) and the bidi overrides that
# reorder what a terminal shows.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|$)"  # OSC, DCS, SOS, PM, APC: to BEL or ST
    r"|\x1b.?",
    re.DOTALL,
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BEYOND_C0 = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """`text` safe to print on a terminal: escape sequences and control characters removed
    (U+FFFD when nothing printable is left, so a name never vanishes from a line)."""
    text = str(text)
    out = _CONTROL.sub("", _ESCAPE.sub("", text))
    return out if out or not text else "\ufffd"


def json_text(document: object) -> str:
    """JSON (UTF-8, indented) in which no character a terminal acts on appears raw.

    `json.dumps` escapes C0 already; DEL, C1 and the bidi controls are escaped here too. They can
    only occur inside strings, where `\\uXXXX` is the same text.
    """
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return _CONTROL_BEYOND_C0.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def display_width(text: str) -> int:
    """Columns a terminal gives `text`: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def label_lines(labels: Sequence[tuple[str, object]], indent: str = "  ") -> list[str]:
    shown = [(clean(name), clean(value)) for name, value in labels]
    width = max((display_width(name) for name, _ in shown), default=0)
    return [f"{indent}{pad(name, width)}  {value:>3}" for name, value in shown]
