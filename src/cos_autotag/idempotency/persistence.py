"""The record store: the persistence layer the state machine sits on (Powertools' BasePersistenceLayer).

Five operations on opaque bytes under a key, each atomic in the store and each bounded by the
deadline it is given. The state machine (guard.py) decides what the bytes mean; an adapter
(redis_store.py) only moves them. A failure of any kind raises `StoreUnavailable`.
"""

from __future__ import annotations

from typing import Protocol

from ..retry import Deadline


class RecordStore(Protocol):
    def put_if_absent(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        """Write `value` with a time to live if nothing is stored under `key`; whether it was written."""
        ...

    def get(self, key: str, deadline: Deadline) -> bytes | None:
        """What is stored under `key`, or None."""
        ...

    def put(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> None:
        """Write `value` with a time to live, whatever was stored."""
        ...

    def compare_and_set(self, key: str, expected: bytes, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        """Replace the value only if it is still exactly `expected`; whether it was replaced."""
        ...

    def compare_and_delete(self, key: str, expected: bytes, deadline: Deadline) -> bool:
        """Delete the value only if it is still exactly `expected`; whether it was deleted."""
        ...
