"""The request and response values the HTTP layer hands to the COS operations and back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .xml_bodies import XML_CONTENT_TYPE


@dataclass
class Request:
    method: str
    raw_path: str  # percent-encoded, as sent, without the query
    path: str  # decoded: what COS signs and what the key is taken from
    raw_query: str
    query: list[tuple[str, str]]  # decoded pairs, in order, blank values kept
    headers: dict[str, str]  # lower-cased names; values are latin-1 text holding the raw bytes
    body: bytes
    client_ip: str
    received_at: float
    request_id: str
    bucket: str | None = None
    region: str | None = None
    key: str | None = None  # None for bucket-level requests
    secret_id: str | None = None  # set once the signature verified
    authorization: str = ""  # the signature as sent (header value, or rebuilt from the query)
    # The body is read from the connection only when the service asks (after the signature is
    # checked): the HTTP layer sets `body_reader(limit)`, which answers at most limit + 1 bytes
    # (None: no limit) or raises BodyUnreadable. `content_length` is the declared length, None
    # for a chunked body.
    body_reader: Callable[[int | None], bytes] | None = None
    content_length: int | None = 0

    def load_body(self, limit: int | None = None) -> bytes:
        """Read the body (once); at most `limit` + 1 bytes, so that a caller can tell it is too long."""
        if self.body_reader is not None:
            reader, self.body_reader = self.body_reader, None
            self.body = reader(limit)
        return self.body

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def has_param(self, name: str) -> bool:
        return any(key == name for key, _ in self.query)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def header_text(self, name: str) -> str | None:
        """A header value decoded as UTF-8 (clients send non-ASCII values as raw UTF-8 bytes)."""
        value = self.headers.get(name.lower())
        return None if value is None else latin1_to_text(value)


class BodyUnreadable(Exception):
    """The body could not be read: a bad chunked encoding, or the client went away."""


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # values are text; see text_to_latin1
    body: bytes = b""
    error_code: str | None = None


def xml_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"Content-Type": XML_CONTENT_TYPE, **(headers or {})}, body)


def latin1_to_text(value: str) -> str:
    """Header text as http.server decodes it (latin-1) back to what the client meant (UTF-8)."""
    raw = value.encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def text_to_latin1(value: str) -> str:
    """The inverse: a value to send as a header, non-ASCII characters as raw UTF-8 bytes."""
    return value if value.isascii() else value.encode("utf-8").decode("latin-1")
