"""One record's run: the values every step needs, carried together instead of as six arguments.

A run holds the record, the key as it exists in COS, the deadline, the result being filled in
and the logger bound to the record. `call` makes one COS/CI call with retries inside the
deadline and counts it; `resolve` reads the object under the first reading of its key that
exists. `claimed` says whether the run holds the upload in the strict store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import CosCallError
from .events import CosRecord
from .outcome import Outcome, RecordResult
from .retry import MAX_ATTEMPTS, Deadline, call_with_retry

T = TypeVar("T")


class RecordRun:
    """What every step of one record needs (see the module's docstring). A plain class: it is
    made once per record and never compared, so a dataclass would only cost cold-start time."""

    __slots__ = ("claimed", "deadline", "log", "record", "result", "started")

    def __init__(self, record: CosRecord, deadline: Deadline, log: Any) -> None:
        self.record, self.deadline = record, deadline
        self.log = log.bind(bucket=record.bucket, key=record.key, event_name=record.event_name)
        self.result = RecordResult(record.bucket, record.key, Outcome.LABELED)
        self.started = time.monotonic()
        self.claimed = False  # the run holds the upload in the strict store

    @property
    def key(self) -> str:
        """The key as it exists in COS: the event's reading, or the one `resolve` found."""
        return self.result.key

    def call(self, operation: str, fn: Callable[[], T], max_attempts: int = MAX_ATTEMPTS) -> T:
        def attempt() -> T:
            self.result.calls[operation] += 1
            return fn()

        def on_retry(error: BaseException, attempt_no: int, delay: float) -> None:
            self.log.warning(
                "retrying after a retryable error",
                operation=operation,
                attempt=attempt_no,
                delay_s=round(delay, 3),
                error_code=getattr(error, "code", ""),
                request_id=getattr(error, "request_id", ""),
            )

        return call_with_retry(attempt, self.deadline, on_retry=on_retry, max_attempts=max_attempts)

    def resolve(self, operation: str, read: Callable[[str], T]) -> T:
        """`read(key)` under the first of the event's readings of the key that exists.

        COS does not document how it encodes keys in events, so an ambiguous key has other
        readings; the one that answers becomes the run's key for every later call.
        """
        keys = (self.record.key, *self.record.key_alternatives)
        for index, key in enumerate(keys):
            try:
                state = self.call(operation, lambda k=key: read(k))  # type: ignore[misc]
            except CosCallError as error:
                if error.not_found and index + 1 < len(keys):
                    continue
                raise
            if key != self.record.key:
                self.log.info("resolved the key through another reading of the event", resolved_key=key)
                self.result.key = key
            return state
        raise AssertionError("unreachable: keys is never empty")

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)
