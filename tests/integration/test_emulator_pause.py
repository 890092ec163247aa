"""Pause points: a test holds a request until it releases it, or waits until one arrives,
instead of sleeping. Each behaviour is shown with the unmodified SDK over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from qcloud_cos import CosS3Client

from cos_autotag_tools.emulator import Emulator
from tests.support.constants import BUCKET
from tests.support.emulator import seed_object
from tests.support.pauses import GateTimeout, pause, watch
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

TAGS_A = {"TagSet": {"Tag": [{"Key": "v", "Value": "a"}]}}


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_a_held_write_lands_only_after_release(emulator: Emulator, cos_client: CosS3Client) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"old")
    with pause(emulator, "PutObjectTagging", key="a.jpg") as gate:
        thread, _ = in_thread(lambda: cos_client.put_object_tagging(Bucket=BUCKET, Key="a.jpg", Tagging=TAGS_A))
        arrival = gate.wait_arrived(timeout=10)
        assert (arrival.op, arrival.key, arrival.method) == ("PutObjectTagging", "a.jpg", "PUT")
        # Held before the operation: not applied, not answered, not logged.
        other = make_client(emulator)
        other.put_object(Bucket=BUCKET, Key="a.jpg", Body=b"new")  # other requests flow meanwhile
        assert emulator.get_object_state(BUCKET, "a.jpg").tags == {}
        assert emulator.count("PutObjectTagging") == 0 and thread.is_alive()
        gate.release()
        gate.wait_done(timeout=10)
        assert emulator.count("PutObjectTagging", status=200) == 1  # logged before wait_done returns
        thread.join(10)
    state = emulator.get_object_state(BUCKET, "a.jpg")
    assert state.body == b"new" and state.tags == {"v": "a"}  # the held write landed on the new object


def test_when_after_holds_the_answer_not_the_operation(emulator: Emulator, cos_client: CosS3Client) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x", tags={"v": "old"})
    with pause(emulator, "GetObjectTagging", key="a.jpg", when="after") as gate:
        thread, out = in_thread(lambda: cos_client.get_object_tagging(Bucket=BUCKET, Key="a.jpg"))
        gate.wait_arrived(timeout=10)
        make_client(emulator).put_object_tagging(Bucket=BUCKET, Key="a.jpg", Tagging=TAGS_A)
        gate.release()
        thread.join(10)
    assert out[0]["TagSet"]["Tag"] == [{"Key": "v", "Value": "old"}]  # what it read before the change
    assert emulator.get_object_state(BUCKET, "a.jpg").tags == {"v": "a"}


def test_only_the_first_count_matching_requests_are_held(emulator: Emulator, cos_client: CosS3Client) -> None:
    for key in ("a.jpg", "b.jpg"):
        seed_object(emulator, BUCKET, key, b"x")
    with pause(emulator, "HeadObject", key="a.jpg") as gate:
        cos_client.head_object(Bucket=BUCKET, Key="b.jpg")  # another key: not caught
        cos_client.get_object_tagging(Bucket=BUCKET, Key="a.jpg")  # another operation: not caught
        assert gate.arrived == 0
        first, _ = in_thread(lambda: cos_client.head_object(Bucket=BUCKET, Key="a.jpg"))
        gate.wait_arrived(timeout=10)
        make_client(emulator).head_object(Bucket=BUCKET, Key="a.jpg")  # the second passes untouched
        assert gate.arrived == 1 and first.is_alive()
    first.join(10)  # leaving the block released it
    assert not first.is_alive()


def test_count_holds_several_and_wait_arrived_takes_n(emulator: Emulator) -> None:
    with pause(emulator, "PutObject", count=2) as gate:
        threads = [
            in_thread(lambda k=k: make_client(emulator).put_object(Bucket=BUCKET, Key=k, Body=b"x"))[0]
            for k in ("a", "b")
        ]
        gate.wait_arrived(timeout=10, n=2)
        assert {a.key for a in gate.arrivals} == {"a", "b"}
        assert emulator.count("PutObject") == 0
        gate.release()
        gate.wait_done(timeout=10, n=2)
    for thread in threads:
        thread.join(10)
    assert emulator.count("PutObject", status=200) == 2


def test_watch_waits_for_arrival_without_holding(emulator: Emulator, cos_client: CosS3Client) -> None:
    gate = watch(emulator, "PutObject", key="w.jpg")
    thread, _ = in_thread(lambda: cos_client.put_object(Bucket=BUCKET, Key="w.jpg", Body=b"x"))
    gate.wait_done(timeout=10)
    assert gate.arrived == 1 and emulator.get_object_state(BUCKET, "w.jpg") is not None
    gate.close()
    thread.join(10)


def test_waits_time_out_instead_of_hanging(emulator: Emulator) -> None:
    with pause(emulator, "PutObject") as gate:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="did not arrive"):
            gate.wait_arrived(timeout=0.2)
        with pytest.raises(TimeoutError, match="were not served"):
            gate.wait_done(timeout=0.2)
        assert time.monotonic() - start < 5


def test_a_never_released_request_goes_on_and_fails_the_test(emulator: Emulator, cos_client: CosS3Client) -> None:
    gate = pause(emulator, "PutObject", hold_timeout_s=0.3)
    thread, _ = in_thread(lambda: cos_client.put_object(Bucket=BUCKET, Key="a", Body=b"x"))
    gate.wait_done(timeout=10)  # went on by itself after the hold timeout
    thread.join(10)
    assert emulator.get_object_state(BUCKET, "a") is not None
    with pytest.raises(GateTimeout, match="never released"):
        gate.close()


def test_stopping_the_emulator_releases_held_requests(cos_client: CosS3Client, emulator: Emulator) -> None:
    gate = pause(emulator, "PutObject")
    _thread, _ = in_thread(lambda: cos_client.put_object(Bucket=BUCKET, Key="a", Body=b"x"))
    gate.wait_arrived(timeout=10)
    emulator.stop()
    gate.wait_done(timeout=10)


def test_pause_rejects_unknown_operations_and_bad_arguments(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        pause(emulator, "PutObjectTags")
    with pytest.raises(ValueError, match="count"):
        pause(emulator, "PutObject", count=0)
    with pytest.raises(ValueError, match="when"):
        pause(emulator, "PutObject", when="during")  # type: ignore[arg-type]
    with pause(emulator, "PutObject") as gate, pytest.raises(ValueError, match="n must be"):
        gate.wait_arrived(timeout=1, n=2)
