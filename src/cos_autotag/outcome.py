"""What happened to one record: an outcome, a reason, and the record's result.

Outcomes and reasons are named constants so that the handler's summary, the log lines and the
backfill's report count the same things under the same names.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Any


class Outcome(str, enum.Enum):
    LABELED = "labeled"  # labels (or, when none reached the threshold, the marker alone) written
    SKIPPED = "skipped"  # nothing to do for this object, decided for good: a retry would decide the same
    DUPLICATE = "duplicate"  # this upload was labeled already: the delivery cost a read at most
    FAILED = "failed"  # see `retryable`

    def __str__(self) -> str:  # the plain word in messages, on every Python version
        return self.value


class Reason:
    """Why a record was skipped, a duplicate, or failed, where the reason is not an error's own text."""

    # eligibility (decided before any paid call)
    OUTSIDE_INCLUDED_PREFIXES = "outside included prefixes"
    EXCLUDED_PREFIX = "excluded prefix"
    OUTSIDE_INCLUDED_SUFFIXES = "outside included suffixes"
    EXCLUDED_SUFFIX = "excluded suffix"
    EMPTY = "empty object"
    UNKNOWN_TYPE = "unknown type"
    NOT_AN_IMAGE = "not a JPEG or PNG"
    TOO_LARGE = "too large"
    TOO_SMALL = "too small"
    ARCHIVED = "archived (restore it first)"
    # the object, as read
    OBJECT_GONE = "object gone"
    NO_ROOM_FOR_TAGS = "no room for tags"
    NO_ROOM_FOR_METADATA = "no room for metadata"
    CHANGED_DURING_PROCESSING = "object changed during processing"
    MARKER_TAG_TAKEN = (
        "marker tag taken: the object's own tag `autotag` is not the function's marker; rename that tag "
        "(the function keeps the key `autotag` for its marker) and upload again or run `cos-autotag backfill`"
    )
    # metadata mode: what the copy could not keep, or headers that are the user's (the WARNING says the fix)
    MARKER_HEADER_TAKEN = "marker header is the user's (rename x-cos-meta-autotag)"
    LABELS_HEADER_TAKEN = "labels header is the user's (rename x-cos-meta-autotag-labels)"
    ACL_UNREADABLE = "ACL unreadable (allow cos:GetObjectACL)"
    CANNOT_KEEP = "left untouched: a copy could not keep what the object has"
    # the guard
    COMPLETED_IN_STORE = "completed in the idempotency store"
    MARKER_IN_EVENT = "marker in the event"
    MARKER_ON_OBJECT = "marker on the object"
    LABELED_MEANWHILE = "labeled by another delivery of this upload meanwhile"

    @staticmethod
    def misconfigured(code: str, operation: str) -> str:
        """A failure whose fix is in the deployment, not in the object (the result's `fix` says what)."""
        return f"misconfigured ({code} on {operation})"

    @staticmethod
    def rejected_by_detect_label(code: str) -> str:
        return f"rejected by detect-label ({code})"


class RecordResult:
    """One record's result: the summary's, the log line's and the backfill report's.

    A plain slotted class: made once per record and filled in by the steps, so a dataclass
    would only add cold-start time."""

    __slots__ = (
        "bucket",
        "calls",
        "duration_ms",
        "error_code",
        "fix",
        "key",
        "labels",
        "outcome",
        "reason",
        "request_id",
        "retryable",
    )

    def __init__(
        self,
        bucket: str,
        key: str,
        outcome: Outcome,
        reason: str = "",
        labels: list[dict[str, Any]] | None = None,
        calls: Counter[str] | None = None,
        error_code: str = "",
        request_id: str = "",
        retryable: bool = False,
        duration_ms: int = 0,
        fix: str = "",
    ) -> None:
        self.bucket, self.key, self.outcome, self.reason = bucket, key, outcome, reason
        self.labels: list[dict[str, Any]] = [] if labels is None else labels
        self.calls: Counter[str] = Counter() if calls is None else calls
        self.error_code, self.request_id, self.retryable = error_code, request_id, retryable
        self.duration_ms = duration_ms
        # For a misconfiguration: what to fix, said once per invocation by the handler.
        self.fix = fix

    def __repr__(self) -> str:
        return f"RecordResult({', '.join(f'{name}={getattr(self, name)!r}' for name in self.__slots__)})"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "outcome": str(self.outcome)}
        if self.reason:
            out["reason"] = self.reason
        if self.labels:
            out["labels"] = self.labels
        out["calls"] = dict(self.calls)
        if self.error_code:
            out["error_code"], out["request_id"] = self.error_code, self.request_id
        if self.fix:
            out["fix"] = self.fix
        out["duration_ms"] = self.duration_ms
        return out
