"""--via-scf: fan-out through the real tencentcloud SDK to a local stand-in of SCF's Invoke API,
which checks the TC3-HMAC-SHA256 signature and runs the real handler against the emulator."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cos_autotag.handler import App
from cos_autotag.settings import Settings
from cos_autotag_tools.backfill import run_backfill
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator
from tests.support.constants import APPID, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import env_for, seed_object, started_emulator
from tests.support.images import image_bytes
from tests.support.scf_api import ScfApi, serve

pytestmark = pytest.mark.integration

BUCKET = f"fanout-{APPID}"
FUNCTION = "cos-autotag"
IMAGES = [f"f/{i:03d}.jpg" for i in range(12)]


# --- the fan-out end to end ----------------------------------------------------------------------------


class Fleet:
    """The emulator, and the function deployed behind the local Invoke API."""

    def __init__(self, emu: Emulator, api: ScfApi) -> None:
        self.emu, self.api = emu, api

    def env(self, **extra: str) -> dict[str, str]:
        return env_for(self.emu, AUTOTAG_SCF_ENDPOINT=self.api.endpoint, **extra)

    def backfill(self, *extra: str, report: Path) -> tuple[int, dict[str, Any]]:
        argv = ["--bucket", BUCKET, "--region", REGION, "--via-scf", FUNCTION, "--no-progress", "--quiet"]
        code = run_backfill([*argv, "--report", str(report), *extra], env=self.env())
        return code, json.loads(report.read_text())

    def per_key(self, op: str) -> Counter[str]:
        return Counter(r.key for r in self.emu.requests if r.op == op and r.status == 200)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with started_emulator(BUCKET, label_engine=DigestLabelEngine()) as emu:
        for i, key in enumerate(IMAGES):
            seed_object(emu, BUCKET, key, image_bytes(seed=i), content_type="image/jpeg")
        seed_object(emu, BUCKET, "f/notes.txt", b"not an image")
        env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
        app = App(Settings(cos_endpoint=("http", "127.0.0.1", emu.port)), env=env)
        with serve(ScfApi(app.handle, {SECRET_ID: SECRET_KEY}, functions=(FUNCTION,))) as api:
            yield Fleet(emu, api)


def test_fan_out_labels_every_image_once_through_the_function(fleet: Fleet, tmp_path: Path) -> None:
    code, report = fleet.backfill("--batch", "5", report=tmp_path / "r.json")
    assert code == 0, report
    assert report["sent"] == len(IMAGES) and report["skipped"] == {"not a JPEG or PNG": 1}
    events = math.ceil(len(IMAGES) / 5)
    assert report["events_sent"] == events and report["calls"]["Invoke"] == events
    runs = fleet.api.invocations
    assert sorted(len(r.keys) for r in runs) == [2, 5, 5]  # --batch 5, finishing in any order
    assert sorted(k for r in runs for k in r.keys) == IMAGES  # the text file was never sent
    assert all(r.outcome == "ok" for r in runs)
    assert sum(r.result["labeled"] for r in runs) == len(IMAGES)
    assert fleet.per_key("DetectLabel") == Counter(IMAGES)
    assert fleet.per_key("PutObjectTagging") == Counter(IMAGES)
    assert {c.secret_id for c in fleet.api.calls} == {SECRET_ID}
    assert report["cost"]["detect_label_calls"] == len(IMAGES)


def test_fanning_out_again_costs_one_read_per_object_in_the_function(fleet: Fleet, tmp_path: Path) -> None:
    fleet.backfill(report=tmp_path / "first.json")
    detects = fleet.emu.count(op="DetectLabel")
    first_runs = len(fleet.api.invocations)
    code, _ = fleet.backfill(report=tmp_path / "second.json")
    assert code == 0
    second = fleet.api.invocations[first_runs:]
    assert sum(r.result["duplicates"] for r in second) == len(IMAGES)
    assert fleet.emu.count(op="DetectLabel") == detects


def test_throttled_invokes_back_off_and_are_retried(fleet: Fleet, tmp_path: Path) -> None:
    fleet.api.reject_next(3, "RequestLimitExceeded", "too many requests")
    code, report = fleet.backfill("--batch", "4", report=tmp_path / "r.json")
    assert code == 0 and report["failed"] == []
    assert report["events_sent"] == 3 and report["calls"]["Invoke"] == 3 + 3
    assert report["rate"]["throttles"] == 3 and report["rate"]["cuts"] >= 1
    assert fleet.per_key("PutObjectTagging") == Counter(IMAGES)


def test_refused_invokes_are_reported_per_object_and_nothing_runs(fleet: Fleet, tmp_path: Path) -> None:
    fleet.api.credentials[SECRET_ID] = "a-different-key"  # the function's API now refuses our signature
    code, report = fleet.backfill("--batch", "5", report=tmp_path / "r.json")
    assert code == 1
    assert sorted(f["key"] for f in report["failed"]) == IMAGES
    assert {f["error_code"] for f in report["failed"]} == {"AuthFailure.SignatureFailure"}
    assert report["sent"] == 0 and fleet.api.invocations == []
    assert fleet.emu.count(op="DetectLabel") == 0


def test_fan_out_resumes_without_sending_an_object_twice(fleet: Fleet, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    fleet.api.credentials[SECRET_ID] = "a-different-key"
    code, _ = fleet.backfill("--resume", str(checkpoint), "--batch", "5", report=tmp_path / "a.json")
    assert code == 1
    fleet.api.credentials[SECRET_ID] = SECRET_KEY
    code, report = fleet.backfill("--resume", str(checkpoint), "--batch", "5", report=tmp_path / "b.json")
    assert code == 0 and report["retried"] == len(IMAGES) and report["sent"] == len(IMAGES)
    code, report = fleet.backfill("--resume", str(checkpoint), report=tmp_path / "c.json")
    assert code == 0 and report["sent"] == 0 and report["calls"].get("Invoke", 0) == 0
    assert sorted(k for r in fleet.api.invocations for k in r.keys) == IMAGES


def test_a_dry_run_with_via_scf_invokes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    code, report = fleet.backfill("--dry-run", report=tmp_path / "r.json")
    assert code == 0 and report["run"] == "dry-run" and report["would_label"] == len(IMAGES)
    assert fleet.api.calls == [] and fleet.emu.count(op="DetectLabel") == 0
