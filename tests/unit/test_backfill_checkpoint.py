"""The --resume checkpoint: what a resumed run skips, retries, lists again and reuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
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


def test_an_answer_is_on_disk_before_store_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cp.jsonl"
    synced: list[str] = []  # the file's contents at each fsync of it
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(path.read_text(encoding="utf-8") if path.exists() else "")

    monkeypatch.setattr(os, "fsync", fsync)
    # Batching that would never fsync on its own during the test.
    writer = CheckpointWriter(path, SCOPE, sync_every=1_000_000, sync_interval_s=3600.0)
    cache = AnswerCache(writer, {}, Log())
    writer.done("img/0.jpg", "labeled")
    assert '"img/0.jpg"' not in synced[-1]  # a done line waits for its batch...
    cache.begin(ListedObject("img/a.jpg", 10, "STANDARD", '"e1"'))
    cache.store(SCOPE["bucket"], "img/a.jpg", RESPONSE)
    # ...an answer line does not: it is fsynced before the tag write may start.
    last = [json.loads(line) for line in synced[-1].splitlines()][-1]
    assert last == {"kind": "answer", "key": "img/a.jpg", "etag": '"e1"', "response": RESPONSE}
    writer.close()


def test_a_kept_answer_is_reused_only_while_the_etag_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
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
    path = tmp_path / "cp.jsonl"
    kept_answer(path)
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, load(path, SCOPE).answers, Log())
    cache.begin(ListedObject("img/a.jpg", 10))  # a key retried from the checkpoint: no ETag
    assert cache.lookup(SCOPE["bucket"], "img/a.jpg") is None
    cache.store(SCOPE["bucket"], "img/a.jpg", RESPONSE)  # nothing to check it against later: not kept
    writer.close()
    assert '"etag":""' not in path.read_text(encoding="utf-8")


def test_answers_of_finished_keys_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
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
    path = tmp_path / "cp.jsonl"
    log = Log()
    writer = CheckpointWriter(path, SCOPE)
    cache = AnswerCache(writer, {}, log)
    cache.begin(ListedObject("img/a.jpg", 10, "STANDARD", '"e"'))
    cache.store(SCOPE["bucket"], "img/a.jpg", {"labels": {1, 2}})  # a set: not JSON
    writer.close()
    assert [level for level, _, _ in log.lines] == ["warning"]
    assert load(path, SCOPE).answers == {}


# --- compaction ---------------------------------------------------------------------------------


def test_a_finished_checkpoint_keeps_no_answers_and_no_lines_before_its_mark(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
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
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [entry["kind"] for entry in lines] == ["start", "mark", "failed", "end"]
    state = load(path, SCOPE)
    assert (state.after, state.done, state.retry, state.answers, state.finished) == (
        keys[-1],
        set(),
        {"img/x.jpg": 3},
        {},
        True,
    )


def test_a_running_checkpoint_is_compacted_and_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE, compact_min_bytes=4096)
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
        largest = max(largest, path.stat().st_size)
    writer.close()  # killed here: no end line

    # Bounded by the compaction threshold, not by the 400 objects (~40 kB written).
    assert largest < 2 * 4096 + 1024
    state = load(path, SCOPE)
    assert state.after == "img/399.jpg"
    assert state.answers == {"img/zz.jpg": Answer('"z"', RESPONSE)}
    assert not path.with_name(path.name + ".compacting").exists()


def test_a_checkpoint_is_compacted_when_a_run_starts_on_it(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    for i in range(100):
        writer.done(f"img/{i:03d}.jpg", "labeled")
    writer.mark("img/049.jpg")
    writer.failed("img/007.jpg", 5, "network")
    writer.close()
    before = load(path, SCOPE)

    CheckpointWriter(path, SCOPE).close()
    after = load(path, SCOPE)
    assert (after.after, after.done, after.retry) == (before.after, before.done, before.retry)
    # The done lines up to the mark are gone: the listing will not hand those keys out again.
    kinds = [json.loads(line)["kind"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert kinds[:2] == ["start", "mark"] and kinds[-1] == "start"
    assert Counter(kinds[2:-1]) == {"done": 50, "failed": 1}


def test_a_version_1_checkpoint_still_resumes(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    start_line = {"kind": "start", "version": 1, **SCOPE}
    path.write_text(
        json.dumps(start_line) + "\n" + json.dumps({"kind": "done", "key": "img/a.jpg", "outcome": "labeled"}) + "\n"
    )
    assert load(path, SCOPE).done == {"img/a.jpg"}
    path.write_text(json.dumps({**start_line, "version": 99}) + "\n")
    with pytest.raises(CheckpointError, match="another checkpoint version"):
        load(path, SCOPE)


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
    path = tmp_path / "cp.jsonl"
    holder = hold(path)
    try:
        inode = path.stat().st_ino
        with pytest.raises(CheckpointBusy) as refused:
            CheckpointWriter(path, SCOPE)
        assert refused.value.pid == holder.pid
        message = str(refused.value)
        assert f"PID {holder.pid}" in message and f"kill {holder.pid}" in message and "--resume" in message
        # The refused run neither rewrote the file nor added to it.
        assert path.stat().st_ino == inode
        assert [json.loads(line)["kind"] for line in path.read_text().splitlines()] == ["start", "done"]
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    # The holder's later line is in the real file; the lock is free again.
    assert load(path, SCOPE).done == {"img/held.jpg", "img/after.jpg"}
    CheckpointWriter(path, SCOPE).close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    holder = hold(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert str(holder.pid) in (tmp_path / "cp.jsonl.lock").read_text()  # its PID is still written there
    writer = CheckpointWriter(path, SCOPE)  # the kernel dropped the lock with the process
    writer.close()
    assert load(path, SCOPE).done == {"img/held.jpg"}


def test_a_lock_taken_before_loading_is_handed_to_the_writer_and_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
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
    path = tmp_path / "cp.jsonl"
    path.symlink_to(target)
    for attempt in (lambda: CheckpointWriter(path, SCOPE), lambda: load(path, SCOPE), lambda: CheckpointLock(path)):
        with pytest.raises(CheckpointError, match=r"symbolic link.*pass the file itself"):
            attempt()
    assert target.read_text() == "not yours\n" and path.is_symlink()


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    (tmp_path / "cp.jsonl.lock").symlink_to(target)
    with pytest.raises(CheckpointError, match=r"lock file .* is a symbolic link"):
        CheckpointWriter(tmp_path / "cp.jsonl", SCOPE)
    assert target.read_text() == "not yours\n"


def test_compaction_never_follows_a_link_planted_at_its_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(path, SCOPE)
    for i in range(100):
        writer.done(f"img/{i:03d}.jpg", "labeled")
    writer.mark("img/099.jpg")
    writer.close()
    path.chmod(0o600)
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    temporary = tmp_path / "cp.jsonl.compacting"
    temporary.symlink_to(target)

    CheckpointWriter(path, SCOPE).close()  # compacts on start

    assert target.read_text() == "precious\n"
    assert not temporary.exists() and not temporary.is_symlink()
    assert not path.is_symlink()
    kinds = [json.loads(line)["kind"] for line in path.read_text().splitlines()]
    assert kinds == ["start", "mark", "start"]  # compacted: the done lines before the mark are gone
    assert path.stat().st_mode & 0o777 == 0o600  # the checkpoint's permissions are kept
