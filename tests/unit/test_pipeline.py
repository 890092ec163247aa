"""The pipeline's branches, through `Pipeline.process`, with in-memory ports and no socket.

Each test names one branch of the flow in the README. The fakes below are the two ports
(object storage, label detection) and the strict store, kept as small as the interfaces.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from cos_autotag.errors import CosCallError, StoreUnavailable
from cos_autotag.events import CosRecord
from cos_autotag.idempotency import Claim
from cos_autotag.modes import mode_for
from cos_autotag.outcome import Outcome, Reason
from cos_autotag.pipeline import Pipeline
from cos_autotag.retry import Deadline
from cos_autotag.settings import Settings
from cos_autotag.writeback import LABELS_META, MARKER_META, MetadataPlan, marker_value
from cos_autotag_tools import cos_facts
from cos_autotag_tools.backfill.ports import Relabel

BUCKET, REGION = "photos-1250000000", "ap-guangzhou"
JPEG_HEAD = b"\xff\xd8\xff\xe0" + b"\x00" * 60


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test of the pipeline opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)


def error(op: str, code: str, status: int, retryable: bool = False) -> CosCallError:
    return CosCallError(op, code, "scripted", status, "req-1", retryable)


@dataclass
class Obj:
    tags: list[tuple[str, str]] = field(default_factory=list)
    head: dict[str, str] = field(default_factory=lambda: {"content-type": "image/jpeg", "etag": '"e1"'})
    body: bytes = JPEG_HEAD


class FakeStore:
    """Object storage in memory. `fail[op]` raises once per listed error; `before[op]` runs first."""

    def __init__(self, objects: dict[str, Obj]) -> None:
        self.objects = objects
        self.fail: dict[str, list[CosCallError]] = {}
        self.before: dict[str, Callable[[], None]] = {}
        self.calls: list[tuple[str, str]] = []

    def _enter(self, op: str, key: str) -> Obj:
        self.calls.append((op, key))
        if op in self.before:
            self.before.pop(op)()
        if self.fail.get(op):
            raise self.fail[op].pop(0)
        if key not in self.objects:
            raise error(op, "NoSuchKey", 404)
        return self.objects[key]

    def get_tags(self, bucket: str, region: str, key: str) -> list[tuple[str, str]]:
        return list(self._enter("GetObjectTagging", key).tags)

    def put_tags(self, bucket: str, region: str, key: str, tags: Sequence[tuple[str, str]]) -> None:
        self._enter("PutObjectTagging", key).tags = list(tags)

    def head(self, bucket: str, region: str, key: str) -> dict[str, str]:
        return dict(self._enter("HeadObject", key).head)

    def get_acl(self, bucket: str, region: str, key: str) -> Any:
        self._enter("GetObjectACL", key)
        owner = {"Type": "CanonicalUser", "ID": "qcs::cam::uin/1:uin/1"}
        return {"AccessControlList": {"Grant": [{"Grantee": owner, "Permission": "FULL_CONTROL"}]}}

    def read_first_bytes(self, bucket: str, region: str, key: str, count: int) -> bytes:
        return self._enter("GetObject", key).body[:count]

    def copy_in_place(self, bucket: str, region: str, key: str, plan: MetadataPlan, if_match: str) -> None:
        obj = self._enter("CopyObject", key)
        if obj.head.get("etag") != if_match:
            raise error("CopyObject", "PreconditionFailed", 412)
        kept = {k: v for k, v in obj.head.items() if not k.startswith(cos_facts.USER_META_PREFIX)}
        obj.head = {**kept, **plan.metadata}

    def thumbnail_url(self, bucket: str, region: str, key: str, rule: str) -> str:
        return f"https://{bucket}.cos.{region}.myqcloud.com/{key}?sign&{rule}"


class FakeDetector:
    def __init__(self, labels: list[tuple[str, int]]) -> None:
        self.labels = labels
        self.fail: list[CosCallError] = []
        self.seen: list[tuple[str, str | None]] = []

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        self.seen.append((key, detect_url))
        if self.fail:
            raise self.fail.pop(0)
        return {"Labels": [{"Name": n, "Confidence": str(c)} for n, c in self.labels]}


class FakeGuard:
    def __init__(self, claim: Claim | None = None, unavailable: bool = False) -> None:
        self.claim_answer, self.unavailable = claim or Claim.NEW, unavailable
        self.log: list[str] = []

    def claim(self, record: CosRecord, deadline: Deadline) -> Claim:
        self.log.append("claim")
        if self.unavailable:
            raise StoreUnavailable("connection refused")
        return self.claim_answer

    def complete(self, record: CosRecord, deadline: Deadline) -> None:
        self.log.append("complete")

    def release(self, record: CosRecord, deadline: Deadline) -> None:
        self.log.append("release")


class CaptureLog:
    def __init__(self, lines: list[tuple[str, str, dict[str, Any]]] | None = None, **bound: Any) -> None:
        self.lines = [] if lines is None else lines
        self.bound = bound

    def bind(self, **fields: Any) -> CaptureLog:
        return CaptureLog(self.lines, **{**self.bound, **fields})

    def _add(self, level: str, message: str, **fields: Any) -> None:
        self.lines.append((level, message, {**self.bound, **fields}))

    def info(self, message: str, **fields: Any) -> None:
        self._add("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._add("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._add("error", message, **fields)

    def messages(self, level: str) -> list[str]:
        return [m for lv, m, _ in self.lines if lv == level]


@dataclass
class Stack:
    store: FakeStore
    detector: FakeDetector
    log: CaptureLog
    pipeline: Pipeline

    def run(self, record: CosRecord) -> Any:
        return self.pipeline.process(record, Deadline(30))


def stack(
    objects: dict[str, Obj] | None = None,
    labels: list[tuple[str, int]] | None = None,
    guard: FakeGuard | None = None,
    relabel: bool = False,
    **settings: Any,
) -> Stack:
    store = FakeStore({"a.jpg": Obj()} if objects is None else objects)
    detector = FakeDetector([("玩具", 88), ("毛绒玩具", 87), ("泰迪熊", 77)] if labels is None else labels)
    log = CaptureLog()
    mode = Relabel(mode_for(Settings(**settings), store)) if relabel else None
    pipeline = Pipeline(Settings(**settings), store, detector, guard, log, mode=mode)
    return Stack(store, detector, log, pipeline)


def put(key: str = "a.jpg", **fields: Any) -> CosRecord:
    defaults: dict[str, Any] = dict(size=1000, content_type="image/jpeg", vid="v1", upload_request_id="r1")
    return CosRecord(BUCKET, REGION, key, cos_facts.EVENT_PUT, **{**defaults, **fields})


def ops(s: Stack) -> list[str]:
    return [op for op, _ in s.store.calls]


# --- tags mode ----------------------------------------------------------------------------


def test_tags_mode_labels_in_four_calls_keeping_the_users_tags() -> None:
    s = stack({"a.jpg": Obj(tags=[("owner", "alice")])})
    result = s.run(put())
    assert result.outcome == Outcome.LABELED
    assert ops(s) == ["GetObjectTagging", "GetObjectTagging", "PutObjectTagging"] and len(s.detector.seen) == 1
    tags = dict(s.store.objects["a.jpg"].tags)
    assert tags["owner"] == "alice" and tags["autotag:玩具"] == "88" and tags["autotag"].startswith("v2:")
    assert [lb["name"] for lb in result.labels] == ["玩具", "毛绒玩具", "泰迪熊"]


def test_a_marker_for_this_upload_is_a_duplicate_for_one_read() -> None:
    record = put()
    s = stack({"a.jpg": Obj(tags=[("autotag", marker_value(record.upload_token))])})
    result = s.run(record)
    assert (result.outcome, result.reason) == (Outcome.DUPLICATE, Reason.MARKER_ON_OBJECT)
    assert ops(s) == ["GetObjectTagging"] and s.detector.seen == []


def test_relabel_ignores_the_marker_and_replaces_the_old_labels() -> None:
    s = stack({"a.jpg": Obj(tags=[("autotag", "v1"), ("autotag:旧", "50"), ("owner", "bob")])}, relabel=True)
    result = s.pipeline.process(put()._replace(vid="", upload_request_id=""), Deadline(30))
    assert result.outcome == Outcome.LABELED
    tags = dict(s.store.objects["a.jpg"].tags)
    assert "autotag:旧" not in tags and tags["autotag:玩具"] == "88" and tags["owner"] == "bob"


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_404_on_every_reading_of_the_key_is_object_gone(mode: str) -> None:
    s = stack({}, mode=mode)
    result = s.run(put("a+b.jpg", key_alternatives=("a b.jpg",)))
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.OBJECT_GONE)
    assert [key for _, key in s.store.calls] == ["a+b.jpg", "a b.jpg"]
    assert s.detector.seen == []


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_404_on_the_first_reading_resolves_the_second(mode: str) -> None:
    s = stack({"a b.jpg": Obj()}, mode=mode)
    result = s.run(put("a+b.jpg", key_alternatives=("a b.jpg",)))
    assert result.outcome == Outcome.LABELED and result.key == "a b.jpg"
    assert all(key == "a b.jpg" for _, key in s.store.calls[1:]) and s.detector.seen[0][0] == "a b.jpg"


def test_no_room_for_tags_costs_no_detect_label() -> None:
    users = [(f"k{i}", "v") for i in range(cos_facts.TAGS_MAX_PER_OBJECT - 1)]
    s = stack({"a.jpg": Obj(tags=users)})
    result = s.run(put())
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.NO_ROOM_FOR_TAGS)
    assert s.detector.seen == [] and s.store.objects["a.jpg"].tags == users


def test_non_ascii_tags_refused_by_cos_are_written_encoded_and_the_choice_is_kept() -> None:
    s = stack(labels=[("泰迪熊", 90), ("teddy bear", 80)])
    s.store.fail["PutObjectTagging"] = [error("PutObjectTagging", "InvalidTag", 400)]
    result = s.run(put())
    assert result.outcome == Outcome.LABELED
    assert [lb["name"] for lb in result.labels] == ["泰迪熊", "teddy bear"]
    tags = dict(s.store.objects["a.jpg"].tags)
    assert tags["autotag:b64:" + base64.b64encode("泰迪熊".encode()).decode()] == "90"
    assert tags["autotag:teddy bear"] == "80"
    assert ops(s).count("PutObjectTagging") == 2
    (warning,) = [m for m in s.log.messages("warning") if "InvalidTag" in m]
    assert "AUTOTAG_TAG_TEXT=ascii-safe" in warning and "AUTOTAG_TAG_TEXT=utf8" in warning
    # The next record goes straight to the encoded form, with no second warning.
    s.store.objects["b.jpg"] = Obj()
    s.store.calls.clear()
    assert s.run(put("b.jpg")).outcome == Outcome.LABELED
    assert ops(s).count("PutObjectTagging") == 1
    assert "autotag:b64:" + base64.b64encode("泰迪熊".encode()).decode() in dict(s.store.objects["b.jpg"].tags)
    assert len([m for m in s.log.messages("warning") if "InvalidTag" in m]) == 1


def test_under_utf8_a_refused_tag_set_fails_the_record_with_the_fix() -> None:
    s = stack(labels=[("泰迪熊", 90)], tag_text="utf8")
    s.store.fail["PutObjectTagging"] = [error("PutObjectTagging", "InvalidTag", 400)]
    result = s.run(put())
    assert result.outcome == Outcome.FAILED and not result.retryable and result.labels == []
    assert "AUTOTAG_TAG_TEXT=auto or ascii-safe" in result.fix
    assert dict(s.store.objects["a.jpg"].tags) == {}


def test_a_users_tag_named_like_the_marker_is_a_skip_before_paying() -> None:
    s = stack({"a.jpg": Obj(tags=[("autotag", "off"), ("autotag:note", "keep me")])})
    result = s.run(put())
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.MARKER_TAG_TAKEN)
    assert ops(s) == ["GetObjectTagging"] and s.detector.seen == []
    assert s.store.objects["a.jpg"].tags == [("autotag", "off"), ("autotag:note", "keep me")]


def test_tags_changed_during_detect_label_are_kept_and_the_object_labeled_again() -> None:
    s = stack()

    def user_tags_it() -> None:
        s.store.objects["a.jpg"].tags = [("owner", "carol")]

    original_detect = s.detector.detect_labels

    def detect_then_tag(*args: Any, **kwargs: Any) -> Any:
        if len(s.detector.seen) == 0:
            user_tags_it()
        return original_detect(*args, **kwargs)

    s.detector.detect_labels = detect_then_tag  # type: ignore[method-assign]
    result = s.run(put())
    assert result.outcome == Outcome.LABELED and len(s.detector.seen) == 2
    assert dict(s.store.objects["a.jpg"].tags)["owner"] == "carol"


def test_an_object_that_keeps_changing_fails_retryably_and_writes_nothing() -> None:
    s = stack()
    original_get = s.store.get_tags
    reads = iter(range(100))

    def changing(bucket: str, region: str, key: str) -> list[tuple[str, str]]:
        s.store.objects[key].tags = [("n", str(next(reads)))]
        return original_get(bucket, region, key)

    s.store.get_tags = changing  # type: ignore[method-assign]
    result = s.run(put())
    assert result.outcome == Outcome.FAILED and result.retryable
    assert "kept changing" in result.reason
    assert "PutObjectTagging" not in ops(s)


def test_a_detect_label_image_rejection_is_a_skip() -> None:
    s = stack()
    s.detector.fail = [error("DetectLabel", cos_facts.CI_CODE_NOT_AN_IMAGE, 400)]
    result = s.run(put())
    assert result.outcome == Outcome.SKIPPED
    assert result.reason == Reason.rejected_by_detect_label(cos_facts.CI_CODE_NOT_AN_IMAGE)
    assert "PutObjectTagging" not in ops(s)


@pytest.mark.parametrize(
    ("op", "code", "status", "says"),
    [
        ("GetObjectTagging", "NoSuchBucket", 404, "no such bucket"),
        ("GetObjectTagging", "AccessDenied", 403, "cos-autotag policy"),
        ("PutObjectTagging", "AccessDenied", 403, "PutObjectTagging"),
        ("GetObjectTagging", "SignatureDoesNotMatch", 403, "execution role"),
        ("DetectLabel", "UnknownCIError", 403, "bind the bucket to Cloud Infinite"),
    ],
)
def test_a_deployment_error_is_a_failure_with_its_fix_never_object_gone(
    op: str, code: str, status: int, says: str
) -> None:
    s = stack()
    if op == "DetectLabel":
        s.detector.fail = [error(op, code, status)]
    else:
        s.store.fail[op] = [error(op, code, status)]
    result = s.run(put())
    assert result.outcome == Outcome.FAILED and not result.retryable
    assert result.reason == Reason.misconfigured(code, op) and says in result.fix
    assert result.reason != Reason.OBJECT_GONE


def test_no_label_above_the_threshold_writes_the_marker_and_warns_with_the_best() -> None:
    s = stack(labels=[("玩具", 30), ("纺织品", 20)], min_confidence=50)
    result = s.run(put())
    assert result.outcome == Outcome.LABELED and result.labels == []
    assert dict(s.store.objects["a.jpg"].tags)["autotag"].startswith("v2:")
    (line,) = [f for lv, m, f in s.log.lines if lv == "warning" and "AUTOTAG_MIN_CONFIDENCE" in m]
    assert line["best"][0] == {"name": "玩具", "confidence": 30}


def test_a_large_photo_is_labeled_through_a_rendition_url() -> None:
    s = stack()
    result = s.run(put(size=cos_facts.DETECT_MAX_BYTES + 1))
    assert result.outcome == Outcome.LABELED
    _, url = s.detector.seen[0]
    assert url is not None and "imageMogr2/thumbnail" in url


def test_an_unknown_type_is_decided_from_the_first_bytes() -> None:
    s = stack({"noext": Obj(body=b"%PDF-1.7")})
    result = s.run(put("noext", content_type=""))
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.NOT_AN_IMAGE)
    assert "GetObject" in ops(s) and s.detector.seen == []


# --- metadata mode --------------------------------------------------------------------------


def test_metadata_mode_copies_in_place_keeping_user_metadata() -> None:
    obj = Obj(head={"content-type": "image/jpeg", "etag": '"e1"', "x-cos-meta-owner": "alice"})
    s = stack({"a.jpg": obj}, mode="metadata")
    result = s.run(put())
    # GET Object acl: the copy carries the object's ACL (436/10881 gives a copy the bucket's otherwise).
    assert result.outcome == Outcome.LABELED and ops(s) == ["HeadObject", "GetObjectACL", "CopyObject"]
    head = s.store.objects["a.jpg"].head
    assert head["x-cos-meta-owner"] == "alice" and MARKER_META in head and "%E7%8E%A9%E5%85%B7:88" in head[LABELS_META]


def test_metadata_mode_recognises_its_own_copy_from_the_event_for_no_call() -> None:
    record = put()
    echo = record._replace(event_name=cos_facts.EVENT_COPY, user_meta={MARKER_META: marker_value("other")})
    s = stack(mode="metadata")
    result = s.run(echo)
    assert (result.outcome, result.reason) == (Outcome.DUPLICATE, Reason.MARKER_IN_EVENT) and s.store.calls == []


def test_412_on_the_copy_means_a_newer_upload_and_is_skipped() -> None:
    s = stack(mode="metadata")
    s.store.fail["CopyObject"] = [error("CopyObject", "PreconditionFailed", 412)]
    result = s.run(put())
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.CHANGED_DURING_PROCESSING)


def test_no_room_for_metadata_costs_no_detect_label() -> None:
    big = {"content-type": "image/jpeg", "etag": '"e"', "x-cos-meta-blob": "x" * cos_facts.USER_META_MAX_BYTES}
    s = stack({"a.jpg": Obj(head=big)}, mode="metadata")
    result = s.run(put())
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.NO_ROOM_FOR_METADATA)
    assert s.detector.seen == []


def test_metadata_mode_decides_an_unknown_type_from_head_without_reading_bytes() -> None:
    obj = Obj(head={"content-type": "text/plain", "etag": '"e"', "content-length": "10"})
    s = stack({"notes": obj}, mode="metadata")
    result = s.run(put("notes", content_type=""))
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.NOT_AN_IMAGE)
    assert ops(s) == ["HeadObject"]


# --- the strict store -------------------------------------------------------------------------


def test_store_unavailable_falls_back_to_the_marker_with_a_warning() -> None:
    guard = FakeGuard(unavailable=True)
    s = stack(guard=guard)
    result = s.run(put())
    assert result.outcome == Outcome.LABELED and guard.log == ["claim"]
    assert any("falling back to the object marker" in m for m in s.log.messages("warning"))


def test_store_says_duplicate_for_no_call() -> None:
    s = stack(guard=FakeGuard(Claim.DUPLICATE))
    result = s.run(put())
    assert (result.outcome, result.reason) == (Outcome.DUPLICATE, Reason.COMPLETED_IN_STORE) and s.store.calls == []


def test_store_in_progress_fails_retryably_and_releases_nothing_it_does_not_hold() -> None:
    guard = FakeGuard(Claim.IN_PROGRESS)
    s = stack(guard=guard)
    result = s.run(put())
    assert result.outcome == Outcome.FAILED and result.retryable and guard.log == ["claim"]


def test_a_failure_releases_the_claim_and_a_success_completes_it() -> None:
    failing = FakeGuard()
    s = stack(guard=failing)
    s.detector.fail = [error("DetectLabel", "InternalError", 500, retryable=False)]
    assert s.run(put()).outcome == Outcome.FAILED and failing.log == ["claim", "release"]
    ok = FakeGuard()
    assert stack(guard=ok).run(put()).outcome == Outcome.LABELED and ok.log == ["claim", "complete"]
