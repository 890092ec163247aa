"""A thread-safe log of every request the emulator answered, for test assertions."""

from __future__ import annotations

import threading
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

    def count(
        self,
        op: str | None = None,
        key: str | None = None,
        since: float | None = None,
        status: int | None = None,
        bucket: str | None = None,
    ) -> int:
        """How many logged requests match every filter given."""
        with self._lock:
            records = list(self._records)
        return sum(
            1
            for r in records
            if (op is None or r.op == op)
            and (key is None or r.key == key)
            and (since is None or r.timestamp >= since)
            and (status is None or r.status == status)
            and (bucket is None or r.bucket == bucket)
        )
