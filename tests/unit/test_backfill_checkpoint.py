"""The --resume checkpoint: what a resumed run skips, retries and lists again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cos_autotag.backfill.checkpoint import CheckpointError, CheckpointWriter, Watermark, load

SCOPE = {"bucket": "photos-1250000000", "region": "ap-guangzhou", "prefix": "img/", "mode": "tags", "via": "local"}


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    state = load(tmp_path / "none.jsonl", SCOPE)
    assert (state.after, state.done, state.retry, state.finished) == ("", set(), {}, False)


def test_resume_lists_after_the_mark_and_skips_keys_done_after_it(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    for key in ("img/a.jpg", "img/b.jpg"):
        writer.done(key, "labeled")
    writer.mark("img/b.jpg")
    writer.done("img/d.jpg", "labeled")  # finished out of order; c is still running
    writer.close()

    state = load(path, SCOPE)
    assert state.after == "img/b.jpg"
    assert state.done == {"img/d.jpg"}  # a and b are before the mark: the listing will not return them
    assert state.skip("img/d.jpg") and not state.skip("img/c.jpg")
    assert not state.finished


def test_failed_keys_are_retried_unless_a_later_line_says_done(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    writer.failed("img/a.jpg", 123, "DetectLabel: InternalError (500)")
    writer.failed("img/b.jpg", None, "network")
    writer.mark("img/b.jpg")
    writer.close()
    # A second run retried a and labeled it; b failed again.
    writer = CheckpointWriter(path, SCOPE)
    writer.done("img/a.jpg", "labeled")
    writer.failed("img/b.jpg", None, "network")
    writer.end()
    writer.close()

    state = load(path, SCOPE)
    assert state.retry == {"img/b.jpg": None}
    assert state.skip("img/b.jpg")  # retried first, so the listing must not hand it out again
    assert state.finished


def test_a_line_cut_short_by_a_crash_is_ignored_and_the_next_run_appends_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    writer.done("img/a.jpg", "labeled")
    writer.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"kind":"done","key":"img/b.j')  # the process died mid-write
    assert load(path, SCOPE).done == {"img/a.jpg"}

    writer = CheckpointWriter(path, SCOPE)
    writer.done("img/c.jpg", "duplicate")
    writer.close()
    assert load(path, SCOPE).done == {"img/a.jpg", "img/c.jpg"}
    assert all(line.startswith("{") for line in path.read_text().splitlines())


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    writer.close()
    with path.open("a", encoding="utf-8") as f:
        f.write("garbage\n" + json.dumps({"kind": "done", "key": "k", "outcome": "labeled"}) + "\n")
    with pytest.raises(CheckpointError, match="not a checkpoint line"):
        load(path, SCOPE)


@pytest.mark.parametrize(("field", "value"), [("bucket", "other-1250000000"), ("prefix", ""), ("mode", "metadata")])
def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path, field: str, value: str) -> None:
    path = tmp_path / "cp.jsonl"
    CheckpointWriter(path, SCOPE).close()
    with pytest.raises(CheckpointError, match=f"its {field} is"):
        load(path, {**SCOPE, field: value})


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text('{"hello": "world"}\n{"kind": "done", "key": "x"}\n')
    with pytest.raises(CheckpointError, match="unknown checkpoint line"):
        load(path, SCOPE)


def test_keys_are_compared_in_cos_listing_order(tmp_path: Path) -> None:
    # COS lists in UTF-8 byte order: "img/é.jpg" sorts after "img/z.jpg".
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    writer.done("img/a.jpg", "labeled")
    writer.done("img/é.jpg", "labeled")
    writer.mark("img/z.jpg")
    writer.close()
    assert load(path, SCOPE).done == {"img/é.jpg"}


def test_watermark_advances_only_over_a_finished_prefix() -> None:
    marks = Watermark()
    for key in ("a", "b", "c", "d"):
        marks.listed(key)
    assert marks.finished("b") is None  # a is still running
    assert marks.finished("c") is None
    assert marks.finished("a") == "c"  # a, b and c are all finished now
    assert marks.in_flight == 1
    assert marks.finished("x") is None  # not from the listing (a retried key)
    assert marks.finished("d") == "d"
    assert marks.in_flight == 0
