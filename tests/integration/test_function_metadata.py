"""Metadata mode: the labels go into x-cos-meta-* by a copy onto itself; nothing else changes."""

import threading
import time

import pytest

from cos_autotag.writeback import LABELS_META, MARKER_META, decode_labels_meta
from tests.support.constants import BUCKET
from tests.support.function_stack import running_stack
from tests.support.images import jpeg
from tests.support.scf import context

pytestmark = pytest.mark.integration

RICH = dict(
    CacheControl="max-age=3600",
    ContentDisposition='attachment; filename="photo.jpg"',
    ContentEncoding="identity",
    ContentLanguage="en",
    Expires="Wed, 21 Oct 2037 07:28:00 GMT",
    StorageClass="STANDARD_IA",
    Metadata={"x-cos-meta-camera": "pixel-8", "x-cos-meta-owner": "alice", "x-cos-meta-trip": "lisbon 2024"},
    Tagging="project=holiday&owner=alice",
)


@pytest.fixture
def stack():
    with running_stack() as s:
        yield s


def test_labels_written_and_everything_else_kept(stack):
    body = jpeg(21)
    stack.engine.register(
        body,
        {
            "camera": [
                {"Name": "beach", "Confidence": 93, "FirstCategory": "Scene", "SecondCategory": "Nature"},
                {"Name": "沙滩", "Confidence": 80, "FirstCategory": "Scene", "SecondCategory": "Nature"},
            ]
        },
    )
    rid = stack.put("trip/beach.jpg", body, **RICH)
    before = stack.emulator.get_object_state(BUCKET, "trip/beach.jpg")
    since = time.time()
    summary = stack.app(mode="metadata").handle(stack.event("trip/beach.jpg", rid), context())
    # GET Object acl: the copy carries the object's own ACL (a copy without it takes the bucket's).
    assert summary["labeled"] == 1 and summary["calls_total"] == 4
    assert stack.calls("trip/beach.jpg", since) == {
        "HeadObject": 1,
        "GetObjectACL": 1,
        "DetectLabel": 1,
        "CopyObject": 1,
    }
    after = stack.emulator.get_object_state(BUCKET, "trip/beach.jpg")
    assert after.body == before.body
    assert after.headers == before.headers  # Content-Type, Cache-Control, Disposition, Encoding, Expires...
    assert after.storage_class == "STANDARD_IA"
    assert after.tags == before.tags == {"project": "holiday", "owner": "alice"}
    assert {k: v for k, v in after.metadata.items() if k not in (MARKER_META, LABELS_META)} == before.metadata
    assert after.metadata[MARKER_META].startswith("v1:")
    assert after.metadata[LABELS_META].isascii()
    assert decode_labels_meta(after.metadata[LABELS_META]) == [("beach", 93), ("沙滩", 80)]


def test_own_copy_echo_costs_nothing_and_never_loops(stack):
    app = stack.app(mode="metadata")
    stack.emulator.add_trigger(BUCKET, app.handle, retry_delay_s=0.01)
    stack.put("loop/check.jpg", jpeg(22), Metadata={"x-cos-meta-owner": "carol"})
    # wait_idle counts an event from the moment its operation succeeded, so a (wrong) further
    # write by the echo's run would be waited for too.
    stack.emulator.wait_idle(20)
    runs = sorted(stack.emulator.invocations, key=lambda r: r.started_at)
    assert [r.event["Records"][0]["event"]["eventName"] for r in runs] == [
        "cos:ObjectCreated:Put",
        "cos:ObjectCreated:Copy",
    ]
    echo = runs[1].result
    assert echo["duplicates"] == 1 and echo["calls_total"] == 0
    assert stack.emulator.count("DetectLabel") == 1 and stack.emulator.count("CopyObject") == 1
    state = stack.emulator.get_object_state(BUCKET, "loop/check.jpg")
    assert state.metadata["x-cos-meta-owner"] == "carol" and MARKER_META in state.metadata


def test_copy_echo_without_metadata_in_the_event_costs_one_head(stack):
    app = stack.app(mode="metadata")
    rid = stack.put("echo.jpg", jpeg(23))
    app.handle(stack.event("echo.jpg", rid), context())
    since = time.time()
    summary = app.handle(stack.event("echo.jpg", "Y29weS1yZXE=", event_name="cos:ObjectCreated:Copy"), context())
    assert summary["duplicates"] == 1
    assert stack.calls("echo.jpg", since) == {"HeadObject": 1}


def test_duplicate_put_delivery_costs_one_head(stack):
    app = stack.app(mode="metadata")
    rid = stack.put("dup.jpg", jpeg(24))
    event = stack.event("dup.jpg", rid)
    app.handle(event, context())
    since = time.time()
    assert app.handle(event, context())["duplicates"] == 1
    assert stack.calls("dup.jpg", since) == {"HeadObject": 1}


def test_full_user_metadata_leaves_no_room_and_costs_no_detect(stack):
    rid = stack.put("meta-full.jpg", jpeg(25), Metadata={"x-cos-meta-blob": "x" * 2000})
    summary = stack.app(mode="metadata").handle(stack.event("meta-full.jpg", rid), context())
    assert summary["skipped"] == {"no room for metadata": 1}
    assert stack.emulator.count("DetectLabel") == 0
    assert stack.emulator.get_object_state(BUCKET, "meta-full.jpg").metadata == {"x-cos-meta-blob": "x" * 2000}


@pytest.mark.parametrize(
    "held",
    [
        pytest.param("DetectLabel", id="overwritten-during-detect"),
        pytest.param("CopyObject", id="overwritten-before-the-copy-lands"),
    ],
)
def test_overwritten_between_head_and_copy_is_not_clobbered(stack, held):
    """The copy is conditional on the ETag read by HEAD: newer content and metadata survive,
    whether the overwrite comes during detect-label or while the copy itself is in flight."""
    app = stack.app(mode="metadata")
    rid = stack.put("race.jpg", jpeg(26), Metadata={"x-cos-meta-v": "1"})
    results = []
    with stack.emulator.pause(held, key="race.jpg") as gate:
        worker = threading.Thread(target=lambda: results.append(app.handle(stack.event("race.jpg", rid), context())))
        worker.start()
        gate.wait_arrived(timeout=10)
        stack.put("race.jpg", jpeg(27), Metadata={"x-cos-meta-v": "2"})
        gate.release()
        worker.join(10)
    assert not worker.is_alive() and results and results[0]["labeled"] == 0
    state = stack.emulator.get_object_state(BUCKET, "race.jpg")
    assert state.metadata == {"x-cos-meta-v": "2"}
    assert state.body == jpeg(27)
