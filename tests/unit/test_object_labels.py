"""Reading labels back from tags and metadata: pure parsing, and the bounded parallel reader."""

from __future__ import annotations

import threading
from typing import Any

from cos_autotag.errors import CosCallError
from cos_autotag.label import Label
from cos_autotag.writeback import LABELS_META, MARKER_META, encode_labels_meta
from cos_autotag_tools.backfill.listing import ListedObject
from cos_autotag_tools.object_labels import (
    display_width,
    from_head,
    from_tags,
    label_key,
    label_lines,
    read_labels,
    read_many,
)


def test_tags_give_labels_most_confident_first_and_never_a_user_tag() -> None:
    tags = [
        ("owner", "alice"),
        ("autotagger", "bob"),
        ("autotag-note", "7"),
        ("浓缩咖啡", "99"),
        ("autotag:咖啡杯", "81"),
        ("autotag", "v1:abc"),
        ("autotag:浓缩咖啡", "96"),
        ("autotag:", "50"),
        ("autotag:odd", "high"),
    ]
    found = from_tags("k", tags)
    assert found.found_in == "tags" and found.marker == "v1:abc"
    assert found.labels == (("浓缩咖啡", 96), ("咖啡杯", 81))


def test_tags_without_marker_or_labels_are_not_labeled() -> None:
    found = from_tags("k", [("owner", "alice")])
    assert not found.labeled and found.found_in == "" and found.labels == ()
    # Labels left without their marker still show (e.g. a hand-edited tag set).
    assert from_tags("k", [("autotag:猫", "90")]).labels == (("猫", 90),)


def test_metadata_gives_decoded_chinese_labels_and_the_marker_and_ignores_user_metadata() -> None:
    head = {
        "x-cos-meta-album": "summer",
        MARKER_META.upper(): "v1:t",
        LABELS_META: encode_labels_meta([Label("拿铁", 70), Label("浓缩咖啡, 双份", 90)]),
        "etag": '"abc"',
    }
    found = from_head("k", head)
    assert found.found_in == "metadata" and found.marker == "v1:t"
    assert found.labels == (("浓缩咖啡, 双份", 90), ("拿铁", 70))
    assert not from_head("k", {"x-cos-meta-autotag-labelsx": "a:1"}).labeled


def test_labels_compare_normalized_and_case_folded() -> None:
    found = from_tags("k", [("autotag:Cat", "88"), ("autotag:ＴＶ", "70")])
    assert found.confidence("cat") == 88 and found.confidence(" CAT ") == 88
    assert found.confidence("tv") == 70
    assert found.confidence("dog") is None
    assert label_key("浓缩咖啡") == "浓缩咖啡"


def test_columns_line_up_with_wide_characters() -> None:
    assert display_width("猫a") == 3
    lines = label_lines([("猫", 93), ("cat", 5)])
    assert [display_width(line) for line in lines] == [len(lines[1])] * 2


class FakeGateway:
    """Counts reads; tags per key; a key listed in `fail` raises, in `gone` is 404."""

    def __init__(
        self,
        tags: dict[str, list[tuple[str, str]]],
        fail: frozenset[str] = frozenset(),
        gone: frozenset[str] = frozenset(),
    ):
        self.tags, self.fail, self.gone = tags, fail, gone
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.active = 0
        self.most_active = 0

    def _enter(self, op: str, key: str) -> None:
        with self.lock:
            self.calls.append((op, key))
            self.active += 1
            self.most_active = max(self.most_active, self.active)

    def _leave(self) -> None:
        with self.lock:
            self.active -= 1

    def get_tags(self, bucket: str, region: str, key: str) -> list[tuple[str, str]]:
        self._enter("tags", key)
        try:
            if key in self.gone:
                raise CosCallError("GetObjectTagging", "NoSuchKey", "gone", 404, "r", False)
            if key in self.fail:
                raise CosCallError("GetObjectTagging", "AccessDenied", "no", 403, "r", False)
            return self.tags.get(key, [])
        finally:
            self._leave()

    def head(self, bucket: str, region: str, key: str) -> dict[str, Any]:
        self._enter("head", key)
        self._leave()
        return {}


def test_auto_mode_reads_metadata_only_for_objects_without_tag_labels() -> None:
    gateway = FakeGateway({"a": [("autotag", "v1:x")], "b": [("owner", "x")]})
    assert read_labels(gateway, "b-1", "r", "a", "auto").found_in == "tags"  # type: ignore[arg-type]
    assert read_labels(gateway, "b-1", "r", "b", "auto").found_in == ""  # type: ignore[arg-type]
    read_labels(gateway, "b-1", "r", "b", "tags")  # type: ignore[arg-type]
    read_labels(gateway, "b-1", "r", "b", "metadata")  # type: ignore[arg-type]
    assert gateway.calls == [("tags", "a"), ("tags", "b"), ("head", "b"), ("tags", "b"), ("head", "b")]


def test_read_many_keeps_listing_order_reports_errors_and_bounds_the_queue() -> None:
    keys = [f"k{i:03d}" for i in range(100)]
    gateway = FakeGateway(
        {k: [("autotag:猫", str(i))] for i, k in enumerate(keys)}, fail=frozenset({"k010"}), gone=frozenset({"k020"})
    )
    listed_so_far: list[str] = []

    def listing() -> Any:
        for key in keys:
            listed_so_far.append(key)
            yield ListedObject(key, 10)

    results = []
    for result in read_many(gateway, "b-1", "r", listing(), "tags", 4):  # type: ignore[arg-type]
        # Never more than a few reads per worker ahead of what has been consumed.
        assert len(listed_so_far) <= len(results) + 1 + 4 * 4
        results.append(result)
    assert [r.listed.key for r in results] == keys
    assert results[10].error is not None and results[10].error.code == "AccessDenied" and not results[10].gone
    assert results[20].gone
    assert results[5].labels is not None and results[5].labels.labels == (("猫", 5),)
    assert gateway.most_active <= 4
