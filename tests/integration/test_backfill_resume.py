"""--resume: a backfill killed part-way continues where it stopped, and labels no object twice.

The backfill runs as a real `cos-autotag backfill` process against the emulator in this
process; the emulator's request log tells, per key, how often detect-label was paid for and
how often labels were written.

The runs are staged with a pause point in the emulator's label engine (`GatedEngine`): from
the Nth detect-label call on, answers wait until the test releases them, so a run is stopped,
killed or raced at a known point rather than after a guessed time.

The kill -9 tests then hold the tag writes, so that the kill finds every worker with a
detect-label answer in hand and its tags not written: the case the checkpoint's answer lines are
for. (An answer still on its way to the process at a crash is lost with it; no record the client
keeps can save that.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import cos_autotag
from cos_autotag.writeback import LABEL_TAG_PREFIX, MARKER_TAG
from cos_autotag_tools.backfill.checkpoint import load
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator
from cos_autotag_tools.emulator.engine import Label
from cos_autotag_tools.emulator.requestlog import RequestRecord
from tests.support.constants import APPID, REGION
from tests.support.emulator import env_for, seed_object, started_emulator
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration

BUCKET = f"resume-{APPID}"
KEYS = [f"r/{i:03d}.jpg" for i in range(40)]
CONCURRENCY = 4
# A request held this long is not answered while the test runs: the server never gets to it.
HOLD_S = 3600.0
REUSED = "detect-label answer reused from the checkpoint"
CHANGED = "the object changed since its detect-label answer was kept: labeling it afresh"
SRC = str(Path(cos_autotag.__file__).resolve().parents[1])


class GatedEngine(DigestLabelEngine):
    """A pause point: from the `hold_from`-th detect-label call on, each answer waits for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_from: int | None = None
        self.release = threading.Event()
        self._changed = threading.Condition()
        self._calls = 0
        self._waiting = 0

    def detect(self, data: bytes, scenes: Sequence[str]) -> dict[str, list[Label]]:
        with self._changed:
            self._calls += 1
            held = self.hold_from is not None and self._calls >= self.hold_from
            if held:
                self._waiting += 1
                self._changed.notify_all()
        if held:
            self.release.wait(timeout=300)  # a bound only so that a failing test cannot hang forever
        return super().detect(data, scenes)

    def wait_until_waiting(self, count: int, proc: subprocess.Popen[bytes]) -> None:
        """Until `count` calls wait at the pause point (each backfill worker is on one)."""
        with self._changed:
            while self._waiting < count:
                assert proc.poll() is None, "the backfill ended before it reached the pause point"
                self._changed.wait(timeout=0.5)  # wakes on every arrival; the timeout only rechecks proc


def gate(emu: Emulator) -> GatedEngine:
    engine = emu.label_engine
    assert isinstance(engine, GatedEngine)
    return engine


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with started_emulator(BUCKET, label_engine=GatedEngine()) as emulator:
        try:
            for i, key in enumerate(KEYS):
                seed_object(emulator, BUCKET, key, image_bytes(seed=i), content_type="image/jpeg")
            yield emulator
        finally:
            gate(emulator).release.set()


def start(emu: Emulator, checkpoint: Path, logs: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_for(emu, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))}
    argv = [sys.executable, "-m", "cos_autotag_tools.cli", "backfill", "--bucket", BUCKET, "--region", REGION]
    argv += ["--qps", "15", "--concurrency", str(CONCURRENCY), "--resume", str(checkpoint)]
    argv += ["--no-progress", *extra]  # info log lines on: they tell which answers were reused
    with (logs.with_suffix(".out")).open("wb") as out, (logs.with_suffix(".err")).open("wb") as err:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=err)


def pause_at(emu: Emulator, proc: subprocess.Popen[bytes], call: int) -> None:
    """Hold detect-label answers from call number `call` on, and wait until every worker waits on one."""
    gate(emu).hold_from = call
    gate(emu).wait_until_waiting(CONCURRENCY, proc)


def split_at(emu: Emulator, moment: float) -> tuple[list[RequestRecord], list[RequestRecord]]:
    requests = emu.requests
    return [r for r in requests if r.timestamp < moment], [r for r in requests if r.timestamp >= moment]


def count(requests: list[RequestRecord], op: str) -> Counter[str]:
    return Counter(r.key for r in requests if r.op == op and r.status == 200 and r.key is not None)


def finish(emu: Emulator, checkpoint: Path, logs: Path) -> tuple[int, dict[str, Any]]:
    """Run the backfill to its end; its exit code and its JSON report."""
    report = logs.with_suffix(".json")
    proc = start(emu, checkpoint, logs, "--report", str(report))
    code = proc.wait(timeout=120)
    assert report.exists(), logs.with_suffix(".err").read_text()
    return code, json.loads(report.read_text())


def answer_keys(checkpoint: Path) -> set[str]:
    """Keys with a detect-label answer kept in the checkpoint."""
    with closing(sqlite3.connect(checkpoint)) as db:
        return {key for (key,) in db.execute("SELECT key FROM answers")}


def kill_with_answers_in_hand(emu: Emulator, proc: subprocess.Popen[bytes], checkpoint: Path) -> set[str]:
    """Half-way, hold every tag write; once each worker waits on one, kill -9. Returns the keys
    answered whose tag write was held: each has had its second tag read (the one right before
    the write), so the worker is past storing its answer."""
    pause_at(emu, proc, len(KEYS) // 2 + 1)
    # Every worker waits on its detect-label answer: none is at a tag write, so from here on
    # each one's next tag write is held.
    emu.set_faults(latency_by_op={"PutObjectTagging": HOLD_S})
    gate(emu).release.set()
    end = time.monotonic() + 60
    while True:
        requests = emu.requests
        held = set(count(requests, "DetectLabel")) - set(count(requests, "PutObjectTagging"))
        reads = count(requests, "GetObjectTagging")
        if len(held) == CONCURRENCY and all(reads[key] >= 2 for key in held):
            break
        assert proc.poll() is None, "the backfill ended before it could be stopped"
        assert time.monotonic() < end, "the workers never all waited on a tag write"
        time.sleep(0.01)  # polling for the state above, not staging it
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: a crash
    assert proc.wait(timeout=30) == -signal.SIGKILL
    emu.set_faults(latency_by_op={})
    # Durable before the tag write: every answer the workers were about to write is on disk.
    assert held <= answer_keys(checkpoint)
    return held


def log_keys(logs: Path, message: str) -> Counter[str]:
    """Per key, how many of the backfill's JSON log lines say this."""
    found: Counter[str] = Counter()
    for line in logs.with_suffix(".out").read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("message") == message:
                found[entry["key"]] += 1
    return found


def labels_on(emu: Emulator, key: str) -> dict[str, str]:
    state = emu.get_object_state(BUCKET, key)
    assert state is not None
    return dict(state.tags)


def test_kill_9_at_half_way_then_resume_pays_and_labels_every_object_exactly_once(
    emu: Emulator, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    first = start(emu, checkpoint, tmp_path / "first")
    held = kill_with_answers_in_hand(emu, first, checkpoint)
    moment = time.time()  # every request of the dead process arrived before this

    code, report = finish(emu, checkpoint, tmp_path / "second")
    assert code == 0, report
    before, after = split_at(emu, moment)

    # Paid once and labeled once: one answered detect-label call and one tag write per object,
    # across both runs, and every object carries the marker.
    assert count(before, "DetectLabel") + count(after, "DetectLabel") == Counter(KEYS)
    assert count(before, "PutObjectTagging") + count(after, "PutObjectTagging") == Counter(KEYS)
    assert all(MARKER_TAG in labels_on(emu, key) for key in KEYS)
    # The objects answered in the killed run but not written by it were labeled from the answers
    # it had kept: those whose tag write was held at least, each reused once.
    labeled_first = set(count(before, "PutObjectTagging"))
    answered_only = set(count(before, "DetectLabel")) - labeled_first
    assert held and answered_only <= held
    assert log_keys(tmp_path / "second", REUSED) == Counter(answered_only)
    assert report["detect_reused"] == len(answered_only)
    assert report["cost"]["detect_label_calls"] == len(KEYS) - len(count(before, "DetectLabel"))
    # The guard comes first: an object the killed run labeled but had not recorded costs one
    # read in the resumed run (no answer reused, no detect-label call).
    relabeled_reads = labeled_first & set(count(after, "GetObjectTagging"))
    assert report["already_labeled"] == len(relabeled_reads)
    assert count(after, "GetObjectTagging").keys() & relabeled_reads == relabeled_reads
    assert report["labeled"] == len(KEYS) - len(labeled_first)
    # The checkpoint spared the second run the objects the first had recorded.
    assert report["listed"] <= len(KEYS) - len(labeled_first) + 2 * CONCURRENCY
    # Finished: the checkpoint keeps no answers.
    assert answer_keys(checkpoint) == set()


def test_an_object_changed_after_the_kill_is_detected_again(emu: Emulator, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    first = start(emu, checkpoint, tmp_path / "first")
    held = kill_with_answers_in_hand(emu, first, checkpoint)
    # Re-uploaded with other bytes (a new ETag) between the kill and the resume.
    changed = sorted(held)[0]
    new_body = image_bytes(seed=1000)
    seed_object(emu, BUCKET, changed, new_body, content_type="image/jpeg")
    moment = time.time()

    code, report = finish(emu, checkpoint, tmp_path / "second")
    assert code == 0, report
    before, after = split_at(emu, moment)

    detects = count(before, "DetectLabel") + count(after, "DetectLabel")
    assert detects == Counter({**Counter(KEYS), changed: 2})
    assert count(after, "DetectLabel")[changed] == 1
    assert log_keys(tmp_path / "second", CHANGED) == Counter([changed])
    assert changed not in log_keys(tmp_path / "second", REUSED)
    assert log_keys(tmp_path / "second", REUSED).keys() == held - {changed}
    # Labeled from the new content's answer, not the one kept for the old.
    tags = labels_on(emu, changed)
    assert LABEL_TAG_PREFIX + DigestLabelEngine.expected_first_name(new_body) in tags
    assert LABEL_TAG_PREFIX + DigestLabelEngine.expected_first_name(image_bytes(seed=KEYS.index(changed))) not in tags
    assert all(MARKER_TAG in labels_on(emu, key) for key in KEYS)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_finishes_what_is_running_then_resume_pays_each_object_once(
    emu: Emulator, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    first = start(emu, checkpoint, tmp_path / "first")
    pause_at(emu, first, len(KEYS) // 3)
    first.send_signal(stop_signal)
    # The workers finish the objects they hold; the 20-odd objects left would take the run
    # (paced at 15 detect-label calls a second) well over a second, so the stop lands first.
    gate(emu).release.set()
    assert first.wait(timeout=60) == 130
    err = (tmp_path / "first").with_suffix(".err").read_text()
    assert "INTERRUPTED" in err and f"continue with: --resume {checkpoint}" in err
    moment = time.time()

    code, report = finish(emu, checkpoint, tmp_path / "second")
    assert code == 0, report
    before, after = split_at(emu, moment)
    # A graceful stop lets every detect-label call already made write its labels.
    assert set(count(before, "DetectLabel")) == set(count(before, "PutObjectTagging"))
    assert count(before, "DetectLabel") + count(after, "DetectLabel") == Counter(KEYS)
    assert count(before, "PutObjectTagging") + count(after, "PutObjectTagging") == Counter(KEYS)
    # Nothing the first run finished was even read again.
    assert not set(count(before, "PutObjectTagging")) & set(count(after, "GetObjectTagging"))
    assert report["listed"] == len(KEYS) - len(count(before, "PutObjectTagging"))


def test_a_second_run_on_the_same_checkpoint_is_refused_and_the_first_pays_each_object_once(
    emu: Emulator, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    report = tmp_path / "first.json"
    first = start(emu, checkpoint, tmp_path / "first", "--report", str(report))
    # The first run is mid-way, every worker waiting on a detect-label answer it will pay for.
    pause_at(emu, first, len(KEYS) // 2)
    inode = checkpoint.stat().st_ino

    second = start(emu, checkpoint, tmp_path / "second")
    assert second.wait(timeout=60) == 2
    err = (tmp_path / "second").with_suffix(".err").read_text()
    assert f"in use by another backfill run (PID {first.pid}" in err
    assert f"kill {first.pid}" in err and "--resume" in err
    # Refused before it touched anything: the checkpoint is still the first run's file, started once.
    assert checkpoint.stat().st_ino == inode
    with closing(sqlite3.connect(checkpoint)) as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'runs'").fetchall() == [("1",)]

    gate(emu).release.set()
    assert first.wait(timeout=120) == 0, (tmp_path / "first").with_suffix(".err").read_text()
    # Nothing paid twice, everything labeled once, and the first run's record is whole.
    assert count(emu.requests, "DetectLabel") == Counter(KEYS)
    assert count(emu.requests, "PutObjectTagging") == Counter(KEYS)
    assert json.loads(report.read_text())["labeled"] == len(KEYS)
    state = load(checkpoint, {"bucket": BUCKET, "region": REGION, "prefix": "", "mode": "tags", "via": "local"})
    assert state.finished and state.after == max(KEYS) and state.answers == {}

    # Finished, the lock is free: a third run starts, finds everything done and pays nothing.
    code, again = finish(emu, checkpoint, tmp_path / "third")
    assert code == 0 and again["cost"]["detect_label_calls"] == 0
