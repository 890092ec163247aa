"""`cos-autotag backfill` end to end: the real SDK over HTTP against the local emulator.

Every object goes through the function's own pipeline and guard; the emulator's request log
is the ground truth for what was called and what was paid for.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cos_autotag.settings import Settings
from cos_autotag.writeback import LABEL_TAG_PREFIX, MARKER_TAG, marker_in_tags, marker_value
from cos_autotag_tools import cos_facts
from cos_autotag_tools.backfill import run_backfill
from cos_autotag_tools.backfill.checkpoint import ResumeState
from cos_autotag_tools.backfill.options import Options
from cos_autotag_tools.backfill.progress import Progress
from cos_autotag_tools.backfill.report import Report
from cos_autotag_tools.backfill.runner import Backfill, CountingGateway, run_local
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator, Faults
from tests.support.constants import APPID, REGION, SECRET_KEY
from tests.support.emulator import env_for, seed_object, started_emulator
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration

BUCKET = f"archive-{APPID}"
IMAGES = [f"photos/{i:03d}.jpg" for i in range(24)]
OTHERS = {"photos/readme.txt": b"not an image", "photos/empty.png": b""}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with started_emulator(BUCKET, label_engine=DigestLabelEngine()) as emulator:
        yield emulator


def seed(emu: Emulator, keys: list[str] = IMAGES, others: dict[str, bytes] = OTHERS) -> None:
    for i, key in enumerate(keys):
        seed_object(emu, BUCKET, key, image_bytes(seed=i), content_type="image/jpeg")
    for key, body in others.items():
        seed_object(emu, BUCKET, key, body)


def backfill(emu: Emulator, *extra: str, report: Path | None = None) -> tuple[int, dict[str, object]]:
    out = report or Path(f"/tmp/backfill-report-{time.monotonic_ns()}.json")
    code = run_backfill(
        ["--bucket", BUCKET, "--region", REGION, "--no-progress", "--quiet", "--report", str(out), *extra],
        env=env_for(emu),
    )
    data = json.loads(out.read_text())
    if report is None:
        out.unlink()
    return code, data


def ops(emu: Emulator, since: float = 0.0) -> Counter[str]:
    return Counter(r.op for r in emu.requests if r.timestamp >= since)


def per_key(emu: Emulator, op: str) -> Counter[str]:
    return Counter(r.key for r in emu.requests if r.op == op and r.status == 200)


def labels_of(emu: Emulator, key: str) -> dict[str, str]:
    state = emu.get_object_state(BUCKET, key)
    assert state is not None
    return dict(state.tags)


def test_every_image_is_labeled_once_and_the_rest_skipped_by_reason(emu: Emulator) -> None:
    seed(emu)
    code, report = backfill(emu, "--qps", "50")
    assert code == 0
    assert report["labeled"] == len(IMAGES)
    assert report["skipped"] == {"not a JPEG or PNG": 1, "empty object": 1}
    assert report["failed"] == []
    assert per_key(emu, "DetectLabel") == Counter(IMAGES)
    assert per_key(emu, "PutObjectTagging") == Counter(IMAGES)
    for key in IMAGES:
        tags = labels_of(emu, key)
        assert marker_in_tags(tags.items()) is not None  # the marker the trigger path writes too
        assert any(k.startswith(LABEL_TAG_PREFIX + "label-") for k in tags), tags
    # Nothing was done to what is not an image.
    assert not labels_of(emu, "photos/readme.txt")


def test_the_report_counts_exactly_the_requests_the_service_saw(emu: Emulator) -> None:
    seed(emu)
    _, report = backfill(emu)
    assert report["calls"] == dict(ops(emu))
    assert report["cost"] == {
        "detect_label_calls": len(IMAGES),
        "usd": cos_facts.detect_cost_usd(len(IMAGES)),
        "basis": "detect-label calls answered",
    }
    assert report["listed"] == report["finished"] == len(IMAGES) + len(OTHERS)
    assert report["objects_per_s"] > 0


def test_a_second_run_costs_one_read_per_labeled_object_and_no_detect_label(emu: Emulator) -> None:
    seed(emu)
    backfill(emu, "--qps", "50")
    before = {key: labels_of(emu, key) for key in IMAGES}
    since = time.time()
    code, report = backfill(emu)
    assert code == 0
    assert report["labeled"] == 0 and report["already_labeled"] == len(IMAGES)
    assert ops(emu, since) == Counter({"GetObjectTagging": len(IMAGES), "ListObjects": 1})
    assert report["cost"]["usd"] == 0  # type: ignore[index]
    assert {key: labels_of(emu, key) for key in IMAGES} == before


def test_the_user_s_own_tags_are_kept(emu: Emulator) -> None:
    seed_object(emu, BUCKET, "mine.jpg", image_bytes(seed=5), tags={"owner": "alice"})
    backfill(emu)
    tags = labels_of(emu, "mine.jpg")
    assert tags["owner"] == "alice" and MARKER_TAG in tags


def test_prefix_limits_the_run(emu: Emulator) -> None:
    seed(emu)
    seed_object(emu, BUCKET, "elsewhere/x.jpg", image_bytes(seed=99))
    _, report = backfill(emu, "--prefix", "elsewhere/")
    assert report["labeled"] == 1 and report["listed"] == 1
    assert per_key(emu, "DetectLabel") == Counter(["elsewhere/x.jpg"])


def test_listing_spans_many_pages(emu: Emulator) -> None:
    keys = [f"many/{i:04d}.jpg" for i in range(2150)]
    body = image_bytes(seed=1)
    for key in keys:
        seed_object(emu, BUCKET, key, body, tags={MARKER_TAG: marker_value("")})  # already labeled: reads only
    code, report = backfill(emu, "--concurrency", "32")
    assert code == 0
    assert report["already_labeled"] == len(keys)
    assert ops(emu)["ListObjects"] == 3  # 1000 + 1000 + 150
    assert per_key(emu, "GetObjectTagging") == Counter(keys)


def test_an_extensionless_image_is_recognised_by_its_bytes(emu: Emulator) -> None:
    seed_object(emu, BUCKET, "scans/0001", image_bytes(seed=3, size=(80, 80)))
    seed_object(emu, BUCKET, "scans/0002", b"%PDF-1.7 not an image")
    _, report = backfill(emu)
    assert report["labeled"] == 1 and report["skipped"] == {"not a JPEG or PNG": 1}
    assert per_key(emu, "DetectLabel") == Counter(["scans/0001"])


def test_archived_objects_are_skipped_without_a_call(emu: Emulator) -> None:
    seed_object(emu, BUCKET, "cold.jpg", image_bytes(seed=1), storage_class="ARCHIVE")
    _, report = backfill(emu)
    assert report["skipped"] == {"archived (restore it first)": 1}
    assert ops(emu) == Counter({"ListObjects": 1})


# --- dry run ---------------------------------------------------------------------------------------


def test_a_dry_run_makes_no_paid_call_and_tells_what_it_would_cost(emu: Emulator) -> None:
    seed(emu)
    for key in IMAGES[:4]:  # four are labeled already
        seed_object(
            emu, BUCKET, key, image_bytes(seed=0), tags={MARKER_TAG: marker_value(""), LABEL_TAG_PREFIX + "cat": "90"}
        )
    code, report = backfill(emu, "--dry-run")
    assert code == 0
    would = len(IMAGES) - 4
    assert report["would_label"] == would and report["already_labeled"] == 4
    assert report["skipped"] == {"not a JPEG or PNG": 1, "empty object": 1}
    assert report["cost"]["usd"] == cos_facts.detect_cost_usd(would)  # type: ignore[index]
    seen = ops(emu)
    assert seen["DetectLabel"] == 0 and seen["PutObjectTagging"] == 0
    assert seen["GetObjectTagging"] == len(IMAGES)  # the free-ish read that tells labeled from not
    assert marker_in_tags(labels_of(emu, IMAGES[10]).items()) is None


# --- throttling and pacing ---------------------------------------------------------------------------


def test_throttling_backs_off_and_no_object_fails(emu: Emulator) -> None:
    seed(emu, [f"t/{i:03d}.jpg" for i in range(30)], {})
    emu.set_faults(detect_qps=8.0)  # the real quota is lower than the user said
    code, report = backfill(emu, "--qps", "30", "--concurrency", "16")
    assert code == 0
    assert report["labeled"] == 30 and report["failed"] == []
    rate = report["rate"]
    assert rate["throttles"] > 0 and rate["lowest_qps"] < 30  # type: ignore[index]
    # Throttled attempts are not billed: the cost counts the answered calls only.
    assert report["cost"]["detect_label_calls"] == 30  # type: ignore[index]
    assert report["calls"]["DetectLabel"] > 30  # type: ignore[index]


def test_detect_label_calls_never_go_out_above_the_quota(emu: Emulator) -> None:
    # How close to the quota it runs is a speed figure: `make bench` measures it, not this test.
    keys = [f"q/{i:03d}.jpg" for i in range(60)]
    seed(emu, keys, {})
    emu.set_faults(latency_s=0.02, detect_qps=20.0)
    code, report = backfill(emu, "--qps", "20", "--concurrency", "16")
    assert code == 0 and report["labeled"] == 60
    times = sorted(r.timestamp for r in emu.requests if r.op == "DetectLabel")
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate <= 20 * 1.1, rate
    assert report["rate"]["throttles"] == 0  # type: ignore[index]


# --- failures and --resume --------------------------------------------------------------------------------


def test_failed_objects_are_reported_and_retried_by_resume(emu: Emulator, tmp_path: Path) -> None:
    seed(emu, IMAGES[:6], {})
    checkpoint = tmp_path / "cp.jsonl"
    emu.set_faults(error_5xx_rate=1.0, error_5xx_ops=frozenset({"PutObjectTagging"}))
    code, report = backfill(emu, "--resume", str(checkpoint), "--object-timeout", "2")
    assert code == 1
    assert sorted(f["key"] for f in report["failed"]) == IMAGES[:6]  # type: ignore[union-attr]
    assert all(f["retryable"] for f in report["failed"])  # type: ignore[union-attr]

    emu.set_faults(Faults())
    since = time.time()
    code, report = backfill(emu, "--resume", str(checkpoint))
    assert code == 0
    assert report["retried"] == 6 and report["labeled"] == 6 and report["failed"] == []
    assert per_key(emu, "PutObjectTagging") == Counter(IMAGES[:6])
    # The retry relisted nothing it had already finished: one (empty) listing page after the mark.
    assert ops(emu, since)["ListObjects"] == 1


def test_resume_after_a_finished_run_does_nothing_but_new_objects(emu: Emulator, tmp_path: Path) -> None:
    seed(emu, IMAGES[:5], {})
    checkpoint = tmp_path / "cp.jsonl"
    assert backfill(emu, "--resume", str(checkpoint))[0] == 0
    seed_object(emu, BUCKET, "photos/999.jpg", image_bytes(seed=42))  # uploaded since
    since = time.time()
    code, report = backfill(emu, "--resume", str(checkpoint))
    assert code == 0 and report["labeled"] == 1 and report["listed"] == 1
    assert ops(emu, since) == Counter(
        {"ListObjects": 1, "GetObjectTagging": 2, "DetectLabel": 1, "PutObjectTagging": 1}
    )


def test_a_dry_run_reads_the_checkpoint_but_never_writes_it(emu: Emulator, tmp_path: Path) -> None:
    seed(emu, IMAGES[:5], {})
    checkpoint = tmp_path / "cp.jsonl"
    backfill(emu, "--resume", str(checkpoint))
    before = checkpoint.read_bytes()
    seed_object(emu, BUCKET, "photos/999.jpg", image_bytes(seed=42))
    _, report = backfill(emu, "--resume", str(checkpoint), "--dry-run")
    assert report["would_label"] == 1 and report["listed"] == 1
    assert checkpoint.read_bytes() == before


# --- what the user sees ----------------------------------------------------------------------------------


def test_a_bucket_that_does_not_exist_stops_the_run_with_a_clear_report(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_backfill(["--bucket", f"nope-{APPID}", "--region", REGION, "--quiet"], env=env_for(emu))
    assert code == 1
    assert f"stopped early: listing failed: ListObjects: NoSuchBucket (404): The specified bucket nope-{APPID}" in (
        capsys.readouterr().err
    )


def test_log_lines_are_json_on_stdout_and_end_with_the_report(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(emu, IMAGES[:3], {"x.txt": b"text"})
    assert run_backfill(["--bucket", BUCKET, "--region", REGION, "--no-progress"], env=env_for(emu)) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert Counter(line["message"] for line in lines if line["message"].startswith("record ")) == {
        "record labeled": 3,
        "record skipped": 1,
    }
    assert lines[0]["message"] == "backfill started" and lines[-1]["message"] == "backfill report"
    assert lines[-1]["labeled"] == 3
    assert SECRET_KEY not in out + err
    assert "labeled             3" in err  # the report for a person, on stderr


def test_the_progress_bar_counts_up_to_the_listed_total(emu: Emulator) -> None:
    seed(emu)
    settings = Settings.from_env(env_for(emu))
    options = Options(bucket=BUCKET, region=REGION, qps=50)
    stream = io.StringIO()
    progress = Progress(True, "label", stream=stream)
    report = Report(BUCKET, REGION, "", "label")
    gateway = CountingGateway(settings, env_for(emu))
    run_local(options, settings, Backfill(options, settings, gateway, report, progress, ResumeState(), None))
    total = len(IMAGES) + len(OTHERS)
    assert f"{total}/{total}" in stream.getvalue()
    assert report.labeled == len(IMAGES)


def test_resume_on_a_finished_checkpoint_says_so(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(emu, IMAGES[:3], {})
    checkpoint = tmp_path / "cp.jsonl"
    assert backfill(emu, "--resume", str(checkpoint))[0] == 0
    capsys.readouterr()
    code, report = backfill(emu, "--resume", str(checkpoint))
    assert code == 0 and report["listed"] == 0
    err = capsys.readouterr().err
    assert f"the checkpoint {checkpoint} records a finished run" in err
    assert "nothing to do" in err


def test_relabel_writes_the_marker_the_readme_s_tag_table_shows(emu: Emulator) -> None:
    seed(emu, IMAGES[:2], {})
    assert backfill(emu)[0] == 0
    assert backfill(emu, "--relabel")[0] == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(
        line for line in readme.splitlines() if "the marker `backfill` (and `backfill --relabel`) writes" in line
    )
    documented = row.split("|")[2].strip().strip("`")
    # `<owned>`: the 4-hex digests of the label tags the write put on, joined by `.`.
    pattern = re.escape(documented).replace(re.escape("<owned>"), r"[0-9a-f]{4}(\.[0-9a-f]{4})*")
    for key in IMAGES[:2]:
        assert re.fullmatch(pattern, labels_of(emu, key)["autotag"])
