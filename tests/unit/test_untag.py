"""untag's pure parts: what it takes off an object, and what it keeps."""

from __future__ import annotations

from cos_autotag import cos_facts
from cos_autotag.writeback import (
    LABELS_META,
    MARKER_META,
    header_text,
    metadata_room,
    plan_metadata,
    plan_metadata_without_labels,
)
from cos_autotag_tools.untag import CHANGED, NOTHING, UNTAGGED, Outcome, Report, own_metadata, own_tags


def as_read(text: str) -> str:
    """A value as an HTTP client reads it back: its UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


HEAD = {
    "content-type": "image/jpeg",
    "cache-control": "max-age=60",
    "content-disposition": as_read('attachment; filename="海边.jpg"'),
    "etag": '"abc"',
    "content-length": "123",
    "x-cos-storage-class": "STANDARD_IA",
    "x-cos-meta-owner": as_read("小明"),
    "x-cos-meta-autotag-not": "mine",
    MARKER_META: "v1:tok",
    LABELS_META: "%E6%B2%99%E6%BB%A9:93",
}


def test_header_text_undoes_the_latin1_reading_and_leaves_real_text_alone() -> None:
    assert header_text(as_read("里斯本")) == "里斯本"
    assert header_text("里斯本") == "里斯本"  # already text
    assert header_text("café") == "café"  # latin-1 text that is not UTF-8 bytes: kept
    assert header_text("plain") == "plain"


def test_untag_plan_drops_only_the_functions_headers_and_keeps_the_rest_as_text() -> None:
    plan = plan_metadata_without_labels(HEAD)
    assert plan.metadata == {"x-cos-meta-owner": "小明", "x-cos-meta-autotag-not": "mine"}
    assert plan.headers == {
        "ContentType": "image/jpeg",
        "CacheControl": "max-age=60",
        "ContentDisposition": 'attachment; filename="海边.jpg"',
    }
    assert plan.storage_class == "STANDARD_IA"
    assert plan.written == []


def test_the_functions_own_plan_sends_user_metadata_back_as_text() -> None:
    plan = plan_metadata(HEAD, [], "tok2")
    assert plan.metadata["x-cos-meta-owner"] == "小明"
    assert plan.metadata[MARKER_META] == "v1:tok2"


def test_metadata_room_counts_the_bytes_cos_counts() -> None:
    small = {"x-cos-meta-a": as_read("小" * 100)}  # 300 bytes of UTF-8
    ascii_ = {"x-cos-meta-a": "x" * 300}
    assert metadata_room(small, "t") == metadata_room(ascii_, "t")
    assert metadata_room(ascii_, "t") < cos_facts.USER_META_MAX_BYTES - 300


def test_own_parts_are_told_from_the_users() -> None:
    tags = [("autotag", "v1:x"), ("autotag:沙滩", "93"), ("autotagged", "no"), ("owner", "alice")]
    assert own_tags(tags) == ["autotag", "autotag:沙滩"]
    assert own_metadata(HEAD) == [MARKER_META, LABELS_META]
    assert own_metadata({"x-cos-meta-autotag-not": "mine"}) == []


def test_the_report_counts_objects_not_tags() -> None:
    report = Report("b-1250000000", "p/", "auto", dry_run=False, listed=3)
    report.add(Outcome("p/a", UNTAGGED, ["autotag", "autotag:猫", "autotag:狗", MARKER_META]))
    report.add(Outcome("p/b", NOTHING))
    report.add(Outcome("p/c", CHANGED, reason="overwritten"))
    summary = report.as_dict()
    assert summary["removed"] == {"autotag": 1, "autotag:*": 1, MARKER_META: 1}
    assert (summary["untagged"], summary["nothing_to_remove"]) == (1, 1)
    assert summary["changed_during_run"] == [{"key": "p/c", "reason": "overwritten"}]
    text = report.render()
    assert "untagged              1" in text and "p/c: overwritten" in text
