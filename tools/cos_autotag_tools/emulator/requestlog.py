"""A thread-safe log of every request the emulator answered, for test assertions."""

from __future__ import annotations

import threading
from collections.abc import Callable
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


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, matches: Callable[[RequestRecord], bool]) -> int:
        """How many logged requests `matches` accepts."""
        with self._lock:
            records = list(self._records)
        return sum(1 for r in records if matches(r))
