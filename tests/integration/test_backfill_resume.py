"""--resume: a backfill killed part-way continues where it stopped, and labels no object twice.

The backfill runs as a real `cos-autotag backfill` process against the emulator in this
process; the emulator's request log tells, per key, how often detect-label was paid for and
how often labels were written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cos_autotag
from cos_autotag.local.emulator import DigestLabelEngine, Emulator
from cos_autotag.local.emulator.requestlog import RequestRecord
from tests.conftest import APPID, REGION, SECRET_ID, SECRET_KEY, image_bytes

pytestmark = pytest.mark.integration

BUCKET = f"resume-{APPID}"
KEYS = [f"r/{i:03d}.jpg" for i in range(40)]
CONCURRENCY = 4
SRC = str(Path(cos_autotag.__file__).resolve().parents[1])


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID, label_engine=DigestLabelEngine())
    emulator.start()
    try:
        emulator.create_bucket(BUCKET, REGION)
        for i, key in enumerate(KEYS):
            emulator.seed_object(BUCKET, key, image_bytes(seed=i), content_type="image/jpeg")
        # Slow enough that the run is still going when it is stopped.
        emulator.set_faults(latency_s=0.03)
        yield emulator
    finally:
        emulator.stop()


def start(emu: Emulator, checkpoint: Path, logs: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TENCENTCLOUD_SECRETID": SECRET_ID,
        "TENCENTCLOUD_SECRETKEY": SECRET_KEY,
        "AUTOTAG_COS_ENDPOINT": f"http://127.0.0.1:{emu.port}",
    }
    argv = [
        sys.executable,
        "-m",
        "cos_autotag.cli",
        "backfill",
        "--bucket",
        BUCKET,
        "--region",
        REGION,
        "--qps",
        "15",
        "--concurrency",
        str(CONCURRENCY),
        "--resume",
        str(checkpoint),
        "--quiet",
        *extra,
    ]
    with (logs.with_suffix(".out")).open("wb") as out, (logs.with_suffix(".err")).open("wb") as err:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=err)


def wait_for_detects(emu: Emulator, proc: subprocess.Popen[bytes], count: int, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while emu.count(op="DetectLabel") < count:
        assert proc.poll() is None, "the backfill ended before it could be stopped"
        assert time.monotonic() < end, "the backfill made no progress"
        time.sleep(0.01)


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


def test_kill_9_at_half_way_then_resume_labels_every_object_exactly_once(emu: Emulator, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    first = start(emu, checkpoint, tmp_path / "first")
    wait_for_detects(emu, first, len(KEYS) // 2)
    first.send_signal(signal.SIGKILL)  # no handler, no cleanup: a crash
    assert first.wait(timeout=30) == -signal.SIGKILL
    time.sleep(0.5)  # whatever the dead process had already sent is answered and logged by now
    moment = time.time()

    code, report = finish(emu, checkpoint, tmp_path / "second")
    assert code == 0, report
    before, after = split_at(emu, moment)

    # Labeled exactly once: one tag write per object across both runs.
    assert count(before, "PutObjectTagging") + count(after, "PutObjectTagging") == Counter(KEYS)
    labeled_first = set(count(before, "PutObjectTagging"))
    assert 0 < len(labeled_first) < len(KEYS)
    # No object labeled by the first run cost a detect-label call in the second.
    assert not labeled_first & set(count(after, "DetectLabel"))
    # Only a call in flight at the kill (answered, its labels never written) is paid twice:
    # at most one per worker.
    detects = count(before, "DetectLabel") + count(after, "DetectLabel")
    paid_twice = {key for key, n in detects.items() if n > 1}
    in_flight = set(count(before, "DetectLabel")) - labeled_first
    assert paid_twice <= in_flight
    assert len(in_flight) <= CONCURRENCY
    assert max(detects.values()) <= 2
    # The checkpoint spared the second run the objects the first had recorded; one labeled but
    # not yet recorded (at most the workers' results not yet collected) costs one read.
    assert report["listed"] <= len(KEYS) - len(labeled_first) + 2 * CONCURRENCY
    relabeled_reads = labeled_first & set(count(after, "GetObjectTagging"))
    assert report["already_labeled"] == len(relabeled_reads)
    assert report["labeled"] == len(KEYS) - len(labeled_first)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_finishes_what_is_running_then_resume_pays_each_object_once(
    emu: Emulator, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    first = start(emu, checkpoint, tmp_path / "first")
    wait_for_detects(emu, first, len(KEYS) // 3)
    first.send_signal(stop_signal)
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
