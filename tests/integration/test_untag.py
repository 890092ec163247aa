"""`cos-autotag untag` end to end: objects labeled by the real function, then untagged through
the CLI entry point, the unmodified SDK over HTTP against the emulator.

The emulator's stored state is the ground truth: after untag every object must be exactly what
it was before the function labeled it (body, content headers, user metadata, storage class, tags).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from cos_autotag.writeback import LABEL_TAG_PREFIX, LABELS_META, MARKER_META, MARKER_TAG
from cos_autotag_tools import untag
from cos_autotag_tools.cli import main
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.function_stack import Stack, running_stack
from tests.support.images import jpeg
from tests.support.scf import context

pytestmark = pytest.mark.integration

LABELS = [
    {"Name": "沙滩", "Confidence": 93, "FirstCategory": "场景", "SecondCategory": "自然"},
    {"Name": "beach", "Confidence": 81, "FirstCategory": "Scene", "SecondCategory": "Nature"},
]
RICH: dict[str, Any] = dict(
    CacheControl="max-age=3600",
    ContentDisposition='attachment; filename="photo.jpg"',
    ContentEncoding="identity",
    ContentLanguage="zh-CN",
    Expires="Wed, 21 Oct 2037 07:28:00 GMT",
    StorageClass="STANDARD_IA",
    Metadata={"x-cos-meta-city": "里斯本", "x-cos-meta-owner": "小明", "x-cos-meta-trip": "lisbon 2024"},
    Tagging=urlencode({"project": "假日", "owner": "alice"}),
)
# key -> (the function's mode, upload keywords); "plain/..." is never labeled.
OBJECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tags/rich.jpg": ("tags", RICH),
    "tags/bare.jpg": ("tags", {}),  # no tag of the user's: the tagging is deleted
    "meta/rich.jpg": ("metadata", RICH),
    "meta/cold.jpg": ("metadata", dict(StorageClass="INTELLIGENT_TIERING", Metadata={"x-cos-meta-note": "海边"})),
    "plain/untouched.jpg": ("", dict(Tagging="autotagged=no", Metadata={"x-cos-meta-autotag-not": "mine"})),
}


def snapshot(stack: Stack, key: str) -> dict[str, Any]:
    state = stack.emulator.get_object_state(BUCKET, key)
    assert state is not None
    return {
        "body": state.body,
        "headers": dict(state.headers),
        "metadata": dict(state.metadata),
        "tags": dict(state.tags),
        "storage_class": state.storage_class,
    }


def everything(stack: Stack) -> dict[str, dict[str, Any]]:
    return {key: snapshot(stack, key) for key in OBJECTS}


def upload_and_label(stack: Stack, key: str, seed: int, mode: str, upload: dict[str, Any]) -> dict[str, Any]:
    """Upload through the SDK, label with the real function in `mode` (if any); the state in between."""
    body = jpeg(seed)
    stack.engine.register(body, {"camera": LABELS})
    rid = stack.put(key, body, **upload)
    before = snapshot(stack, key)
    if mode:
        summary = stack.app(mode=mode).handle(stack.event(key, rid), context())
        assert summary["labeled"] == 1, summary
    return before


@pytest.fixture
def labeled(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, dict[str, dict[str, Any]]]]:
    """The stack with OBJECTS labeled by the function, and each object's state before labeling."""
    with running_stack() as stack:
        before = {
            key: upload_and_label(stack, key, seed, mode, upload)
            for seed, (key, (mode, upload)) in enumerate(OBJECTS.items())
        }
        after = everything(stack)
        assert (
            MARKER_TAG in after["tags/rich.jpg"]["tags"] and LABEL_TAG_PREFIX + "沙滩" in after["tags/rich.jpg"]["tags"]
        )
        assert MARKER_META in after["meta/rich.jpg"]["metadata"] and LABELS_META in after["meta/cold.jpg"]["metadata"]
        for key in ("meta/rich.jpg", "meta/cold.jpg"):  # the function's copy kept the user's (Chinese) metadata
            ours = {MARKER_META, LABELS_META}
            assert {k: v for k, v in after[key]["metadata"].items() if k not in ours} == before[key]["metadata"]
        assert after["plain/untouched.jpg"] == before["plain/untouched.jpg"]
        for name, value in {
            "TENCENTCLOUD_SECRETID": SECRET_ID,
            "TENCENTCLOUD_SECRETKEY": SECRET_KEY,
            "AUTOTAG_COS_ENDPOINT": f"http://127.0.0.1:{stack.emulator.port}",
        }.items():
            monkeypatch.setenv(name, value)
        stack.emulator.clear_logs()
        yield stack, before


def run(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    code = main(["untag", "--bucket", BUCKET, "--region", REGION, "--no-progress", "--report", str(report), *extra])
    return code, json.loads(report.read_text(encoding="utf-8"))


def writes(stack: Stack) -> Counter[str]:
    ops = Counter(r.op for r in stack.emulator.requests)
    reads = ("ListObjects", "GetObjectTagging", "HeadObject", "GetObjectACL")
    return Counter({op: n for op, n in ops.items() if op not in reads})


def test_untag_leaves_every_object_exactly_as_before_labeling(
    labeled: tuple[Stack, dict[str, dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, before = labeled
    code, report = run(tmp_path)
    assert code == 0, report
    assert everything(stack) == before
    assert (report["listed"], report["untagged"], report["nothing_to_remove"]) == (5, 4, 1)
    assert report["changed_during_run"] == report["failed"] == []
    assert report["removed"] == {"autotag": 2, "autotag:*": 2, MARKER_META: 2, LABELS_META: 2}
    # A tag set with the user's tags left is written back; one with none left is deleted.
    assert writes(stack) == {"PutObjectTagging": 1, "DeleteObjectTagging": 1, "CopyObject": 2}
    err = capsys.readouterr().err
    assert "cos:ObjectCreated:*" in err and "untagged              4" in err

    # Run again: nothing of the function's is left, nothing is written.
    stack.emulator.clear_logs()
    code, again = run(tmp_path)
    assert code == 0 and again["untagged"] == 0 and again["nothing_to_remove"] == 5
    assert writes(stack) == {}


def test_each_mode_removes_only_its_own_place(labeled: tuple[Stack, dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    stack, before = labeled
    labeled_state = everything(stack)
    code, report = run(tmp_path, "--mode", "tags")
    assert code == 0 and report["untagged"] == 2
    now = everything(stack)
    assert {k: now[k] for k in ("tags/rich.jpg", "tags/bare.jpg")} == {
        k: before[k] for k in ("tags/rich.jpg", "tags/bare.jpg")
    }
    assert {k: now[k] for k in ("meta/rich.jpg", "meta/cold.jpg")} == {
        k: labeled_state[k] for k in ("meta/rich.jpg", "meta/cold.jpg")
    }
    assert "HeadObject" not in Counter(r.op for r in stack.emulator.requests if r.key == "meta/rich.jpg")

    code, report = run(tmp_path, "--mode", "metadata", "--prefix", "meta/", "--concurrency", "1")
    assert code == 0 and (report["listed"], report["untagged"]) == (2, 2)
    assert everything(stack) == before


def test_a_dry_run_changes_nothing_and_says_what_it_would_remove(
    labeled: tuple[Stack, dict[str, dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, _ = labeled
    labeled_state = everything(stack)
    etags = {key: stack.emulator.get_object_state(BUCKET, key).etag for key in OBJECTS}  # type: ignore[union-attr]
    code, report = run(tmp_path, "--dry-run")
    assert code == 0
    assert everything(stack) == labeled_state
    assert {key: stack.emulator.get_object_state(BUCKET, key).etag for key in OBJECTS} == etags  # type: ignore[union-attr]
    assert writes(stack) == {}
    assert (report["would_untag"], report["untagged"], report["nothing_to_remove"]) == (4, 0, 1)
    assert report["removed"] == {"autotag": 2, "autotag:*": 2, MARKER_META: 2, LABELS_META: 2}
    out, err = capsys.readouterr()
    would = [json.loads(line) for line in out.splitlines() if '"would untag"' in line]
    assert {line["key"] for line in would} == {"tags/rich.jpg", "tags/bare.jpg", "meta/rich.jpg", "meta/cold.jpg"}
    assert "would untag           4  (nothing was changed)" in err


def overwrite_after(monkeypatch: pytest.MonkeyPatch, method: str, key: str, overwrite: Callable[[], object]) -> None:
    """Make untag's gateway run `overwrite` right after its `method` (head or get_tags) reads `key`."""
    real = getattr(untag.UntagGateway, method)

    def then_overwritten(self: untag.UntagGateway, bucket: str, region: str, read_key: str) -> Any:
        answer = real(self, bucket, region, read_key)
        if read_key == key:
            overwrite()
        return answer

    monkeypatch.setattr(untag.UntagGateway, method, then_overwritten)


def test_an_object_overwritten_before_its_metadata_copy_is_reported_not_clobbered(
    labeled: tuple[Stack, dict[str, dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, before = labeled
    new_body = jpeg(99)
    # The user uploads new content right after untag's HEAD.
    overwrite_after(
        monkeypatch,
        "head",
        "meta/rich.jpg",
        lambda: stack.put("meta/rich.jpg", new_body, Metadata={"x-cos-meta-v": "2"}),
    )
    code, report = run(tmp_path, "--mode", "metadata")
    assert code == 1
    assert report["changed_during_run"] == [
        {"key": "meta/rich.jpg", "reason": "overwritten before its metadata could be rewritten: left as is"}
    ]
    state = stack.emulator.get_object_state(BUCKET, "meta/rich.jpg")
    assert state is not None and (state.body, state.metadata) == (new_body, {"x-cos-meta-v": "2"})
    assert snapshot(stack, "meta/cold.jpg") == before["meta/cold.jpg"]
    assert Counter((r.op, r.status) for r in stack.emulator.requests if r.op == "CopyObject") == {
        ("CopyObject", 412): 1,
        ("CopyObject", 200): 1,
    }


def test_an_object_overwritten_while_its_tags_are_rewritten_is_reported(
    labeled: tuple[Stack, dict[str, dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, before = labeled
    # New content between the tag read and the (unconditional) tag write.
    overwrite_after(
        monkeypatch, "get_tags", "tags/rich.jpg", lambda: stack.put("tags/rich.jpg", jpeg(98), Tagging="fresh=yes")
    )
    code, report = run(tmp_path, "--mode", "tags")
    assert code == 1
    assert report["changed_during_run"] == [
        {"key": "tags/rich.jpg", "reason": "overwritten while its tags were rewritten: check its tags"}
    ]
    assert report["untagged"] == 1 and snapshot(stack, "tags/bare.jpg") == before["tags/bare.jpg"]
