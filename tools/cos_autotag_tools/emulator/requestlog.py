"""What the emulator logs of every request it answered, for test assertions.

The log is a plain list: appending, copying it with `list(...)` and clearing it are each one
step under CPython's global interpreter lock, so server threads need no lock of their own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    op: str  # PutObject, GetObject, DetectLabel, ...
    method: str
    bucket: str | None
    key: str | None
    status: int
    error_code: str | None
    request_id: str
    timestamp: float  # time.time() when the request arrived
    duration_s: float
    secret_id: str | None  # who signed it, when the signature verified
