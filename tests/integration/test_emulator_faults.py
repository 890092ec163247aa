"""Each fault knob, shown to act: delivery-side (duplicates, reordering, delay, batching) and
API-side (latency, detect-label quota and throttling, server errors, seed, run-time changes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from qcloud_cos import CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag_tools.emulator import DigestLabelEngine, Emulator, Faults
from tests.support.constants import APPID, BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.images import image_bytes
from tests.support.sdk import make_client

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


class Calls:
    def __init__(self) -> None:
        self.items: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        with self._lock:
            self.items.append((time.monotonic(), event))

    def keys(self) -> list[str]:
        return [r["cos"]["cosObject"]["key"].rsplit("/", 1)[-1] for _, e in self.items for r in e["Records"]]


def status_of(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    try:
        call()
    except CosServiceError as err:
        return err.get_status_code(), err.get_error_code()
    return 200, ""


# --- delivery side --------------------------------------------------------------------------------


def test_duplicate_deliveries(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(duplicate_deliveries=3)
    calls = Calls()
    emulator.add_trigger(BUCKET, calls)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    assert calls.keys() == ["k", "k", "k"]
    assert len({i.delivery_id for i in emulator.invocations}) == 3
    assert all(i.attempt == 1 for i in emulator.invocations)


@pytest.fixture
def one_worker() -> Iterator[Emulator]:
    """An emulator delivering on a single worker, so that delivery order is observable."""
    with Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID, delivery_workers=1) as emu:
        emu.create_bucket(BUCKET, REGION)
        yield emu


def upload_in_order(emu: Emulator, n: int) -> tuple[Calls, list[str]]:
    calls = Calls()
    emu.add_trigger(BUCKET, calls)
    client = make_client(emu)
    keys = [f"k{i:02d}" for i in range(n)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    emu.wait_idle(10)
    return calls, keys


def test_in_order_without_the_fault(one_worker: Emulator) -> None:
    one_worker.set_faults(delivery_delay_s=0.05)  # all queued before the first runs: order is the queue's
    calls, keys = upload_in_order(one_worker, 12)
    assert calls.keys() == keys


def test_out_of_order(one_worker: Emulator) -> None:
    one_worker.set_faults(out_of_order=True, out_of_order_window_s=0.3, delivery_delay_s=0.05, seed=3)
    calls, keys = upload_in_order(one_worker, 12)
    assert sorted(calls.keys()) == keys and calls.keys() != keys


def test_delivery_delay(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(delivery_delay_s=0.3)
    calls = Calls()
    emulator.add_trigger(BUCKET, calls)
    uploaded = time.monotonic()
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    assert calls.items[0][0] - uploaded >= 0.3


def test_batch_records(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(batch_records=3, batch_window_s=0.3)
    calls = Calls()
    emulator.add_trigger(BUCKET, calls)
    for i in range(7):
        cos_client.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"x")
    emulator.wait_idle(10)
    sizes = [len(event["Records"]) for _, event in calls.items]
    assert sum(sizes) == 7 and max(sizes) == 3 and len(sizes) < 7
    assert sorted(calls.keys()) == [f"k{i}" for i in range(7)]


def test_batch_window_flushes_a_partial_batch(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(batch_records=10, batch_window_s=0.1)
    calls = Calls()
    emulator.add_trigger(BUCKET, calls)
    cos_client.put_object(Bucket=BUCKET, Key="only", Body=b"x")
    emulator.wait_idle(10)
    assert calls.keys() == ["only"]


# --- API side ------------------------------------------------------------------------------------------


def test_latency_all_and_per_operation(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(latency_s=0.15, latency_by_op={"HeadObject": 0.2})
    start = time.monotonic()
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    put_s = time.monotonic() - start
    start = time.monotonic()
    cos_client.head_object(Bucket=BUCKET, Key="k")
    head_s = time.monotonic() - start
    assert put_s >= 0.15 and head_s >= 0.35 and put_s < head_s  # HeadObject alone pays the extra 0.2 s
    emulator.set_faults(latency_s=0.0, latency_by_op={})
    start = time.monotonic()
    cos_client.head_object(Bucket=BUCKET, Key="k")
    assert time.monotonic() - start < 0.1


def test_latency_jitter(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_faults(latency_s=0.02, latency_jitter_s=0.1, seed=1)
    durations = []
    for _ in range(6):
        start = time.monotonic()
        cos_client.head_bucket(Bucket=BUCKET)
        durations.append(time.monotonic() - start)
    assert min(durations) >= 0.02 and max(durations) < 0.2
    assert max(durations) - min(durations) > 0.01


def detect_statuses(cos_client: CosS3Client, n: int) -> list[tuple[int, str]]:
    return [status_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg")) for _ in range(n)]


def test_detect_qps_quota(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.label_engine = DigestLabelEngine()
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    emulator.set_faults(detect_qps=4)
    statuses = detect_statuses(cos_client, 10)
    assert 4 <= statuses.count((200, "")) <= 6  # the burst of 4, plus refills while calling
    assert statuses.count((429, "-164")) >= 4
    time.sleep(0.3)
    assert detect_statuses(cos_client, 1) == [(200, "")]
    assert emulator.count("DetectLabel", status=429) >= 4
    # Other operations are not subject to the detect-label quota.
    assert status_of(lambda: cos_client.head_object(Bucket=BUCKET, Key="a.jpg")) == (200, "")


def test_detect_throttle_rate_and_code(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.label_engine = DigestLabelEngine()
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    emulator.set_faults(detect_throttle_rate=0.5, throttle_code="-29214", throttle_status=429, seed=11)
    statuses = detect_statuses(cos_client, 30)
    throttled = statuses.count((429, "-29214"))
    assert statuses.count((200, "")) + throttled == 30 and 5 < throttled < 25


def test_error_5xx_limited_to_operations_loses_nothing(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"original")
    emulator.set_faults(error_5xx_rate=1.0, error_5xx_ops={"PutObject"})
    status, code = status_of(lambda: cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"new"))
    assert (status, code) in ((503, "SlowDown"), (500, "InternalError"))
    assert emulator.get_object_state(BUCKET, "k").body == b"original"  # type: ignore[union-attr]
    assert status_of(lambda: cos_client.head_object(Bucket=BUCKET, Key="k")) == (200, "")


def test_error_5xx_is_retried_by_the_sdk(emulator: Emulator) -> None:
    # With this seed the first draw fails and the second passes: one SlowDown, then the SDK's retry lands.
    emulator.set_faults(error_5xx_rate=0.5, error_5xx_codes=("SlowDown",), seed=4)
    make_client(emulator, retry=3).put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert [r.status for r in emulator.requests] == [503, 200]
    assert emulator.get_object_state(BUCKET, "k") is not None


def test_same_seed_same_faults() -> None:
    def run() -> list[int]:
        with Emulator(
            credentials={SECRET_ID: SECRET_KEY}, appid=APPID, faults=Faults(error_5xx_rate=0.5, seed=42)
        ) as emu:
            emu.create_bucket(BUCKET, REGION)
            client = make_client(emu)
            for i in range(12):
                status_of(lambda i=i: client.head_object(Bucket=BUCKET, Key=f"k{i}"))
            return [r.status for r in emu.requests]

    first, second = run(), run()
    assert first == second and len(set(first)) > 1


def test_faults_change_at_run_time(emulator: Emulator, cos_client: CosS3Client) -> None:
    assert status_of(lambda: cos_client.head_bucket(Bucket=BUCKET)) == (200, "")
    emulator.faults = Faults(error_5xx_rate=1.0, error_5xx_codes=("InternalError",))
    assert status_of(lambda: cos_client.list_objects(Bucket=BUCKET)) == (500, "InternalError")
    emulator.set_faults(error_5xx_rate=0.0)
    assert status_of(lambda: cos_client.list_objects(Bucket=BUCKET)) == (200, "")
    with pytest.raises(ValueError):
        emulator.set_faults(error_5xx_rate=2.0)
