"""The --resume checkpoint: what a resumed run skips, retries, lists again and reuses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cos_autotag
import cos_autotag_tools
from cos_autotag_tools.backfill.checkpoint import (
    Answer,
    AnswerCache,
    CheckpointBusy,
    CheckpointError,
    CheckpointLock,
    CheckpointWriter,
    Watermark,
    load,
)
from cos_autotag_tools.backfill.listing import ListedObject

SCOPE = {"bucket": "photos-1250000000", "region": "ap-guangzhou", "prefix": "img/", "mode": "tags", "via": "local"}


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    state = load(tmp_path / "none.db", SCOPE)
    assert (state.after, state.done, state.retry, state.finished) == ("", set(), {}, False)


def test_resume_lists_after_the_mark_and_skips_keys_done_after_it(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
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
    path = tmp_path / "cp.db"
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


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_a_checkpoint_of_an_earlier_version_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    start_line = {"kind": "start", "version": 2, **SCOPE}
    path.write_text(json.dumps(start_line, separators=(",", ":")) + "\n")
    for attempt in (lambda: load(path, SCOPE), lambda: CheckpointWriter(path, SCOPE)):
        with pytest.raises(CheckpointError, match=r"earlier cos-autotag.*new --resume file"):
            attempt()
    assert path.read_text().startswith('{"kind":"start"')  # left as it was


def test_a_damaged_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(CheckpointError, match=r"cp\.db"):
        load(path, SCOPE)


@pytest.mark.parametrize(("field", "value"), [("bucket", "other-1250000000"), ("prefix", ""), ("mode", "metadata")])
def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path, field: str, value: str) -> None:
    path = tmp_path / "cp.db"
    CheckpointWriter(path, SCOPE).close()
    with pytest.raises(CheckpointError, match=f"its {field} is"):
        load(path, {**SCOPE, field: value})


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text('{"hello": "world"}\n{"kind": "done", "key": "x"}\n')
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load(path, SCOPE)


def test_keys_are_compared_in_cos_listing_order(tmp_path: Path) -> None:
    # COS lists in UTF-8 byte order: "img/é.jpg" sorts after "img/z.jpg".
    path = tmp_path / "cp.db"
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


# --- detect-label answers -----------------------------------------------------------------------

RESPONSE = {"RecognitionResult": {"Labels": [{"Name": "cat", "Confidence": "91"}]}}


class Log:
    """Collects what the cache logs (a stand-in for the structlog logger)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, message: str, **fields: Any) -> None:
        self.lines.append(("info", message, fields))

    def warning(self, message: str, **fields: Any) -> None:
        self.lines.append(("warning", message, fields))


def kept_answer(path: Path, key: str = "img/a.jpg", etag: str = '"e1"') -> None:
    """A run that stored an answer for `key` and died before finishing it."""
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, Log())
    cache.begin(ListedObject(key, 10, "STANDARD", etag))
    cache.store(SCOPE["bucket"], key, RESPONSE)
    writer.close()


def test_an_answer_is_committed_before_store_returns(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, Log())
    cache.begin(ListedObject("img/a.jpg", 10, "STANDARD", '"e1"'))
    cache.store(SCOPE["bucket"], "img/a.jpg", RESPONSE)
    # Another connection (as a run after a kill -9 would) sees it before the writer closes.
    assert load(path, SCOPE).answers == {"img/a.jpg": Answer('"e1"', RESPONSE)}
    writer.close()


def test_a_kept_answer_is_reused_only_while_the_etag_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    kept_answer(path, "img/a.jpg", '"e1"')
    kept_answer(path, "img/b.jpg", '"e1"')

    state = load(path, SCOPE)
    assert state.answers == {"img/a.jpg": Answer('"e1"', RESPONSE), "img/b.jpg": Answer('"e1"', RESPONSE)}
    log = Log()
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, state.answers, log)
    cache.begin(ListedObject("img/a.jpg", 10, "STANDARD", '"e1"'))
    cache.begin(ListedObject("img/b.jpg", 10, "STANDARD", '"e2"'))  # re-uploaded since
    assert cache.lookup(SCOPE["bucket"], "img/a.jpg") == RESPONSE
    assert cache.lookup(SCOPE["bucket"], "img/b.jpg") is None
    assert cache.reused == 1
    assert [(level, fields["key"]) for level, _, fields in log.lines] == [("info", "img/b.jpg")]
    # The fresh answer for the changed object is kept under its new ETag.
    cache.store(SCOPE["bucket"], "img/b.jpg", {"RecognitionResult": {"Labels": []}})
    writer.close()
    assert load(path, SCOPE).answers["img/b.jpg"] == Answer('"e2"', {"RecognitionResult": {"Labels": []}})


def test_an_answer_is_not_reused_without_a_listed_etag(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    kept_answer(path)
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, load(path, SCOPE).answers, Log())
    cache.begin(ListedObject("img/a.jpg", 10))  # a key retried from the checkpoint: no ETag
    assert cache.lookup(SCOPE["bucket"], "img/a.jpg") is None
    cache.store(SCOPE["bucket"], "img/a.jpg", RESPONSE)  # nothing to check it against later: not kept
    writer.close()
    assert load(path, SCOPE).answers == {"img/a.jpg": Answer('"e1"', RESPONSE)}  # the earlier one only


def test_answers_of_finished_keys_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, Log())
    for key in ("img/a.jpg", "img/b.jpg", "img/c.jpg", "img/d.jpg"):
        cache.begin(ListedObject(key, 10, "STANDARD", '"e"'))
        cache.store(SCOPE["bucket"], key, RESPONSE)
    writer.done("img/a.jpg", "labeled")  # done
    writer.failed("img/b.jpg", 10, "PutObjectTagging: InternalError")  # retried, with no ETag to check
    writer.mark("img/c.jpg")  # c is before the mark
    writer.close()  # d: answered, then the run died
    state = load(path, SCOPE)
    assert set(state.answers) == {"img/d.jpg"}

    # In memory: an answer handed to a run is dropped once its key is finished there.
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, state.answers, Log())
    cache.begin(ListedObject("img/d.jpg", 10, "STANDARD", '"e"'))
    cache.finished("img/d.jpg")  # e.g. the marker was on the object after all
    assert cache.lookup(SCOPE["bucket"], "img/d.jpg") is None
    writer.close()


def test_a_response_json_cannot_hold_is_not_kept_and_labeling_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    log = Log()
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, log)
    cache.begin(ListedObject("img/a.jpg", 10, "STANDARD", '"e"'))
    cache.store(SCOPE["bucket"], "img/a.jpg", {"labels": {1, 2}})  # a set: not JSON
    writer.close()
    assert [level for level, _, _ in log.lines] == ["warning"]
    assert load(path, SCOPE).answers == {}


# --- size ----------------------------------------------------------------------------------------


def test_a_finished_checkpoint_keeps_no_answers_and_no_rows_before_its_mark(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, Log())
    keys = [f"img/{i:03d}.jpg" for i in range(50)]
    for key in keys:
        cache.begin(ListedObject(key, 10, "STANDARD", '"e"'))
        cache.store(SCOPE["bucket"], key, RESPONSE)
        writer.done(key, "labeled")
        writer.mark(key)
    writer.failed("img/x.jpg", 3, "network")
    writer.end()
    writer.close()
    assert rows(path, "SELECT key, state FROM keys") == [("img/x.jpg", "failed")]
    assert rows(path, "SELECT key FROM answers") == []
    state = load(path, SCOPE)
    assert (state.after, state.done, state.retry, state.answers, state.finished) == (
        keys[-1],
        set(),
        {"img/x.jpg": 3},
        {},
        True,
    )


def test_a_running_checkpoint_keeps_only_what_a_resume_needs(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, Log())
    cache.begin(ListedObject("img/zz.jpg", 10, "STANDARD", '"z"'))
    cache.store(SCOPE["bucket"], "img/zz.jpg", RESPONSE)  # in progress all along
    largest = 0
    for i in range(400):
        key = f"img/{i:03d}.jpg"
        cache.begin(ListedObject(key, 10, "STANDARD", '"e"'))
        cache.store(SCOPE["bucket"], key, RESPONSE)
        writer.done(key, "labeled")
        if i % 2:  # the mark lags a key behind, as objects finish out of order
            writer.mark(key)
        largest = max(largest, len(rows(path, "SELECT key FROM keys")) + len(rows(path, "SELECT key FROM answers")))
    writer.close()  # killed here: no end

    assert largest <= 3  # bounded by what is in flight, not by the 400 objects
    state = load(path, SCOPE)
    assert state.after == "img/399.jpg"
    assert state.answers == {"img/zz.jpg": Answer('"z"', RESPONSE)}


# --- one run at a time ----------------------------------------------------------------------------

# Another process that takes the checkpoint's lock, says so, and holds it until told to stop.
HOLDER = """
import sys
from pathlib import Path
from cos_autotag_tools.backfill.checkpoint import CheckpointWriter
writer = CheckpointWriter(Path(sys.argv[1]), dict(zip(sys.argv[2::2], sys.argv[3::2])))
writer.done("img/held.jpg", "labeled")
print("locked", flush=True)
sys.stdin.readline()
writer.done("img/after.jpg", "labeled")
writer.close()
"""


def hold(path: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", HOLDER, str(path)] + [part for item in SCOPE.items() for part in item]
    # The same code as this test imports, also in the other process.
    paths = [str(Path(module.__file__ or "").resolve().parents[1]) for module in (cos_autotag, cos_autotag_tools)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def test_a_second_run_is_refused_naming_the_holder_and_the_first_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    holder = hold(path)
    try:
        inode = path.stat().st_ino
        with pytest.raises(CheckpointBusy) as refused:
            CheckpointWriter(path, SCOPE)
        assert refused.value.pid == holder.pid
        message = str(refused.value)
        assert f"PID {holder.pid}" in message and f"kill {holder.pid}" in message and "--resume" in message
        # The refused run neither replaced the file nor added to it.
        assert path.stat().st_ino == inode
        assert rows(path, "SELECT value FROM meta WHERE name = 'runs'") == [("1",)]
        assert load(path, SCOPE).done == {"img/held.jpg"}
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    # The holder's later line is in the real file; the lock is free again.
    assert load(path, SCOPE).done == {"img/held.jpg", "img/after.jpg"}
    CheckpointWriter(path, SCOPE).close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    holder = hold(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert str(holder.pid) in (tmp_path / "cp.db.lock").read_text()  # its PID is still written there
    writer = CheckpointWriter(path, SCOPE)  # the kernel dropped the lock with the process
    writer.close()
    assert load(path, SCOPE).done == {"img/held.jpg"}


def test_a_lock_taken_before_loading_is_handed_to_the_writer_and_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    lock = CheckpointLock(path)
    with pytest.raises(CheckpointBusy, match=f"PID {os.getpid()}"):
        CheckpointLock(path)  # even in the same process: each lock is its own open file
    writer = CheckpointWriter(path, SCOPE, lock=lock)
    with pytest.raises(CheckpointBusy):
        CheckpointWriter(path, SCOPE)
    writer.close()
    assert not lock.held
    CheckpointWriter(path, SCOPE).close()


def test_a_symlinked_checkpoint_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    path = tmp_path / "cp.db"
    path.symlink_to(target)
    for attempt in (lambda: CheckpointWriter(path, SCOPE), lambda: load(path, SCOPE), lambda: CheckpointLock(path)):
        with pytest.raises(CheckpointError, match=r"symbolic link.*pass the file itself"):
            attempt()
    assert target.read_text() == "not yours\n" and path.is_symlink()


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    (tmp_path / "cp.db.lock").symlink_to(target)
    with pytest.raises(CheckpointError, match=r"lock file .* is a symbolic link"):
        CheckpointWriter(tmp_path / "cp.db", SCOPE)
    assert target.read_text() == "not yours\n"
