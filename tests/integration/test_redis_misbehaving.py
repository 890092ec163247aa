"""A Redis that stalls, trickles or speaks garbage costs a claim at most its deadline, then StoreUnavailable.

The server is tests/support/fake_redis_server.py, a thread on 127.0.0.1. Each test gives the operation a
deadline and checks the elapsed time against it (plus slack for a busy machine) and the error.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from cos_autotag.errors import StoreProtocolError, StoreRecordUnreadable, StoreUnavailable
from cos_autotag.events import CosRecord
from cos_autotag.idempotency import Claim, IdempotencyGuard, store_from_url
from cos_autotag.idempotency.guard import OPERATION_BUDGET_S
from cos_autotag.retry import Deadline
from tests.support.fake_redis_server import Behaviour, FakeRedisServer, answer, hang_up, send_at_once, stall, trickle

pytestmark = pytest.mark.integration

DEADLINE_S = 0.5  # shorter than the guard's budget: the deadline given is what must bound
SLACK_S = 1.0  # a busy machine's scheduling
PASSWORD = "Tr1ckle-Secret"
NIL = b"$-1\r\n"


def upload() -> CosRecord:
    return CosRecord(
        "photos-1250000000", "ap-guangzhou", f"album/{uuid.uuid4().hex}.jpg", "cos:ObjectCreated:Put", vid="v1"
    )


@pytest.fixture
def fake_redis() -> Iterator[Callable[[Behaviour], FakeRedisServer]]:
    servers: list[FakeRedisServer] = []

    def start(behaviour: Behaviour) -> FakeRedisServer:
        server = FakeRedisServer(behaviour).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def timed_failure(call: Callable[[], object], give_up_s: float = 10.0) -> tuple[float, StoreUnavailable]:
    """Run `call` in a thread; a call that never returns fails the test instead of hanging it."""
    outcome: list[object] = []
    started = time.monotonic()

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(give_up_s)
    elapsed = time.monotonic() - started
    assert outcome, f"still running after {give_up_s} s: the deadline did not bound it"
    assert isinstance(outcome[0], StoreUnavailable), outcome[0]
    return elapsed, outcome[0]


def bounded(elapsed: float, deadline_s: float = DEADLINE_S) -> None:
    assert elapsed <= deadline_s + SLACK_S, f"took {elapsed:.2f} s for a deadline of {deadline_s} s"


@pytest.mark.parametrize(
    ("name", "behaviour", "password", "says"),
    [
        ("stalls", stall, None, "timed out"),
        ("stalls at AUTH", stall, PASSWORD, "timed out"),
        ("trickles", trickle, None, "timed out"),
        ("trickles at AUTH", trickle, PASSWORD, "timed out"),
        ("answers, then stalls mid-claim", answer(NIL), None, "timed out"),
        ("hangs up", hang_up, None, "ConnectionResetError|BrokenPipe|ConnectionReset"),
        ("speaks HTTP", send_at_once(b"HTTP/1.1 400 Bad Request\r\n\r\n"), None, "unknown reply type"),
        ("nests 100,000 arrays deep", send_at_once(b"*1\r\n" * 100_000), None, "nested more than"),
        ("sends a 100,000-digit integer", send_at_once(b":" + b"9" * 100_000 + b"\r\n"), None, "line longer|19 digits"),
        ("sends a 30-digit integer", send_at_once(b":" + b"9" * 30 + b"\r\n"), None, "at most 19 digits"),
        ("sends a number that is not one", send_at_once(b":1e400\r\n"), None, "at most 19 digits"),
        ("announces a 100 GB string", send_at_once(b"$100000000000\r\n"), None, "bulk string of"),
        ("announces a billion items", send_at_once(b"*1000000000\r\n"), None, "more than 1024 items"),
        ("sends a thousand arrays of a thousand", send_at_once(b"*1000\r\n" + b"*1000\r\n" * 2), None, "items"),
        ("sends invalid UTF-8", send_at_once(b"+\xff\xfe\r\n"), None, "answered"),
        ("echoes the password", send_at_once(b"!" + PASSWORD.encode() + b"\r\n"), PASSWORD, "unknown reply type"),
        ("echoes the password in an error", answer(b"-ERR " + PASSWORD.encode() + b"\r\n"), PASSWORD, "refused AUTH"),
        ("echoes the password in a status", answer(b"+" + PASSWORD.encode() + b"\r\n"), PASSWORD, "not OK"),
    ],
)
def test_a_misbehaving_server_costs_a_claim_at_most_its_deadline(
    fake_redis: Callable[[Behaviour], FakeRedisServer], name: str, behaviour: Behaviour, password: str | None, says: str
) -> None:
    server = fake_redis(behaviour)
    guard = store_from_url(server.url(password), 60)
    elapsed, error = timed_failure(lambda: guard.claim(upload(), Deadline(DEADLINE_S)))
    bounded(elapsed)
    assert server.connected.is_set()  # the client did reach the server
    assert re.search(says, str(error)), str(error)
    for piece in (PASSWORD[i : i + 4] for i in range(len(PASSWORD) - 3)):
        assert piece not in str(error) and piece not in repr(error), str(error)


def test_a_stalled_server_costs_at_most_the_budget_when_the_invocation_has_more_time(
    fake_redis: Callable[[Behaviour], FakeRedisServer],
) -> None:
    guard = store_from_url(fake_redis(stall).url(), 60)
    elapsed, error = timed_failure(lambda: guard.claim(upload(), Deadline(30)))
    bounded(elapsed, OPERATION_BUDGET_S)
    assert "timed out" in str(error)


def test_a_record_holding_1e400_is_unreadable(fake_redis: Callable[[Behaviour], FakeRedisServer]) -> None:
    stored = b'{"expires_at_ms":1e400,"owner":"x","status":"INPROGRESS"}'
    server = fake_redis(answer(NIL, b"$%d\r\n%s\r\n" % (len(stored), stored)))
    with pytest.raises(StoreRecordUnreadable, match="not one this function wrote"):
        store_from_url(server.url(), 60).claim(upload(), Deadline(DEADLINE_S))
    assert [args[0] for args in server.requests] == [b"SET", b"GET"]


def test_a_stall_on_complete_costs_at_most_its_deadline(fake_redis: Callable[[Behaviour], FakeRedisServer]) -> None:
    server = fake_redis(answer(b"+OK\r\n"))  # the claim's SET NX succeeds, then silence
    guard = store_from_url(server.url(), 60)
    record = upload()
    assert guard.claim(record, Deadline(30)) is Claim.NEW
    elapsed, error = timed_failure(lambda: guard.complete(record, Deadline(DEADLINE_S)))
    bounded(elapsed)
    assert "timed out" in str(error)


def test_a_stall_on_release_costs_at_most_its_deadline(fake_redis: Callable[[Behaviour], FakeRedisServer]) -> None:
    server = fake_redis(answer(b"+OK\r\n", then=trickle))
    guard = store_from_url(server.url(), 60)
    record = upload()
    assert guard.claim(record, Deadline(30)) is Claim.NEW
    elapsed, _ = timed_failure(lambda: guard.release(record, Deadline(DEADLINE_S)))
    bounded(elapsed)


def test_a_thread_waiting_for_a_stalled_connection_gives_up_by_its_own_deadline(
    fake_redis: Callable[[Behaviour], FakeRedisServer],
) -> None:
    server = fake_redis(stall)
    guard = store_from_url(server.url(), 60)
    outcome: list[BaseException] = []

    def first() -> None:
        try:
            guard.claim(upload(), Deadline(30))  # holds the connection for the whole budget
        except BaseException as error:
            outcome.append(error)

    holder = threading.Thread(target=first)
    holder.start()
    assert server.connected.wait(10)  # the first claim is inside the stalled server
    elapsed, error = timed_failure(lambda: guard.claim(upload(), Deadline(0.2)))
    bounded(elapsed, 0.2)
    assert "another thread" in str(error) or "timed out" in str(error)
    holder.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable)


def test_after_garbage_the_connection_is_dropped_and_a_good_server_is_used_again(
    fake_redis: Callable[[Behaviour], FakeRedisServer],
) -> None:
    # First connection: garbage. The next one (a fresh socket) answers properly.
    answers = iter([send_at_once(b"!garbage\r\n"), answer(b"+OK\r\n")])
    server = fake_redis(lambda conn, srv: next(answers)(conn, srv))
    guard: IdempotencyGuard = store_from_url(server.url(), 60, breaker_open_s=0)  # the transport alone
    with pytest.raises(StoreProtocolError):
        guard.claim(upload(), Deadline(DEADLINE_S))
    assert guard.claim(upload(), Deadline(DEADLINE_S)) is Claim.NEW
