"""What a copy of an object onto itself must send to keep what the object had.

Metadata mode writes by PUT Object - Copy with `x-cos-metadata-directive: Replaced`, and a copy
keeps only what it sends (436/10881): without the encryption headers the object is stored
unencrypted, without ACL headers it takes the bucket's ACL (a private photo in a public-read
bucket turns public). So the copy carries:

- the encryption HEAD answers: `AES256`, or `cos/kms` with its key id (and context);
- the object's ACL, read with GET Object acl, as `x-cos-grant-*` headers;
- the user's metadata, sent so that HEAD reads it back exactly as before.

Where one of these cannot be carried exactly (an SSE-C object, an encryption value or grant this
code does not know, a metadata value it cannot be sure to send back unchanged), `CannotCarry`
says why and what to do: the caller leaves the object untouched, never copies with less.

Pure functions, shared by the function (`modes/metadata.py`) and the tools (`untag`, `check`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from . import cos_facts

# A percent sign and two hex digits: how a server that keeps its headers ASCII may answer UTF-8.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


class CannotCarry(ValueError):
    """The copy cannot keep what the object has: leave the object untouched."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem, self.fix = problem, fix


class Kept(NamedTuple):  # a NamedTuple: immutable, and cheaper to define than a dataclass at cold start
    """What the copy sends besides the labels: the user's metadata as text to send (names
    lower-cased) and the encryption and ACL headers (raw header names)."""

    metadata: dict[str, str]
    headers: dict[str, str]


def keep(
    head: Mapping[str, str],
    user_meta: Mapping[str, str],
    read_acl: Callable[[], Any],
    event_meta: Mapping[str, str] | None = None,
) -> Kept:
    """What the copy must send to keep the object as it is, or `CannotCarry`. The checks that
    need no call come first; `read_acl` (GET Object acl) is called last, and its errors propagate."""
    sse = encryption_headers(head)
    metadata = metadata_to_send(user_meta, event_meta)
    return Kept(metadata, {**sse, **acl_headers(read_acl())})


def encryption_headers(head: Mapping[str, str]) -> dict[str, str]:
    """The encryption headers that keep the object's server-side encryption on a copy ({}: none)."""
    lowered = {name.lower(): value for name, value in head.items()}
    if cos_facts.SSE_CUSTOMER_HEADER in lowered:
        raise CannotCarry(
            "the object is encrypted with a customer key (SSE-C)",
            "a copy needs that key and the function never holds it; label it another way, or store it "
            "with SSE-COS (AES256) or SSE-KMS",
        )
    algorithm = lowered.get(cos_facts.SSE_HEADER)
    if algorithm is None:
        if any(name in lowered for name in cos_facts.SSE_KMS_HEADERS):
            raise CannotCarry("the object names a KMS key without an encryption algorithm", "check the object")
        return {}
    if algorithm not in cos_facts.SSE_ALGORITHMS:
        raise CannotCarry(
            f"the object's encryption {algorithm!r} is not one the function can carry "
            f"({', '.join(cos_facts.SSE_ALGORITHMS)})",
            "the object is left as it is; report this value to the project",
        )
    out = {cos_facts.SSE_HEADER: algorithm}
    if algorithm == "cos/kms":
        out.update({name: lowered[name] for name in cos_facts.SSE_KMS_HEADERS if name in lowered})
    elif any(name in lowered for name in cos_facts.SSE_KMS_HEADERS):
        raise CannotCarry(f"the object names a KMS key with encryption {algorithm!r}", "check the object")
    return out


def acl_headers(acl: Any) -> dict[str, str]:
    """The `x-cos-grant-*` headers that give the copy the ACL GET Object acl answered (the SDK's
    `get_object_acl` dict: `AccessControlList.Grant`, each with a `Grantee` and a `Permission`)."""
    listed = (acl.get("AccessControlList") or {}) if isinstance(acl, Mapping) else None
    grants = listed.get("Grant") if isinstance(listed, Mapping) else None
    grants = [grants] if isinstance(grants, Mapping) else grants
    if not isinstance(grants, list) or not grants:
        raise CannotCarry("GET Object acl answered no grant", "the object is left as it is; check its ACL")
    by_header: dict[str, list[str]] = {}
    for grant in grants:
        grantee = grant.get("Grantee") if isinstance(grant, Mapping) else None
        permission = grant.get("Permission") if isinstance(grant, Mapping) else None
        header = cos_facts.GRANT_HEADERS.get(permission) if isinstance(permission, str) else None
        who = _grantee(grantee)
        if header is None or who is None:
            raise CannotCarry(
                f"the object's ACL holds a grant the function cannot carry ({grant!r:.200})",
                "the object is left as it is; report this grant to the project",
            )
        if who not in by_header.setdefault(header, []):
            by_header[header].append(who)
    return {header: ",".join(who) for header, who in by_header.items()}


def _grantee(grantee: Any) -> str | None:
    if not isinstance(grantee, Mapping):
        return None
    for field, form in (("ID", "id"), ("URI", "uri")):
        value = grantee.get(field)
        if isinstance(value, str) and value and '"' not in value and "," not in value and value.isprintable():
            return f'{form}="{value}"'
    return None


def metadata_to_send(head_meta: Mapping[str, str], event_meta: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each user metadata value as the text to send back so that HEAD reads it as before.

    How COS answers a non-ASCII value is undocumented, so both forms are handled:
    - raw UTF-8 bytes, which HTTP clients decode as latin-1: the text is those bytes read as
      UTF-8 (the SDK sends text as UTF-8). Bytes that are not UTF-8 cannot be sent back as they
      are by the SDK: `CannotCarry`.
    - percent-encoded UTF-8 (`%E5%B0%8F`): the same ASCII could be a user's literal text. The
      upload's event (`event_meta`) tells which: the decoded text there means COS encodes on the
      way out, so the text goes back decoded; the same ASCII there is the user's own text, sent
      as it is; no word from the event leaves it unsure: `CannotCarry`.
    """
    event = {name.lower(): value for name, value in (event_meta or {}).items()}
    out: dict[str, str] = {}
    for name, value in head_meta.items():
        lowered = name.lower()
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            out[lowered] = value  # already text (not as read off the wire): sent as it is
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CannotCarry(
                f"the metadata value of {lowered} is not UTF-8, so it cannot be sent back unchanged",
                f"rewrite {lowered} as UTF-8 text",
            ) from None
        if text.isascii() and _PERCENT_ESCAPE.search(text):
            try:
                decoded = unquote(text, errors="strict")
            except UnicodeDecodeError:
                decoded = text  # escapes that are not UTF-8: no server encoded this, it is the user's text
            if not decoded.isascii():
                if event.get(lowered) == decoded:
                    text = decoded  # the upload held the decoded text: COS encodes it on the way out
                elif event.get(lowered) != text:  # the same text in the event: the user's own, sent as it is
                    raise CannotCarry(
                        f"the metadata value of {lowered} reads percent-encoded, and nothing tells whether "
                        "that is how COS answers the UTF-8 text or the user's own text",
                        f"the object is left as it is; relabel it from its upload event, or rename {lowered}",
                    )
        out[lowered] = text
    return out
