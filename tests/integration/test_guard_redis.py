"""The strict idempotency store against a real redis-server: every transition, races, outages.

An independent client (redis-py) looks at what the store wrote; the store itself is only ever
driven over a real socket.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qcloud_cos import CosS3Client

from cos_autotag.errors import RetryableFailure, StoreUnavailable
from cos_autotag.events import CosRecord
from cos_autotag.handler import App
from cos_autotag.idempotency import Claim, IdempotencyGuard, record_key, store_from_url
from cos_autotag.idempotency.guard import KEY_PREFIX, OPERATION_BUDGET_S
from cos_autotag.idempotency.redis_store import RedisRecordStore
from cos_autotag.retry import Deadline
from cos_autotag.settings import Settings
from cos_autotag.writeback import MARKER_TAG
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.fake_redis_server import FakeRedisServer, stall
from tests.support.idempotency import RECORDS_WE_DID_NOT_WRITE
from tests.support.images import image_bytes
from tests.support.redis_server import RedisServer, RedisServerFactory
from tests.support.scf import context as scf_context
from tests.support.scf import load_event

pytest_plugins = ("tests.integration.conftest_redis",)
pytestmark = pytest.mark.integration

TTL_S = 3600
SLACK_S = 1.0  # a busy machine's scheduling, on top of a deadline


def upload(key: str = "", vid: str = "") -> CosRecord:
    """One upload of one object; a fresh key per call unless named."""
    return CosRecord(
        bucket="photos-1250000000",
        region="ap-guangzhou",
        key=key or f"album/{uuid.uuid4().hex}.jpg",
        event_name="cos:ObjectCreated:Put",
        vid=vid or uuid.uuid4().hex,
    )


def stored(server: RedisServer, record: CosRecord, db: int = 0) -> dict[str, Any] | None:
    raw = server.client(db).get(record_key(record))
    return None if raw is None else json.loads(raw)


def now_ms() -> int:
    return int(time.time() * 1000)


def race(workers: int, task: Callable[[int], Claim]) -> Counter[Claim]:
    """Run `task(i)` in `workers` threads released at the same moment; count the answers."""
    barrier = threading.Barrier(workers)
    results: list[Claim | BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcome: Claim | BaseException = task(i)
        except BaseException as error:
            outcome = error
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert len(results) == workers
    return Counter(r for r in results if isinstance(r, Claim))


@pytest.fixture
def store(redis_server: RedisServer) -> IdempotencyGuard:
    # These tests exercise the transport, each failure on its own: the breaker (which would skip
    # the store for a while after one) has its own tests.
    return store_from_url(redis_server.url(), TTL_S, breaker_open_s=0)


def claimed(store: IdempotencyGuard, record: CosRecord | None = None) -> CosRecord:
    """A fresh upload (or `record`), claimed as new by `store`."""
    record = record or upload()
    assert store.claim(record, Deadline(30)) is Claim.NEW
    return record


def redis_of(store: IdempotencyGuard) -> RedisRecordStore:
    assert isinstance(store.records, RedisRecordStore)
    return store.records


# --- the state machine ---------------------------------------------------------------------------


@pytest.mark.redis
def test_first_claim_is_new_and_writes_an_in_progress_record(
    store: IdempotencyGuard, redis_server: RedisServer
) -> None:
    record = upload()
    before = now_ms()
    assert store.claim(record, Deadline(30)) is Claim.NEW
    state = stored(redis_server, record)
    assert state is not None
    assert state["status"] == "INPROGRESS"
    assert before + 30_000 <= state["expires_at_ms"] <= now_ms() + 30_000
    assert state["owner"]
    key = record_key(record)
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 64
    # The key lives exactly as long as the invocation's window: a crash stops blocking after it.
    assert 29_000 < redis_server.client().pttl(key) <= 30_000


@pytest.mark.redis
def test_claim_while_in_progress_is_in_progress(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = upload()
    other_container = store_from_url(redis_server.url(), TTL_S)
    assert store.claim(record, Deadline(30)) is Claim.NEW
    assert other_container.claim(record, Deadline(30)) is Claim.IN_PROGRESS
    assert store.claim(record, Deadline(30)) is Claim.IN_PROGRESS  # a second delivery in the same container too


@pytest.mark.redis
def test_complete_marks_completed_with_the_completed_ttl(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = claimed(store)
    store.complete(record, Deadline(30))
    state = stored(redis_server, record)
    assert state is not None and state["status"] == "COMPLETED"
    pttl = redis_server.client().pttl(record_key(record))
    assert TTL_S * 1000 - 5_000 < pttl <= TTL_S * 1000


@pytest.mark.redis
def test_claim_after_complete_is_duplicate_in_any_container(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = claimed(store)
    store.complete(record, Deadline(30))
    assert store.claim(record, Deadline(30)) is Claim.DUPLICATE
    assert store_from_url(redis_server.url(), TTL_S).claim(record, Deadline(30)) is Claim.DUPLICATE


@pytest.mark.redis
def test_another_upload_of_the_same_key_is_new(store: IdempotencyGuard) -> None:
    first = claimed(store, upload(key="album/same.jpg", vid="v1"))
    store.complete(first, Deadline(30))
    assert store.claim(upload(key="album/same.jpg", vid="v2"), Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_release_deletes_our_record_so_a_retry_is_new(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = claimed(store)
    store.release(record, Deadline(30))
    assert stored(redis_server, record) is None
    assert store_from_url(redis_server.url(), TTL_S).claim(record, Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_release_never_deletes_a_record_someone_else_holds(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = claimed(store)
    key = record_key(record)
    # Our window passed and another delivery took the upload over while we were still running.
    theirs = json.dumps({"status": "INPROGRESS", "expires_at_ms": now_ms() + 30_000, "owner": "someone-else"})
    redis_server.client().set(key, theirs, px=30_000)
    store.release(record, Deadline(30))
    assert redis_server.client().get(key) == theirs.encode()
    # A container that never claimed it has nothing of its own to release either.
    other = store_from_url(redis_server.url(), TTL_S)
    other.release(record, Deadline(30))
    assert redis_server.client().get(key) == theirs.encode()


@pytest.mark.redis
def test_release_after_complete_keeps_the_completed_record(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = claimed(store)
    store.complete(record, Deadline(30))
    store.release(record, Deadline(30))
    assert store.claim(record, Deadline(30)) is Claim.DUPLICATE


@pytest.mark.redis
@pytest.mark.parametrize("remaining_s", [0.2, 0.5])
def test_in_progress_window_is_never_under_a_second(
    store: IdempotencyGuard, redis_server: RedisServer, remaining_s: float
) -> None:
    # Powertools #4759: a remaining time of 0 wrote a record with no expiry, blocking forever.
    # (No time left at all is refused before asking Redis: tests/unit/test_idempotency_guard.py.)
    record = upload()
    assert store.claim(record, Deadline(remaining_s)) is Claim.NEW
    pttl = redis_server.client().pttl(record_key(record))
    assert 0 < pttl <= 1_000
    state = stored(redis_server, record)
    assert state is not None and state["expires_at_ms"] <= now_ms() + 1_000


def next_expired_key(expiries: Any, give_up_s: float) -> bytes | None:
    """The next key Redis reports expired (keyspace notifications), or None after give_up_s."""
    give_up = time.monotonic() + give_up_s
    while (left := give_up - time.monotonic()) > 0:
        message = expiries.get_message(timeout=left)  # None for the ignored subscribe confirmation
        if message is not None:
            return bytes(message["data"])
    return None


@pytest.mark.redis
def test_a_crashed_claim_stops_blocking_once_its_window_passes(redis_server: RedisServer) -> None:
    record = upload()
    crashed = store_from_url(redis_server.url(), TTL_S)
    retry = store_from_url(redis_server.url(), TTL_S)
    # Redis says when it expires a key: wait for that event, not for a guessed time.
    admin = redis_server.client()
    admin.config_set("notify-keyspace-events", "Ex")
    expiries = admin.pubsub(ignore_subscribe_messages=True)
    expiries.subscribe("__keyevent@0__:expired")
    assert crashed.claim(record, Deadline(1)) is Claim.NEW  # ...and never completes nor releases
    assert retry.claim(record, Deadline(30)) is Claim.IN_PROGRESS
    assert next_expired_key(expiries, give_up_s=10) == record_key(record).encode()
    assert retry.claim(record, Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_an_expired_in_progress_record_is_taken_over(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    # A key that outlived its in-progress window (written with the key TTL, as Powertools does).
    record = upload()
    key = record_key(record)
    stale = json.dumps({"status": "INPROGRESS", "expires_at_ms": now_ms() - 1_000, "owner": "crashed"})
    redis_server.client().set(key, stale, px=600_000)
    assert store.claim(record, Deadline(20)) is Claim.NEW
    state = stored(redis_server, record)
    assert state is not None and state["status"] == "INPROGRESS" and state["owner"] != "crashed"
    assert 19_000 < redis_server.client().pttl(key) <= 20_000
    # The takeover is ours: complete and release act on it.
    store.release(record, Deadline(30))
    assert stored(redis_server, record) is None


@pytest.mark.redis
def test_an_in_progress_record_within_its_window_is_not_taken_over(
    store: IdempotencyGuard, redis_server: RedisServer
) -> None:
    record = upload()
    key = record_key(record)
    live = json.dumps({"status": "INPROGRESS", "expires_at_ms": now_ms() + 60_000, "owner": "busy"})
    redis_server.client().set(key, live, px=600_000)
    assert store.claim(record, Deadline(20)) is Claim.IN_PROGRESS
    assert redis_server.client().get(key) == live.encode()


# --- races ---------------------------------------------------------------------------------------


@pytest.mark.redis
def test_twenty_threads_claiming_one_upload_get_exactly_one_new(store: IdempotencyGuard) -> None:
    record = upload()
    counts = race(20, lambda _: store.claim(record, Deadline(30)))
    assert counts == Counter({Claim.NEW: 1, Claim.IN_PROGRESS: 19})


@pytest.mark.redis
def test_two_containers_racing_get_exactly_one_new_per_upload(redis_server: RedisServer) -> None:
    containers = [store_from_url(redis_server.url(), TTL_S) for _ in range(2)]
    for _ in range(25):
        record = upload()
        counts = race(8, lambda i, r=record: containers[i % 2].claim(r, Deadline(30)))  # type: ignore[misc]
        assert counts == Counter({Claim.NEW: 1, Claim.IN_PROGRESS: 7})


@pytest.mark.redis
def test_racing_takeovers_of_an_expired_record_get_exactly_one_new(redis_server: RedisServer) -> None:
    record = upload()
    stale = json.dumps({"status": "INPROGRESS", "expires_at_ms": now_ms() - 1_000, "owner": "crashed"})
    redis_server.client().set(record_key(record), stale, px=600_000)
    containers = [store_from_url(redis_server.url(), TTL_S) for _ in range(4)]
    counts = race(20, lambda i: containers[i % 4].claim(record, Deadline(30)))
    assert counts == Counter({Claim.NEW: 1, Claim.IN_PROGRESS: 19})


# --- connecting: auth, db, TLS -----------------------------------------------------------------


@pytest.mark.redis
def test_password_and_database_from_the_url(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(password="p@ss:w/rd#1")
    store = store_from_url(server.url(db=5), TTL_S)
    record = claimed(store)
    assert stored(server, record, db=5) is not None
    assert stored(server, record, db=0) is None


@pytest.mark.redis
def test_acl_user_and_password_from_the_url(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(password="admin-secret")
    admin = server.client()
    admin.acl_setuser("autotag", enabled=True, passwords=["+tagger-pw"], keys=["autotag:*"], commands=["+@all"])
    store = store_from_url(server.url(username="autotag", password="tagger-pw"), TTL_S)
    assert store.claim(upload(), Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_wrong_password_is_store_unavailable_without_the_password(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(password="right-secret")
    store = store_from_url(server.url(password="Wr0ngPassw0rd"), TTL_S)
    with pytest.raises(StoreUnavailable) as caught:
        store.claim(upload(), Deadline(30))
    message = str(caught.value)
    assert "AUTH" in message and "WRONGPASS" in message
    assert "Wr0ngPassw0rd" not in message and "right-secret" not in message
    assert "Wr0ngPassw0rd" not in repr(store)


@pytest.mark.redis
def test_no_password_for_a_server_that_needs_one_is_store_unavailable(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(password="right-secret")
    store = store_from_url(f"redis://{server.host}:{server.port}/0", TTL_S)
    with pytest.raises(StoreUnavailable, match="NOAUTH"):
        store.claim(upload(), Deadline(30))


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.redis
def test_rediss_speaks_tls_and_verifies_the_certificate(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    cert, key = _self_signed_cert(tmp_path)
    server = redis_server_factory(password="tls-secret", tls=(cert, key))
    assert server.url().startswith("rediss://")
    trusting = ssl.create_default_context(cafile=str(cert))
    store = store_from_url(server.url(db=2), TTL_S, ssl_context=trusting)
    record = claimed(store)
    assert stored(server, record, db=2) is not None
    # With the system's trust store, a self-signed certificate is refused: no silent plaintext.
    with pytest.raises(StoreUnavailable, match="SSL") as caught:
        store_from_url(server.url(), TTL_S).claim(upload(), Deadline(30))
    assert "tls-secret" not in str(caught.value)


# --- outages and bad data ------------------------------------------------------------------------


@pytest.mark.redis
def test_server_stopped_mid_way_is_store_unavailable_fast_then_recovers(
    store: IdempotencyGuard, redis_server: RedisServer
) -> None:
    record = claimed(store)
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.complete(record, Deadline(30))
    # Refused at once rather than hanging: generous bound, this is not a speed test.
    assert time.monotonic() - started < 3.0
    # The same port comes back (empty: no persistence): the store reconnects by itself.
    redis_server.start()
    assert store.claim(record, Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_a_hung_server_is_store_unavailable_once_the_operation_budget_is_spent(
    store: IdempotencyGuard, redis_server: RedisServer
) -> None:
    redis_of(store).ping(Deadline(5))  # connected before the server hangs
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="timed out"):
            store.claim(upload(), Deadline(30))
        # Bounded by the guard's budget for one operation, not by the invocation's 30 s.
        assert time.monotonic() - started < OPERATION_BUDGET_S + SLACK_S
    finally:
        redis_server.resume()
    assert store.claim(upload(), Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_an_idle_connection_the_server_dropped_is_reopened_transparently(
    store: IdempotencyGuard, redis_server: RedisServer
) -> None:
    redis_of(store).ping(Deadline(5))
    killed = redis_server.client().client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert store.claim(upload(), Deadline(30)) is Claim.NEW  # no StoreUnavailable: one fresh try


@pytest.mark.redis
@pytest.mark.parametrize("value", RECORDS_WE_DID_NOT_WRITE)
def test_a_record_we_did_not_write_is_store_unavailable_and_left_alone(
    store: IdempotencyGuard, redis_server: RedisServer, value: bytes
) -> None:
    record = upload()
    key = record_key(record)
    redis_server.client().set(key, value)
    with pytest.raises(StoreUnavailable, match="not one this function wrote"):
        store.claim(record, Deadline(30))
    assert redis_server.client().get(key) == value


@pytest.mark.redis
def test_a_key_of_another_type_is_store_unavailable(store: IdempotencyGuard, redis_server: RedisServer) -> None:
    record = upload()
    redis_server.client().rpush(record_key(record), "x")
    with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
        store.claim(record, Deadline(30))
    # The connection stayed in sync after the error reply.
    assert store.claim(upload(), Deadline(30)) is Claim.NEW


@pytest.mark.redis
def test_replies_of_every_resp2_type_keep_the_connection_in_sync(store: IdempotencyGuard) -> None:
    connection = redis_of(store).connection
    reply = connection.command(Deadline(5), "EVAL", "return {1, redis.error_reply('inner'), 'text', false}", 0)
    assert reply[0] == 1 and "inner" in str(reply[1]) and reply[2] == b"text" and reply[3] is None
    assert connection.command(Deadline(5), "GET", "autotag:test:missing") is None
    assert connection.command(Deadline(5), "PING") == "PONG"


# --- cold start ----------------------------------------------------------------------------------


def test_from_url_does_not_connect() -> None:
    # Redis may be down at cold start: the App must still build, and fall back at the first claim.
    store = store_from_url("redis://127.0.0.1:1/0", TTL_S)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.claim(upload(), Deadline(30))


# --- end to end: the function, the emulator and a real redis-server ---------------------------------
# The emulator and an SDK client come from tests/conftest.py; the function is the real App.

DETECT_LATENCY_S = 0.5  # long enough that two deliveries are inside the function together


def _function_env() -> dict[str, str]:
    return {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}


def _app(emulator: Emulator, redis_url: str | None) -> App:
    settings = Settings(cos_endpoint=("http", "127.0.0.1", emulator.port), redis_url=redis_url, min_confidence=10)
    return App(settings, env=_function_env())


def _uploaded(cos_client: CosS3Client, key: str) -> dict[str, Any]:
    """Upload one photo with the SDK; answer the SCF COS trigger event for that upload."""
    body = image_bytes("JPEG", seed=7)
    headers = cos_client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/jpeg")
    event = load_event("put.json")
    obj = event["Records"][0]["cos"]["cosObject"]
    obj["key"] = f"/{BUCKET.rsplit('-', 1)[1]}/{BUCKET.rsplit('-', 1)[0]}/{key}"
    obj["url"] = f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{key}"
    obj["size"] = len(body)
    obj["meta"] = {"x-cos-request-id": headers["x-cos-request-id"], "Content-Type": "image/jpeg"}
    return event


def _deliver_together(apps: list[App], event: dict[str, Any]) -> list[dict[str, Any] | BaseException]:
    """Each app handles the same event in its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(apps))
    outcomes: list[dict[str, Any] | BaseException] = []
    lock = threading.Lock()

    def deliver(app: App) -> None:
        barrier.wait()
        try:
            outcome: dict[str, Any] | BaseException = app.handle(event, scf_context())
        except BaseException as error:
            outcome = error
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deliver, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == len(apps)
    return outcomes


def _assert_labeled_once_with_marker(emulator: Emulator, key: str) -> None:
    assert emulator.count(op="DetectLabel", key=key) == 1
    state = emulator.get_object_state(BUCKET, key)
    assert state is not None and MARKER_TAG in state.tags


def _log_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _assert_labeled_through_the_marker(
    emulator: Emulator, summary: dict[str, Any], out: str, key: str, *, said: str, error: str, secret: str
) -> None:
    """The record was labeled once, guarded by the object marker, with one warning (about this key)
    that the store was unreachable; the store's password is nowhere in the output."""
    assert summary["labeled"] == 1
    _assert_labeled_once_with_marker(emulator, key)
    lines = _log_lines(out)
    warnings = [line for line in lines if line["level"] == "warning" and "unreachable" in line["message"]]
    assert len(warnings) == 1, lines
    assert said in warnings[0]["message"]
    assert error in warnings[0]["error"] and warnings[0]["key"] == key
    assert secret not in out


def _one_labeled_one_told_to_retry(
    emulator: Emulator, cos_client: CosS3Client, key: str, apps: list[App]
) -> dict[str, Any]:
    """Two deliveries of one upload inside the function together: one pays detect-label and labels,
    the other is told to retry. Answers the event."""
    event = _uploaded(cos_client, key)
    emulator.set_faults(latency_by_op={"DetectLabel": DETECT_LATENCY_S})
    outcomes = _deliver_together(apps, event)
    assert emulator.count(op="DetectLabel", key=key) == 1
    labeled = [o for o in outcomes if isinstance(o, dict) and o["labeled"] == 1]
    retry = [o for o in outcomes if isinstance(o, RetryableFailure)]
    assert len(labeled) == 1 and len(retry) == 1, outcomes
    return event


@pytest.mark.redis
def test_two_deliveries_at_once_in_one_container_pay_for_one_detect_label(
    emulator: Emulator, cos_client: CosS3Client, redis_server: RedisServer
) -> None:
    key = "album/one-container.jpg"
    app = _app(emulator, redis_server.url())
    event = _one_labeled_one_told_to_retry(emulator, cos_client, key, [app, app])
    _assert_labeled_once_with_marker(emulator, key)
    # SCF's retry of the delivery that was told to wait finds the upload completed.
    summary = app.handle(event, scf_context())
    assert summary["duplicates"] == 1
    assert emulator.count(op="DetectLabel", key=key) == 1


@pytest.mark.redis
def test_two_containers_at_once_pay_for_one_detect_label(
    emulator: Emulator, cos_client: CosS3Client, redis_server: RedisServer
) -> None:
    containers = [_app(emulator, redis_server.url()), _app(emulator, redis_server.url())]
    _one_labeled_one_told_to_retry(emulator, cos_client, "album/two-containers.jpg", containers)
    keys = redis_server.client().keys(KEY_PREFIX + "*")
    assert len(keys) == 1
    raw = redis_server.client().get(keys[0])
    assert raw is not None and json.loads(raw)["status"] == "COMPLETED"


def test_without_the_store_two_deliveries_at_once_both_pay(emulator: Emulator, cos_client: CosS3Client) -> None:
    # The control for the two tests above: the object marker alone cannot stop a concurrent duplicate.
    key = "album/no-store.jpg"
    event = _uploaded(cos_client, key)
    emulator.set_faults(latency_by_op={"DetectLabel": DETECT_LATENCY_S})
    outcomes = _deliver_together([_app(emulator, None), _app(emulator, None)], event)
    # Both pay. Whether the later one still writes depends on whether the earlier one's marker
    # landed before its second tag read; the labels are the same either way.
    assert all(isinstance(o, dict) and o["labeled"] + o["duplicates"] == 1 for o in outcomes), outcomes
    assert emulator.count(op="DetectLabel", key=key) == 2


@pytest.mark.redis
def test_with_redis_down_the_function_still_labels_and_says_it_fell_back(
    emulator: Emulator,
    cos_client: CosS3Client,
    redis_server_factory: RedisServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = redis_server_factory(password="down-secret")
    key = "album/redis-down.jpg"
    event = _uploaded(cos_client, key)
    app = _app(emulator, server.url())
    server.stop()
    capsys.readouterr()
    started = time.monotonic()
    summary = app.handle(event, scf_context())
    assert time.monotonic() - started < 5
    out = capsys.readouterr().out
    _assert_labeled_through_the_marker(
        emulator, summary, out, key, said="object marker", error="unreachable", secret="down-secret"
    )
    # A second delivery, still without Redis: the marker on the object stops it before detect-label.
    assert app.handle(event, scf_context())["duplicates"] == 1
    assert emulator.count(op="DetectLabel", key=key) == 1


def test_with_redis_stalled_the_function_labels_through_the_marker_within_its_time(
    emulator: Emulator, cos_client: CosS3Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Redis that accepts connections and never answers (hung, or a black hole behind a NAT).
    key = "album/redis-stalled.jpg"
    event = _uploaded(cos_client, key)
    time_limit_ms = 3000  # SCF's default timeout
    with FakeRedisServer(stall) as stalled:
        app = _app(emulator, stalled.url(password="stall-secret"))
        capsys.readouterr()
        started = time.monotonic()
        summary = app.handle(event, scf_context(time_limit_ms=time_limit_ms))
        elapsed = time.monotonic() - started
        assert stalled.connected.is_set()  # the function did try the store
    # The invocation ends inside its time limit: the store cost at most its budget, not the limit.
    assert elapsed < time_limit_ms / 1000, f"{elapsed:.2f} s"
    _assert_labeled_through_the_marker(
        emulator,
        summary,
        capsys.readouterr().out,
        key,
        said="falling back to the object marker",
        error="timed out",
        secret="stall-secret",
    )


def test_with_redis_stalled_only_the_first_record_waits_for_it(
    emulator: Emulator, cos_client: CosS3Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # Five records in one event and a Redis that never answers: after the first record's claim
    # spends its budget, the breaker skips the store, so the others fall back to the marker at once.
    keys = [f"album/breaker-{i}.jpg" for i in range(5)]
    events = [_uploaded(cos_client, key) for key in keys]
    event = {"Records": [record for e in events for record in e["Records"]]}
    with FakeRedisServer(stall) as stalled:
        app = _app(emulator, stalled.url())
        started = time.monotonic()
        summary = app.handle(event, scf_context(time_limit_ms=30000))
        elapsed = time.monotonic() - started
    assert summary["labeled"] == 5
    # One budget for the store, not five (the bound has slack for a busy machine).
    assert elapsed < 2 * OPERATION_BUDGET_S + SLACK_S, f"{elapsed:.2f} s"
    lines = _log_lines(capsys.readouterr().out)
    errors = [line["error"] for line in lines if "unreachable" in line["message"]]
    assert len(errors) == 5 and "timed out" in errors[0]
    assert all("failed moments ago" in error for error in errors[1:]), errors
