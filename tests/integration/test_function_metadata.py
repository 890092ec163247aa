"""Metadata mode: the labels go into x-cos-meta-* by a copy onto itself; nothing else changes.

Every test runs under each profile of the contested COS rules (tests/support/profiles.py); what
a copy keeps (encryption, ACL, user metadata as HEAD reads it) is checked after labeling and
after `cos-autotag untag`.
"""

import json
import threading
import time

import pytest

from cos_autotag.errors import RetryableFailure
from cos_autotag.writeback import LABELS_META, MARKER_META, decode_labels_meta
from cos_autotag_tools.cli import main
from tests.support.constants import BUCKET, REGION
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.pauses import pause
from tests.support.profiles import PROFILE_PARAMS
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


@pytest.fixture(params=PROFILE_PARAMS)
def stack(request):
    with running_stack(profile=request.param) as s:
        yield s


def label(stack, key, body, **upload):
    """Upload with the SDK and run the function on the upload's event, as the trigger delivers it
    (the event's meta is the stored user metadata)."""
    rid = stack.put(key, body, **upload)
    state = stack.emulator.get_object_state(BUCKET, key)
    return stack.app(mode="metadata").handle(stack.event(key, rid, meta=dict(state.metadata)), context())


def untag(stack, tmp_path, monkeypatch, *extra):
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", f"http://127.0.0.1:{stack.emulator.port}")
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    argv = ["untag", "--bucket", BUCKET, "--region", REGION, "--mode", "metadata", "--no-progress"]
    code = main([*argv, "--report", str(report), *extra])
    return code, json.loads(report.read_text(encoding="utf-8"))


def head(stack, key):
    return stack.client.head_object(Bucket=BUCKET, Key=key)


SSE = {
    "AES256": {"ServerSideEncryption": "AES256"},
    "KMS": {"ServerSideEncryption": "cos/kms", "SSEKMSKeyId": "kms-key-1"},
}
SSE_HEADERS = ("x-cos-server-side-encryption", "x-cos-server-side-encryption-cos-kms-key-id")


@pytest.mark.parametrize("sse", sorted(SSE))
def test_an_encrypted_photo_stays_encrypted_with_its_key_after_labeling_and_untag(stack, sse, tmp_path, monkeypatch):
    label_summary = label(stack, "sse.jpg", jpeg(40), **SSE[sse])
    assert label_summary["labeled"] == 1, label_summary
    expected = {name: value for name, value in SSE[sse].items()}
    wanted = {"x-cos-server-side-encryption": expected["ServerSideEncryption"]}
    if "SSEKMSKeyId" in expected:
        wanted["x-cos-server-side-encryption-cos-kms-key-id"] = expected["SSEKMSKeyId"]
    state = stack.emulator.get_object_state(BUCKET, "sse.jpg")
    assert MARKER_META in state.metadata and dict(state.sse) == wanted
    assert {k: v for k, v in head(stack, "sse.jpg").items() if k in SSE_HEADERS} == wanted
    code, report = untag(stack, tmp_path, monkeypatch)
    assert code == 0 and report["untagged"] == 1, report
    state = stack.emulator.get_object_state(BUCKET, "sse.jpg")
    assert MARKER_META not in state.metadata and dict(state.sse) == wanted


def test_a_private_photo_in_a_public_read_bucket_stays_private(stack, tmp_path, monkeypatch):
    stack.emulator.set_bucket_acl(BUCKET, "public-read")
    assert label(stack, "private.jpg", jpeg(41), ACL="private")["labeled"] == 1
    acl = stack.client.get_object_acl(Bucket=BUCKET, Key="private.jpg")
    assert acl["CannedACL"] == "private"
    assert MARKER_META in stack.emulator.get_object_state(BUCKET, "private.jpg").metadata
    code, report = untag(stack, tmp_path, monkeypatch)
    assert code == 0 and report["untagged"] == 1, report
    assert stack.client.get_object_acl(Bucket=BUCKET, Key="private.jpg")["CannedACL"] == "private"
    # ...while a photo with no ACL of its own stays readable as the bucket makes it.
    assert label(stack, "public.jpg", jpeg(42))["labeled"] == 1
    assert stack.client.get_object_acl(Bucket=BUCKET, Key="public.jpg")["CannedACL"] == "public-read"


def test_an_object_whose_acl_cannot_be_read_is_left_untouched_with_the_fix(stack, tmp_path, monkeypatch):
    stack.emulator.set_faults(denied_ops=frozenset({"GetObjectACL"}))
    rid = stack.put("noacl.jpg", jpeg(43), Metadata={"x-cos-meta-owner": "alice"})
    before = stack.emulator.get_object_state(BUCKET, "noacl.jpg")
    with captured_logs() as logs:
        summary = stack.app(mode="metadata").handle(stack.event("noacl.jpg", rid), context())
    assert summary["labeled"] == 0 and summary["skipped"] == {"ACL unreadable (allow cos:GetObjectACL)": 1}
    assert stack.emulator.count("DetectLabel") == 0 and stack.emulator.count("CopyObject") == 0
    (warning,) = [line for line in logs if line["level"] == "warning" and "ACL" in line["message"]]
    assert "cos:GetObjectACL" in warning["fix"]
    after = stack.emulator.get_object_state(BUCKET, "noacl.jpg")
    assert (after.etag, after.metadata, after.last_modified) == (before.etag, before.metadata, before.last_modified)


def test_a_copy_answering_200_with_an_error_is_a_retryable_failure_not_a_label(stack):
    rid = stack.put("copyfail.jpg", jpeg(44), Metadata={"x-cos-meta-owner": "alice"})
    before = stack.emulator.get_object_state(BUCKET, "copyfail.jpg")
    stack.emulator.set_faults(copy_error_in_body="InternalError")
    with pytest.raises(RetryableFailure, match=r"copyfail\.jpg"):  # retried inside SCF's default 3 s, then by SCF
        stack.app(mode="metadata").handle(stack.event("copyfail.jpg", rid), context(3000))
    assert stack.emulator.count("CopyObject") >= 2
    after = stack.emulator.get_object_state(BUCKET, "copyfail.jpg")
    assert after.metadata == before.metadata == {"x-cos-meta-owner": "alice"}
    # Once COS copies again, SCF's retry labels it.
    stack.emulator.set_faults(copy_error_in_body=None)
    assert stack.app(mode="metadata").handle(stack.event("copyfail.jpg", rid), context())["labeled"] == 1


CHINESE = {"x-cos-meta-city": "里斯本", "x-cos-meta-owner": "小明 (李)", "x-cos-meta-note": "100% 海边"}


def test_chinese_user_metadata_reads_back_through_head_exactly_as_before(stack, tmp_path, monkeypatch):
    body = jpeg(45)
    stack.engine.register(
        body, {"camera": [{"Name": "沙滩", "Confidence": 90, "FirstCategory": "场景", "SecondCategory": "自然"}]}
    )
    rid = stack.put("zh.jpg", body, Metadata=CHINESE)
    read_before = {k: v for k, v in head(stack, "zh.jpg").items() if k.startswith("x-cos-meta-")}
    stored_before = dict(stack.emulator.get_object_state(BUCKET, "zh.jpg").metadata)
    summary = stack.app(mode="metadata").handle(stack.event("zh.jpg", rid, meta=stored_before), context())
    assert summary["labeled"] == 1, summary
    read_after = {k: v for k, v in head(stack, "zh.jpg").items() if k.startswith("x-cos-meta-")}
    assert {k: v for k, v in read_after.items() if k not in (MARKER_META, LABELS_META)} == read_before
    stored = stack.emulator.get_object_state(BUCKET, "zh.jpg").metadata
    assert {k: v for k, v in stored.items() if k not in (MARKER_META, LABELS_META)} == stored_before


def test_percent_looking_metadata_without_the_events_word_is_left_untouched(stack):
    """An event with no metadata (a backfill's, or a trigger that sends none): the function cannot
    tell a percent-encoded answer from the user's own text, so it writes nothing."""
    rid = stack.put("zh-noevent.jpg", jpeg(46), Metadata=CHINESE)
    before = stack.emulator.get_object_state(BUCKET, "zh-noevent.jpg")
    with captured_logs() as logs:
        summary = stack.app(mode="metadata").handle(stack.event("zh-noevent.jpg", rid), context())
    after = stack.emulator.get_object_state(BUCKET, "zh-noevent.jpg")
    if stack.emulator.profile.metadata_encoding == "percent":
        assert summary["skipped"] == {"left untouched: a copy could not keep what the object has": 1}
        assert any("percent-encoded" in line["message"] for line in logs if line["level"] == "warning")
        assert after.metadata == before.metadata and stack.emulator.count("DetectLabel") == 0
    else:  # raw UTF-8 answers are unambiguous
        assert summary["labeled"] == 1
        assert {k: v for k, v in after.metadata.items() if k not in (MARKER_META, LABELS_META)} == before.metadata


@pytest.mark.parametrize(
    "users",
    [{MARKER_META: "off"}, {LABELS_META: "my own list"}, {MARKER_META: "v3:later", LABELS_META: "x"}],
    ids=["marker-header", "labels-header", "both"],
)
def test_the_users_autotag_headers_survive_labeling_and_untag(stack, users, tmp_path, monkeypatch):
    metadata = {**users, "x-cos-meta-owner": "alice"}
    with captured_logs() as logs:
        summary = label(stack, "mine.jpg", jpeg(47), Metadata=metadata)
    (reason,) = summary["skipped"]
    assert "is the user's" in reason and "rename" in reason
    assert stack.emulator.count("DetectLabel") == 0 and stack.emulator.count("CopyObject") == 0
    assert any("rename it" in line["message"] for line in logs if line["level"] == "warning")
    assert stack.emulator.get_object_state(BUCKET, "mine.jpg").metadata == metadata
    code, report = untag(stack, tmp_path, monkeypatch)
    assert code == 0 and report["untagged"] == 0 and [e["key"] for e in report["left_as_is"]] == ["mine.jpg"]
    assert "rename it" in report["left_as_is"][0]["reason"]
    assert stack.emulator.get_object_state(BUCKET, "mine.jpg").metadata == metadata
    assert stack.emulator.count("CopyObject") == 0


def test_untag_reports_a_metadata_change_made_while_its_copy_ran(stack, tmp_path, monkeypatch):
    """A copy keeps the ETag, so a metadata change by another copy passes untag's condition:
    untag reads the object again after its copy and reports it, never `untagged`."""
    assert label(stack, "race.jpg", jpeg(48), Metadata={"x-cos-meta-v": "1"})["labeled"] == 1
    results = []
    with pause(stack.emulator, "CopyObject", key="race.jpg", when="after") as gate:
        worker = threading.Thread(target=lambda: results.append(untag(stack, tmp_path, monkeypatch)))
        worker.start()
        gate.wait_arrived(timeout=10)
        # The user's own metadata edit lands right after untag's copy, before untag hears back.
        stack.client.copy_object(
            Bucket=BUCKET, Key="race.jpg", CopySource={"Bucket": BUCKET, "Key": "race.jpg", "Region": REGION},
            CopyStatus="Replaced", ContentType="image/jpeg", Metadata={"x-cos-meta-v": "2"},
        )  # fmt: skip
        gate.release()
        worker.join(20)
    assert not worker.is_alive() and results
    code, report = results[0]
    assert code == 1 and report["untagged"] == 0
    assert [e["key"] for e in report["changed_during_run"]] == ["race.jpg"], report
    assert stack.emulator.get_object_state(BUCKET, "race.jpg").metadata == {"x-cos-meta-v": "2"}


def test_untag_reports_an_overwrite_before_its_copy_and_keeps_the_new_object(stack, tmp_path, monkeypatch):
    assert label(stack, "race2.jpg", jpeg(49), Metadata={"x-cos-meta-v": "1"})["labeled"] == 1
    results = []
    with pause(stack.emulator, "CopyObject", key="race2.jpg") as gate:
        worker = threading.Thread(target=lambda: results.append(untag(stack, tmp_path, monkeypatch)))
        worker.start()
        gate.wait_arrived(timeout=10)
        stack.put("race2.jpg", jpeg(50), Metadata={"x-cos-meta-v": "2"})
        gate.release()
        worker.join(20)
    assert not worker.is_alive() and results
    code, report = results[0]
    assert code == 1 and [e["key"] for e in report["changed_during_run"]] == ["race2.jpg"], report
    state = stack.emulator.get_object_state(BUCKET, "race2.jpg")
    assert (state.body, state.metadata) == (jpeg(50), {"x-cos-meta-v": "2"})


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
    with pause(stack.emulator, held, key="race.jpg") as gate:
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
