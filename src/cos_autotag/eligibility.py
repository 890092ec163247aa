"""Decide whether an object is worth a detect-label call, before paying for one.

detect-label takes JPEG and PNG up to 3 MB and at least 50x50 pixels. The content type and
the extension decide first; where neither tells (no extension and an empty or generic type,
as in Tencent's own sample event) the object decides: the type its read told, else its first
bytes (the pipeline reads them). Pure functions: no call is made here.
"""

from __future__ import annotations

import posixpath
import struct
from typing import NamedTuple

from . import cos_facts
from .events import CosRecord
from .outcome import Reason
from .settings import Settings

# Enough bytes to hold the PNG header or, in nearly every JPEG, the frame header after EXIF.
SNIFF_BYTES = 64 * 1024


class Verdict(NamedTuple):
    eligible: bool
    reason: str = ""  # why not, when not eligible
    needs_sniff: bool = False  # the type is unknown: the object itself must tell
    large: bool = False  # a JPEG/PNG over detect-label's size limit: label a smaller rendition


ELIGIBLE = Verdict(True)


def _by_name_filters(key: str, settings: Settings) -> str:
    if settings.include_prefixes and not key.startswith(settings.include_prefixes):
        return Reason.OUTSIDE_INCLUDED_PREFIXES
    if settings.exclude_prefixes and key.startswith(settings.exclude_prefixes):
        return Reason.EXCLUDED_PREFIX
    lowered = key.lower()
    if settings.include_suffixes and not lowered.endswith(tuple(s.lower() for s in settings.include_suffixes)):
        return Reason.OUTSIDE_INCLUDED_SUFFIXES
    if settings.exclude_suffixes and lowered.endswith(tuple(s.lower() for s in settings.exclude_suffixes)):
        return Reason.EXCLUDED_SUFFIX
    return ""


def _format_from_type(content_type: str) -> str | None:
    """'jpeg'/'png' for a supported type, '' for another known type, None when it says nothing."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in cos_facts.GENERIC_CONTENT_TYPES:
        return None
    if mime in cos_facts.DETECT_CONTENT_TYPES:
        return "png" if mime == "image/png" else "jpeg"
    return ""


def _format_from_extension(key: str) -> str | None:
    ext = posixpath.splitext(key)[1].lower()
    if not ext:
        return None
    if ext in cos_facts.DETECT_EXTENSIONS:
        return "png" if ext == ".png" else "jpeg"
    return ""


def check_record(record: CosRecord, settings: Settings) -> Verdict:
    """The verdict from what the event tells, with no call made."""
    if reason := _by_name_filters(record.key, settings):
        return Verdict(False, reason)
    if record.size == 0:
        return Verdict(False, Reason.EMPTY)
    fmt = _format_from_type(record.content_type)
    if fmt is None:
        fmt = _format_from_extension(record.key)
    if fmt is None:
        return Verdict(False, Reason.UNKNOWN_TYPE, needs_sniff=True)
    if fmt == "":
        return Verdict(False, Reason.NOT_AN_IMAGE)
    return _size_verdict(record.size, settings)


def _size_verdict(size: int | None, settings: Settings) -> Verdict:
    if size is not None and size > cos_facts.DETECT_MAX_BYTES:
        # Cloud Infinite renders nothing past its own limit: no rendition to label either.
        if settings.large_images == "thumbnail" and size <= cos_facts.CI_PROCESS_MAX_BYTES:
            return Verdict(True, large=True)
        return Verdict(False, Reason.TOO_LARGE)
    return ELIGIBLE


def check_bytes(head: bytes, size: int | None, settings: Settings) -> Verdict:
    """The verdict from the object's first bytes, for objects whose type nothing else tells."""
    sniffed = sniff_image(head)
    if sniffed is None:
        return Verdict(False, Reason.NOT_AN_IMAGE)
    _, dims = sniffed
    if dims is not None:
        width, height = dims
        if min(width, height) < cos_facts.DETECT_MIN_SIDE:
            return Verdict(False, Reason.TOO_SMALL)
    return _size_verdict(size, settings)


def check_object(
    record: CosRecord, key: str, content_type: str | None, size: int | None, settings: Settings
) -> Verdict:
    """The verdict from what reading the object told (its key as found, type, size), for a record
    whose event did not tell the type; `needs_sniff` still when the read did not tell either."""
    if content_type is None:
        return Verdict(False, Reason.UNKNOWN_TYPE, needs_sniff=True)
    size = record.size if size is None else size
    return check_record(record._replace(key=key, content_type=content_type, size=size), settings)


def sniff_image(head: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """('jpeg'|'png', (width, height) or None if not in `head`), or None when neither format."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) >= 24 and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return "png", (width, height)
        return "png", None
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg", _jpeg_dimensions(head)
    return None


# Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # lost sync: not a well-formed header
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers with no length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        pos += 2 + length
    return None
