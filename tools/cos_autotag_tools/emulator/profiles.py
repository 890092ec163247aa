"""The contested COS rules, as switchable profiles of the emulator's own.

Tencent's pages disagree on a few rules (see the project's fact sheet, Addendum 3), and what COS
does where a page is silent is unknown. The function must work under every reading, so the
emulator plays each one, with its own implementation: it never asks the function's module
(`cos_autotag.cos_facts`) whether a tag or a metadata set is valid, since a rule the two shared
could never disagree with itself and no test of it could fail.

- `tag_rule`: which characters and lengths PUT Object tagging (and `x-cos-tagging`) accepts.
  `utf8` is the overview page (436/35665): UTF-8 letters, digits, space and `+ - = . _ : / @`,
  key 1-127 characters, value 1-255 characters. `strict` is the API page (436/42997, 436/35709):
  ASCII letters, digits, space and `+ - _ = . : /` only, key shorter than 128 bytes, value
  shorter than 256 bytes (it may be empty). A violation answers 400 InvalidTag.
- `metadata_encoding`: how non-ASCII `x-cos-meta-*` values come back on HEAD and GET. `raw`: the
  UTF-8 bytes as they were sent (what the emulator always did). `percent`: percent-encoded UTF-8
  (`%E7%8C%AB`), as a server that keeps response headers ASCII would do. The percent profile is
  deliberately asymmetric: on input it stores what the client sent, byte for byte, and decodes
  nothing (no page says COS decodes metadata, and PUT Object 436/7749 states no rule), so a
  client that sends a percent-encoded value back gets it back encoded once more only in the
  sense that it is now stored as that ASCII text. A value that is already ASCII is answered as
  stored, `%` included, under both profiles.
- `unbound_answer`: what detect-label answers on a bucket not bound to Cloud Infinite (the
  pages name the requirement, not the error): `403` an XML error (`CINotEnabled`), `404` an XML
  `ResourceNotFound`, or `200` with an HTML page instead of the XML result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

TAG_RULES = ("utf8", "strict")
METADATA_ENCODINGS = ("raw", "percent")
UNBOUND_ANSWERS = ("403", "404", "200")

# How many tags an object may have (both pages agree).
TAGS_PER_OBJECT = 10
# x-cos-meta-* names and values together, counted in UTF-8 bytes (PUT Object - Copy: 2 KB).
USER_METADATA_MAX_BYTES = 2048

_UTF8_PUNCTUATION = frozenset(" +-=._:/@")
_STRICT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-_=.:/")
# Printable ASCII other than '%' passes through the percent profile unchanged.
_PERCENT_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@dataclass(frozen=True)
class Profile:
    """One reading of each contested rule. The default is what the emulator always played."""

    tag_rule: str = "utf8"
    metadata_encoding: str = "raw"
    unbound_answer: str = "403"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("tag_rule", TAG_RULES),
            ("metadata_encoding", METADATA_ENCODINGS),
            ("unbound_answer", UNBOUND_ANSWERS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    @property
    def name(self) -> str:
        """A short id for test parameters: `utf8-raw-403`."""
        return f"{self.tag_rule}-{self.metadata_encoding}-{self.unbound_answer}"

    def replace(self, **changes: str) -> Profile:
        return dataclasses.replace(self, **changes)

    # --- tags -----------------------------------------------------------------------------------

    def tag_problem(self, text: str, *, is_key: bool) -> str | None:
        """Why `text` is not a valid tag key (or value) under this profile, or None."""
        what = "key" if is_key else "value"
        if self.tag_rule == "strict":
            size = len(text.encode("utf-8"))
            limit = 128 if is_key else 256
            if (is_key and size == 0) or size >= limit:
                return f"tag {what} must be {'1' if is_key else '0'}-{limit - 1} bytes; it is {size}"
            bad = sorted({ch for ch in text if ch not in _STRICT_CHARS})
            if bad:
                return f"tag {what} may hold only ASCII letters, digits, space and + - _ = . : /; not {''.join(bad)!r}"
            return None
        limit = 127 if is_key else 255
        if not 1 <= len(text) <= limit:
            return f"tag {what} must be 1-{limit} characters; it is {len(text)}"
        bad = sorted({ch for ch in text if not (ch.isalnum() or ch in _UTF8_PUNCTUATION)})
        if bad:
            return f"tag {what} may hold only letters, digits, space and + - = . _ : / @; not {''.join(bad)!r}"
        return None

    # --- metadata -------------------------------------------------------------------------------

    def metadata_out(self, value: str) -> str:
        """A stored `x-cos-meta-*` value as HEAD and GET answer it."""
        if self.metadata_encoding == "percent" and not value.isascii():
            return quote(value, safe=_PERCENT_SAFE)
        return value


def metadata_size(pairs: Iterable[tuple[str, str]]) -> int:
    """User metadata's size as the emulator counts it: names and values in UTF-8 bytes."""
    return sum(len(name.encode("utf-8")) + len(value.encode("utf-8")) for name, value in pairs)


DEFAULT_PROFILE = Profile()
# A small set in which every value of every rule appears: parametrize integration tests with it
# (tests/support/profiles.py) so that each reading is played at least once.
COS_PROFILES = (
    DEFAULT_PROFILE,
    Profile(tag_rule="strict", metadata_encoding="percent", unbound_answer="404"),
    Profile(tag_rule="strict", metadata_encoding="raw", unbound_answer="200"),
    Profile(tag_rule="utf8", metadata_encoding="percent", unbound_answer="200"),
)
