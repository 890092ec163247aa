"""The state machine (Powertools' BaseIdempotencyHandler) on top of a `RecordStore`.

One record per upload, under `autotag:idem:<sha256 of idempotency_key>`:
- claim: put-if-absent of {INPROGRESS, expires_at_ms, owner} with a TTL of the in-progress
  window → NEW. The window is the invocation's remaining time, at least 1 s (a 0 would mean no
  expiry and block every retry: Powertools bug #4759), so a crashed invocation stops blocking
  once it passes. If a record exists: COMPLETED → DUPLICATE; INPROGRESS within its window →
  IN_PROGRESS; INPROGRESS past its window (a key that outlived it) → taken over with a
  compare-and-set against the exact bytes read → NEW.
- complete: overwrite with {COMPLETED} and the completed TTL.
- release: compare-and-delete of the exact record this claim wrote, so a slow invocation never
  deletes the claim of one that took over from it.

Every operation (all its store calls together) runs under one deadline: the caller's, cut to
`OPERATION_BUDGET_S`, so that a store that stalls leaves the invocation time to label through
the object marker. Any failure, whatever it is, leaves as `StoreUnavailable`. After a failure
the store is not asked again for `BREAKER_OPEN_S` (a circuit breaker per warm container): the
records meanwhile fall back to the marker at once instead of each spending the budget.
"""

from __future__ import annotations

import enum
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

from .. import cos_facts
from ..errors import StoreRecordUnreadable, StoreRefused, StoreUnavailable
from ..events import CosRecord
from ..retry import Deadline
from .persistence import RecordStore
from .record import IdempotencyRecord, Status

T = TypeVar("T")

KEY_PREFIX = "autotag:idem:"
# The smallest in-progress window (Powertools #4759) and the largest an SCF invocation can need.
MIN_IN_PROGRESS_S = 1.0
MAX_IN_PROGRESS_S = float(cos_facts.SCF_TIMEOUT_MAX_S)
# A Redis in the same VPC answers each command in about a millisecond; a claim sends at most 9
# (with connect, AUTH and SELECT). One second for all of them is ample, and leaves the rest of the
# invocation to the object marker when the store is in trouble.
OPERATION_BUDGET_S = 1.0
# Put-if-absent / get / compare-and-set rounds before giving up on a record that keeps changing.
CLAIM_ROUNDS = 3
# After the store fails, a warm container does not ask it again for this long: without it, every
# record of every invocation would spend its budget on a store that is down before falling back.
BREAKER_OPEN_S = 30.0


class Claim(enum.Enum):
    NEW = "new"  # this delivery owns the upload: go on
    DUPLICATE = "duplicate"  # already labeled: do nothing
    IN_PROGRESS = "in_progress"  # another delivery is labeling it right now


class StrictStore(Protocol):
    """What the pipeline calls: a store that records uploads outside the object."""

    def claim(self, record: CosRecord, deadline: Deadline) -> Claim: ...

    def complete(self, record: CosRecord, deadline: Deadline) -> None: ...

    def release(self, record: CosRecord, deadline: Deadline) -> None: ...


def idempotency_key(record: CosRecord) -> str:
    """Bucket, key and the upload's identity: one record per upload, not per object."""
    return f"{record.bucket}/{record.key}#{record.identity or 'current'}"


def record_key(record: CosRecord) -> str:
    """The store key: hashed, so that object keys of any length and alphabet make one short key."""
    return KEY_PREFIX + hashlib.sha256(idempotency_key(record).encode("utf-8")).hexdigest()


def in_progress_ms(remaining_s: float) -> int:
    """The in-progress window: the invocation's remaining time, never 0 (no expiry), never absurd."""
    seconds = MIN_IN_PROGRESS_S if math.isnan(remaining_s) else remaining_s
    return math.ceil(min(MAX_IN_PROGRESS_S, max(MIN_IN_PROGRESS_S, seconds)) * 1000)


class IdempotencyGuard:
    """`StrictStore` on any `RecordStore`: claim → complete, or claim → release."""

    def __init__(
        self,
        records: RecordStore,
        ttl_s: int,  # how long a completed upload is remembered: the setting AUTOTAG_IDEMPOTENCY_TTL_SECONDS
        *,
        budget_s: float = OPERATION_BUDGET_S,
        clock_ms: Callable[[], int] | None = None,
        new_owner: Callable[[], str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        breaker_open_s: float = BREAKER_OPEN_S,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"the completed TTL must be at least 1 s, not {ttl_s}")
        self.records, self.ttl_s, self.budget_s = records, ttl_s, budget_s
        # Wall-clock milliseconds: records are compared across containers.
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._new_owner = new_owner or (lambda: uuid.uuid4().hex)
        # The exact record each live claim of this container wrote: release deletes only that.
        self._claims: dict[str, bytes] = {}
        self._claims_lock = threading.Lock()
        self._monotonic, self._breaker_open_s = monotonic, breaker_open_s
        self._skip_until = 0.0  # monotonic time before which the store is not asked (breaker open)

    def __repr__(self) -> str:
        return f"IdempotencyGuard({self.records!r}, ttl_s={self.ttl_s})"

    # --- StrictStore ------------------------------------------------------------------------------

    def claim(self, record: CosRecord, deadline: Deadline) -> Claim:
        key = record_key(record)
        window_ms = in_progress_ms(deadline.remaining())
        return self._run("claim", key, deadline, lambda op: self._claim(key, window_ms, op))

    def complete(self, record: CosRecord, deadline: Deadline) -> None:
        key = record_key(record)
        with self._claims_lock:
            self._claims.pop(key, None)
        done = IdempotencyRecord.completed(self._clock_ms()).encode()
        self._run("complete", key, deadline, lambda op: self.records.put(key, done, self.ttl_s * 1000, op))

    def release(self, record: CosRecord, deadline: Deadline) -> None:
        key = record_key(record)
        with self._claims_lock:
            mine = self._claims.pop(key, None)
        if mine is None:
            return  # not claimed by this container: nothing of ours to delete
        self._run("release", key, deadline, lambda op: self.records.compare_and_delete(key, mine, op))

    # --- the state machine ------------------------------------------------------------------------

    def _claim(self, key: str, window_ms: int, op: Deadline) -> Claim:
        owner = self._new_owner()
        for _ in range(CLAIM_ROUNDS):
            mine = IdempotencyRecord.in_progress(self._clock_ms() + window_ms, owner).encode()
            if self.records.put_if_absent(key, mine, window_ms, op):
                return self._claimed(key, mine)
            current = self.records.get(key, op)
            if current is None:
                continue  # it expired between the two calls: try to put it again
            state = IdempotencyRecord.decode(current)
            if state.status is Status.COMPLETED:
                return Claim.DUPLICATE
            if state.owner == owner:
                # Our own put landed but its reply was lost, and the transport sent it again.
                return self._claimed(key, current)
            if not state.is_expired(self._clock_ms()):
                return Claim.IN_PROGRESS
            # Its invocation's window has passed but the key outlived it: take it over, unless
            # someone else changed the record since we read it (then look again).
            if self.records.compare_and_set(key, current, mine, window_ms, op):
                return self._claimed(key, mine)
        # The record changed under us every round: another delivery is busy with this upload.
        return Claim.IN_PROGRESS

    def _claimed(self, key: str, value: bytes) -> Claim:
        with self._claims_lock:
            self._claims[key] = value
        return Claim.NEW

    def _run(self, action: str, key: str, deadline: Deadline, operation: Callable[[Deadline], T]) -> T:
        """One operation under one deadline; every failure leaves as StoreUnavailable."""
        remaining = deadline.remaining()
        if not remaining > 0:
            raise StoreUnavailable(f"idempotency store not asked to {action}: no time left before the deadline")
        wait = self._skip_until - self._monotonic()
        if wait > 0:
            raise StoreUnavailable(
                f"idempotency store not asked to {action}: it failed moments ago (asked again in {wait:.0f} s)"
            )
        op = Deadline(min(remaining, self.budget_s))
        try:
            return operation(op)
        except StoreRecordUnreadable as error:
            # One bad record, not a store that is down: the breaker stays closed.
            raise StoreRecordUnreadable(f"the idempotency record {key} is {error}") from None
        except StoreRefused:
            raise  # Redis answered (an error reply): it is up, so the breaker stays closed
        except StoreUnavailable:
            self._trip()
            raise
        except Exception as error:  # the pipeline's fallback to the marker must catch all
            self._trip()
            raise StoreUnavailable(f"idempotency store failed to {action}: {type(error).__name__}") from None

    def _trip(self) -> None:
        self._skip_until = self._monotonic() + self._breaker_open_s
