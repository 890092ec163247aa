"""The idempotency record: what the store holds for one upload, and how it is written and read.

The format is the one every deployed version wrote, so containers of two versions share records:
compact JSON with sorted keys,
- `{"expires_at_ms": <epoch ms>, "owner": "<claim id>", "status": "INPROGRESS"}` while a delivery
  labels the upload (`expires_at_ms` is when its invocation's window ends), and
- `{"completed_at_ms": <epoch ms>, "status": "COMPLETED"}` once it is labeled.

A record is read as untrusted bytes: anyone with access to the Redis can write anything under our
keys. Reading refuses what this function did not write without ever raising anything but
`StoreRecordUnreadable`: no float (`1e400` would become infinity, and `int()` of it overflows), no
number longer than an epoch in ms, no nesting, no oversized value.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from ..errors import StoreRecordUnreadable

# Our records are under 100 bytes; anything far larger is not ours, and is not worth parsing.
MAX_RECORD_BYTES = 1024
# Epoch milliseconds have 13 digits until the year 2286; 19 fit in a signed 64-bit integer.
_MAX_INT_DIGITS = 19


class Status(enum.Enum):
    IN_PROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class IdempotencyRecord:
    status: Status
    expires_at_ms: int = 0  # IN_PROGRESS: when the claiming invocation's window ends
    owner: str = ""  # IN_PROGRESS: which claim wrote it
    completed_at_ms: int = 0  # COMPLETED

    @classmethod
    def in_progress(cls, expires_at_ms: int, owner: str) -> IdempotencyRecord:
        return cls(Status.IN_PROGRESS, expires_at_ms=expires_at_ms, owner=owner)

    @classmethod
    def completed(cls, completed_at_ms: int) -> IdempotencyRecord:
        return cls(Status.COMPLETED, completed_at_ms=completed_at_ms)

    def is_expired(self, now_ms: int) -> bool:
        return self.status is Status.IN_PROGRESS and self.expires_at_ms <= now_ms

    def encode(self) -> bytes:
        fields: dict[str, Any] = {"status": self.status.value}
        if self.status is Status.IN_PROGRESS:
            fields.update(expires_at_ms=self.expires_at_ms, owner=self.owner)
        else:
            fields.update(completed_at_ms=self.completed_at_ms)
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, raw: object) -> IdempotencyRecord:
        """Read a stored value; whatever is wrong with it, `StoreRecordUnreadable` says what."""
        try:
            return _decode(raw)
        except StoreRecordUnreadable:
            raise
        except Exception as error:  # untrusted bytes: any failure means "not ours"
            raise StoreRecordUnreadable(f"not one this function wrote ({type(error).__name__})") from None


def _decode(raw: object) -> IdempotencyRecord:
    if not isinstance(raw, bytes | bytearray | str):
        raise StoreRecordUnreadable(f"not one this function wrote (a {type(raw).__name__}, not a string)")
    if len(raw) > MAX_RECORD_BYTES:
        raise StoreRecordUnreadable(f"not one this function wrote ({len(raw)} bytes)")
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    state = json.loads(text, parse_int=_small_int, parse_float=_no_float, parse_constant=_no_float)
    if not isinstance(state, dict):
        raise StoreRecordUnreadable(f"not one this function wrote (a JSON {type(state).__name__})")
    status = state.get("status")
    if status == Status.COMPLETED.value:
        return IdempotencyRecord.completed(_int_field(state, "completed_at_ms", required=False))
    if status == Status.IN_PROGRESS.value:
        owner = state.get("owner", "")
        if not isinstance(owner, str):
            raise StoreRecordUnreadable("not one this function wrote (owner is not a string)")
        return IdempotencyRecord.in_progress(_int_field(state, "expires_at_ms", required=True), owner)
    shown = status if isinstance(status, str) else type(status).__name__
    raise StoreRecordUnreadable(f"not one this function wrote (unknown status {shown[:32]!r})")


def _int_field(state: dict[str, Any], name: str, required: bool) -> int:
    value = state.get(name)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreRecordUnreadable(f"not one this function wrote ({name} is not an integer)")
    return value


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise StoreRecordUnreadable(f"not one this function wrote (a {len(text)}-digit number)")
    return int(text)


def _no_float(text: str) -> float:
    raise StoreRecordUnreadable(f"not one this function wrote (a number that is not an integer: {text[:24]})")
