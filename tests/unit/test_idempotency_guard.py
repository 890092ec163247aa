"""The idempotency state machine on an in-memory record store: one test per branch, no sockets.

The in-memory store keeps bytes with a time to live on a clock the test moves; the guard reads
the same clock, so expiry is decided by the test, never by waiting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from cos_autotag.errors import StoreRecordUnreadable, StoreUnavailable
from cos_autotag.events import CosRecord
from cos_autotag.idempotency import Claim, IdempotencyGuard, record_key
from cos_autotag.idempotency.guard import CLAIM_ROUNDS, KEY_PREFIX, in_progress_ms
from cos_autotag.idempotency.record import IdempotencyRecord, Status
from cos_autotag.retry import Deadline
from tests.support.idempotency import RECORDS_WE_DID_NOT_WRITE

TTL_S = 3600
START_MS = 1_800_000_000_000


@dataclass
class Clock:
    now_ms: int = START_MS

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class MemoryRecordStore:
    """`RecordStore` in a dict, with expiry on the test's clock; it records every call it gets."""

    clock: Clock
    values: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # key -> (value, expires_at_ms)
    calls: list[tuple[str, Deadline]] = field(default_factory=list)
    # Run inside a call, before it acts: stands for another container acting at that moment.
    before: dict[str, Callable[[], None]] = field(default_factory=dict)

    def _live(self, key: str) -> bytes | None:
        held = self.values.get(key)
        if held is None or held[1] <= self.clock():
            self.values.pop(key, None)
            return None
        return held[0]

    def _call(self, name: str, deadline: Deadline) -> None:
        self.calls.append((name, deadline))
        if name in self.before:
            self.before.pop(name)()

    def put_if_absent(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        self._call("put_if_absent", deadline)
        if self._live(key) is not None:
            return False
        self.values[key] = (value, self.clock() + ttl_ms)
        return True

    def get(self, key: str, deadline: Deadline) -> bytes | None:
        self._call("get", deadline)
        return self._live(key)

    def put(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> None:
        self._call("put", deadline)
        self.values[key] = (value, self.clock() + ttl_ms)

    def compare_and_set(self, key: str, expected: bytes, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        self._call("compare_and_set", deadline)
        if self._live(key) != expected:
            return False
        self.values[key] = (value, self.clock() + ttl_ms)
        return True

    def compare_and_delete(self, key: str, expected: bytes, deadline: Deadline) -> bool:
        self._call("compare_and_delete", deadline)
        if self._live(key) != expected:
            return False
        del self.values[key]
        return True

    # --- for the tests ---

    def record(self, record: CosRecord) -> IdempotencyRecord | None:
        raw = self._live(record_key(record))
        return None if raw is None else IdempotencyRecord.decode(raw)

    def ttl_ms(self, record: CosRecord) -> int:
        return self.values[record_key(record)][1] - self.clock()

    def plant(self, record: CosRecord, value: bytes, ttl_ms: int = 600_000) -> None:
        self.values[record_key(record)] = (value, self.clock() + ttl_ms)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


RECORD = CosRecord("photos-1250000000", "ap-guangzhou", "album/猫.jpg", "cos:ObjectCreated:Put", vid="v1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryRecordStore:
    return MemoryRecordStore(clock)


def container(store: MemoryRecordStore, owner: str = "") -> IdempotencyGuard:
    """One container's guard; containers share the store and the clock."""
    owners = iter([owner] * 10) if owner else None
    return IdempotencyGuard(
        store, ttl_s=TTL_S, clock_ms=store.clock, new_owner=(lambda: next(owners)) if owners else None
    )


def in_progress(expires_at_ms: int, owner: str) -> bytes:
    return IdempotencyRecord.in_progress(expires_at_ms, owner).encode()


# --- claim ---------------------------------------------------------------------------------------


def test_new_claim_writes_in_progress_with_the_remaining_time_as_window(store: MemoryRecordStore) -> None:
    assert container(store).claim(RECORD, Deadline(30)) is Claim.NEW
    state = store.record(RECORD)
    assert state is not None and state.status is Status.IN_PROGRESS and state.owner
    assert START_MS + 29_000 < state.expires_at_ms <= START_MS + 30_000
    assert 29_000 < store.ttl_ms(RECORD) <= 30_000  # the key dies with the window: a crash stops blocking
    assert store.names() == ["put_if_absent"]


def test_completed_record_is_duplicate(store: MemoryRecordStore) -> None:
    first = container(store)
    assert first.claim(RECORD, Deadline(30)) is Claim.NEW
    first.complete(RECORD, Deadline(30))
    assert container(store).claim(RECORD, Deadline(30)) is Claim.DUPLICATE
    assert first.claim(RECORD, Deadline(30)) is Claim.DUPLICATE


def test_live_in_progress_record_is_in_progress_and_left_alone(store: MemoryRecordStore) -> None:
    assert container(store).claim(RECORD, Deadline(30)) is Claim.NEW
    before = store.values[record_key(RECORD)]
    assert container(store).claim(RECORD, Deadline(30)) is Claim.IN_PROGRESS
    assert store.values[record_key(RECORD)] == before


def test_expired_in_progress_record_is_taken_over(store: MemoryRecordStore, clock: Clock) -> None:
    # The key outlived its window (written with a longer TTL, as Powertools does).
    store.plant(RECORD, in_progress(START_MS - 1, "crashed"))
    guard = container(store, owner="me")
    assert guard.claim(RECORD, Deadline(20)) is Claim.NEW
    state = store.record(RECORD)
    assert state is not None and state.owner == "me" and state.expires_at_ms == START_MS + 20_000
    assert store.ttl_ms(RECORD) == 20_000
    assert store.names() == ["put_if_absent", "get", "compare_and_set"]
    guard.release(RECORD, Deadline(20))  # the takeover is ours to release
    assert store.record(RECORD) is None


def test_takeover_lost_to_another_container_is_in_progress(store: MemoryRecordStore) -> None:
    store.plant(RECORD, in_progress(START_MS - 1, "crashed"))
    # Between our read and our compare-and-set, another container takes the record over.
    store.before["compare_and_set"] = lambda: store.plant(RECORD, in_progress(START_MS + 30_000, "faster"))
    assert container(store).claim(RECORD, Deadline(20)) is Claim.IN_PROGRESS
    state = store.record(RECORD)
    assert state is not None and state.owner == "faster"


def test_record_gone_between_put_and_get_is_put_again(store: MemoryRecordStore) -> None:
    store.plant(RECORD, in_progress(START_MS + 30_000, "finishing"))
    store.before["get"] = lambda: store.values.clear()  # it expired, or was released, meanwhile
    assert container(store).claim(RECORD, Deadline(20)) is Claim.NEW
    assert store.names() == ["put_if_absent", "get", "put_if_absent"]


def test_our_own_put_whose_reply_was_lost_is_ours(store: MemoryRecordStore) -> None:
    # The transport resent the put after a lost reply: the record already holds our owner.
    guard = container(store, owner="me")
    store.before["put_if_absent"] = lambda: store.plant(RECORD, in_progress(START_MS + 20_000, "me"), 20_000)
    assert guard.claim(RECORD, Deadline(20)) is Claim.NEW
    guard.release(RECORD, Deadline(20))
    assert store.record(RECORD) is None


def test_a_record_that_changes_every_round_gives_up_as_in_progress(store: MemoryRecordStore) -> None:
    def churn() -> None:
        store.plant(RECORD, in_progress(START_MS - 1, f"crashed-{len(store.calls)}"))
        store.before["compare_and_set"] = churn

    store.plant(RECORD, in_progress(START_MS - 1, "crashed"))
    store.before["compare_and_set"] = churn
    assert container(store).claim(RECORD, Deadline(20)) is Claim.IN_PROGRESS
    assert store.names().count("compare_and_set") == CLAIM_ROUNDS


# --- complete and release ------------------------------------------------------------------------


def test_complete_writes_completed_with_the_completed_ttl(store: MemoryRecordStore, clock: Clock) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    clock.now_ms += 5_000
    guard.complete(RECORD, Deadline(25))
    state = store.record(RECORD)
    assert state == IdempotencyRecord.completed(START_MS + 5_000)
    assert store.ttl_ms(RECORD) == TTL_S * 1000


def test_release_deletes_our_claim_so_a_retry_is_new(store: MemoryRecordStore) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    guard.release(RECORD, Deadline(30))
    assert store.record(RECORD) is None
    assert container(store).claim(RECORD, Deadline(30)) is Claim.NEW


def test_release_never_deletes_a_claim_someone_else_holds(store: MemoryRecordStore) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    theirs = in_progress(START_MS + 60_000, "took-over")
    store.plant(RECORD, theirs)  # our window passed and another delivery took the upload over
    guard.release(RECORD, Deadline(30))
    assert store.values[record_key(RECORD)][0] == theirs


def test_release_without_a_claim_asks_the_store_nothing(store: MemoryRecordStore) -> None:
    store.plant(RECORD, in_progress(START_MS + 60_000, "other-container"))
    container(store).release(RECORD, Deadline(30))
    assert store.calls == []
    assert store.record(RECORD) is not None


def test_release_after_complete_keeps_the_completed_record(store: MemoryRecordStore) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    guard.complete(RECORD, Deadline(30))
    guard.release(RECORD, Deadline(30))
    assert container(store).claim(RECORD, Deadline(30)) is Claim.DUPLICATE


# --- deadlines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["claim", "complete", "release"])
def test_no_time_left_is_store_unavailable_without_asking_the_store(store: MemoryRecordStore, operation: str) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    store.calls.clear()
    with pytest.raises(StoreUnavailable, match="no time left"):
        getattr(guard, operation)(RECORD, Deadline(0))
    assert store.calls == []


def test_a_little_time_left_still_gets_a_one_second_window(store: MemoryRecordStore) -> None:
    # Powertools #4759: a window of 0 would be a record with no expiry, blocking every retry.
    assert container(store).claim(RECORD, Deadline(0.2)) is Claim.NEW
    state = store.record(RECORD)
    assert state is not None and state.expires_at_ms == START_MS + 1_000
    assert store.ttl_ms(RECORD) == 1_000


@pytest.mark.parametrize(
    ("remaining_s", "window_ms"),
    [(0.0, 1000), (-5.0, 1000), (float("nan"), 1000), (float("-inf"), 1000), (12.3456, 12346), (1e9, 900_000)],
)
def test_in_progress_window_bounds(remaining_s: float, window_ms: int) -> None:
    assert in_progress_ms(remaining_s) == window_ms


def test_all_calls_of_one_claim_share_one_deadline_cut_to_the_budget(store: MemoryRecordStore) -> None:
    store.plant(RECORD, in_progress(START_MS - 1, "crashed"))
    guard = IdempotencyGuard(store, TTL_S, budget_s=0.5, clock_ms=store.clock)
    assert guard.claim(RECORD, Deadline(600)) is Claim.NEW
    deadlines = {id(deadline) for _, deadline in store.calls}
    assert len(store.calls) == 3 and len(deadlines) == 1
    assert 0 < store.calls[0][1].remaining() <= 0.5


def test_a_deadline_shorter_than_the_budget_is_kept(store: MemoryRecordStore) -> None:
    container(store).claim(RECORD, Deadline(0.3))
    assert store.calls[0][1].remaining() <= 0.3


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [RecursionError("deep"), OverflowError("big"), ValueError("bad"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x"),
     MemoryError(), KeyError("k"), TypeError("t")],
)  # fmt: skip
@pytest.mark.parametrize("operation", ["claim", "complete", "release"])
def test_any_failure_of_the_store_is_store_unavailable(
    store: MemoryRecordStore, error: Exception, operation: str
) -> None:
    guard = container(store)
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW

    def fail() -> None:
        raise error

    for name in ("put_if_absent", "put", "compare_and_delete"):
        store.before[name] = fail
    with pytest.raises(StoreUnavailable, match=type(error).__name__):
        getattr(guard, operation)(RECORD, Deadline(30))


@pytest.mark.parametrize("value", RECORDS_WE_DID_NOT_WRITE)
def test_a_record_we_did_not_write_is_unreadable_and_left_alone(store: MemoryRecordStore, value: bytes) -> None:
    store.plant(RECORD, value)
    with pytest.raises(StoreRecordUnreadable, match="not one this function wrote") as caught:
        container(store).claim(RECORD, Deadline(30))
    assert record_key(RECORD) in str(caught.value)
    assert isinstance(caught.value, StoreUnavailable)  # the pipeline's fallback catches it
    assert store.values[record_key(RECORD)][0] == value


# --- the record ------------------------------------------------------------------------------------


def test_record_format_is_the_one_deployed_versions_share() -> None:
    assert (
        in_progress(1_700_000_000_000, "ab12")
        == b'{"expires_at_ms":1700000000000,"owner":"ab12","status":"INPROGRESS"}'
    )
    assert (
        IdempotencyRecord.completed(1_700_000_000_000).encode()
        == b'{"completed_at_ms":1700000000000,"status":"COMPLETED"}'
    )
    assert IdempotencyRecord.decode(json.dumps({"status": "COMPLETED"}).encode()).status is Status.COMPLETED


def test_record_key_is_one_per_upload() -> None:
    key = record_key(RECORD)
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 64
    assert record_key(RECORD._replace(vid="v2")) != key
    assert record_key(RECORD._replace()) == key


# --- the breaker -----------------------------------------------------------------------------------


@dataclass
class Monotonic:
    now_s: float = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_after_a_failure_the_store_is_not_asked_again_until_the_breaker_closes(store: MemoryRecordStore) -> None:
    monotonic = Monotonic()
    guard = IdempotencyGuard(store, ttl_s=TTL_S, clock_ms=store.clock, monotonic=monotonic, breaker_open_s=30)

    def down() -> None:
        raise ConnectionRefusedError()

    store.before["put_if_absent"] = down
    with pytest.raises(StoreUnavailable, match="ConnectionRefusedError"):
        guard.claim(RECORD, Deadline(30))
    asked = len(store.calls)
    # Meanwhile every operation falls back at once, asking the store nothing.
    monotonic.now_s += 29
    with pytest.raises(StoreUnavailable, match="failed moments ago"):
        guard.claim(RECORD, Deadline(30))
    with pytest.raises(StoreUnavailable, match="failed moments ago"):
        guard.complete(RECORD, Deadline(30))
    assert len(store.calls) == asked
    # Once it closes, the store is asked again, and a store that is back answers.
    monotonic.now_s += 2
    assert guard.claim(RECORD, Deadline(30)) is Claim.NEW
    assert len(store.calls) > asked


def test_one_unreadable_record_does_not_open_the_breaker(store: MemoryRecordStore) -> None:
    guard = container(store)
    store.plant(RECORD, b"not json")
    with pytest.raises(StoreRecordUnreadable):
        guard.claim(RECORD, Deadline(30))
    other = CosRecord("photos-1250000000", "ap-guangzhou", "album/狗.jpg", "cos:ObjectCreated:Put", vid="v2")
    assert guard.claim(other, Deadline(30)) is Claim.NEW
