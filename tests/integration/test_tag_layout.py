"""The tags mode's label layout end to end (issues 15 and 16): which tags the function owns, the
encoded form under COS's strict tag rule, AUTOTAG_TAG_TEXT, and untag's re-read after its write.

Everything goes through an entry point: the handler (`App.handle`), or the `cos-autotag` CLI
(`show`, `find`, `backfill --relabel`, `untag`), with the unmodified SDK over HTTP against the
emulator, under each reading of the tag rule the emulator plays. The encoded form is computed
here from the layout, and the strict rule is the emulator's own, never the function's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cos_autotag.events import parse_event
from cos_autotag_tools.backfill import run_backfill
from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Profile
from tests.support.constants import BUCKET, REGION
from tests.support.emulator import env_for, seed_object
from tests.support.function_stack import Stack, captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.pauses import pause
from tests.support.profiles import PROFILE_PARAMS
from tests.support.scf import context

pytestmark = pytest.mark.integration

USERS = {"autotag:note": "keep me", "autotag:reviewed-by": "alice", "owner": "bob"}
# Cloud Infinite answers in Chinese by default.
CHINESE = [("意式浓缩咖啡", 93), ("咖啡杯", 81), ("cup", 70)]


def encoded(name: str) -> str:
    return "autotag:b64:" + base64.b64encode(name.encode("utf-8")).decode("ascii")


@pytest.fixture(params=PROFILE_PARAMS)
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with running_stack(profile=request.param) as s:
        for name, value in env_for(s.emulator).items():
            monkeypatch.setenv(name, value)
        yield s


def is_strict(stack: Stack) -> bool:
    return stack.emulator.profile.tag_rule == "strict"


def register(stack: Stack, body: bytes, labels: list[tuple[str, int]]) -> None:
    stack.engine.register(
        body, {"camera": [{"Name": n, "Confidence": c, "FirstCategory": "x", "SecondCategory": "y"} for n, c in labels]}
    )


def upload(stack: Stack, key: str, seed: int, labels: list[tuple[str, int]], tags: dict[str, str]) -> str:
    body = jpeg(seed)
    register(stack, body, labels)
    rid = stack.put(key, body)
    if tags:
        put_tags(stack, key, tags)
    return rid


def put_tags(stack: Stack, key: str, tags: dict[str, str]) -> None:
    tag_set = {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}
    stack.client.put_object_tagging(Bucket=BUCKET, Key=key, Tagging={"TagSet": tag_set})


def labels_shown(capsys: pytest.CaptureFixture[str], key: str) -> dict[str, Any]:
    capsys.readouterr()
    code = main(["show", key, "--bucket", BUCKET, "--region", REGION, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    return shown


def untag(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"untag-{time.monotonic_ns()}.json"
    code = main(
        ["untag", "--bucket", BUCKET, "--region", REGION, "--no-progress", "--quiet", "--report", str(report), *extra]
    )
    return code, json.loads(report.read_text(encoding="utf-8"))


def puts(stack: Stack, key: str, since: float) -> int:
    return stack.calls(key, since).get("PutObjectTagging", 0)


# --- ownership ----------------------------------------------------------------------------------


def test_users_tags_under_the_prefix_survive_labeling_relabeling_and_untag(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rid = upload(stack, "a.jpg", 1, CHINESE, USERS)
    summary = stack.app().handle(stack.event("a.jpg", rid), context())
    assert summary["labeled"] == 1, summary
    tags = stack.tags("a.jpg")
    assert {k: tags[k] for k in USERS} == USERS
    shown = labels_shown(capsys, "a.jpg")
    assert [(lb["name"], lb["confidence"]) for lb in shown["labels"]] == CHINESE
    # Under the strict rule the Chinese labels are on the object in the encoded form.
    assert (encoded("咖啡杯") in tags) == is_strict(stack) and ("autotag:咖啡杯" in tags) != is_strict(stack)

    register(stack, jpeg(1), [("拿铁", 88)])  # the same photo now answers another label
    code = run_backfill(
        ["--bucket", BUCKET, "--region", REGION, "--relabel", "--no-progress", "--quiet"], env=env_for(stack.emulator)
    )
    assert code == 0
    tags = stack.tags("a.jpg")
    assert {k: tags[k] for k in USERS} == USERS
    assert [lb["name"] for lb in labels_shown(capsys, "a.jpg")["labels"]] == ["拿铁"]
    assert len(tags) == len(USERS) + 2  # the old labels went, the marker and the new label came

    code, report = untag(tmp_path, "--mode", "tags")
    assert code == 0 and report["untagged"] == 1, report
    assert stack.tags("a.jpg") == USERS


def test_a_users_autotag_tag_makes_the_record_a_skip_with_no_paid_call_and_untag_leaves_it(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = {"autotag": "off", "autotag:note": "keep me"}
    rid = upload(stack, "off.jpg", 2, CHINESE, mine)
    since = time.time()
    summary = stack.app().handle(stack.event("off.jpg", rid), context())
    (reason,) = summary["skipped"]
    assert reason.startswith("marker tag taken") and "rename" in reason
    assert stack.calls("off.jpg", since) == {"GetObjectTagging": 1}  # no detect-label
    assert stack.tags("off.jpg") == mine
    assert labels_shown(capsys, "off.jpg")["labels"] == []

    code, report = untag(tmp_path)
    assert code == 0 and report["untagged"] == 0
    assert [item["key"] for item in report["left_as_is"]] == ["off.jpg"]
    assert "not the function's marker" in report["left_as_is"][0]["reason"]
    assert stack.tags("off.jpg") == mine


def test_an_object_labeled_by_v1_is_recognised_and_a_redelivery_costs_no_detect_label(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rid = upload(stack, "old.jpg", 3, CHINESE, {})
    event = stack.event("old.jpg", rid)
    (record,) = parse_event(event)  # the upload token, as v1 wrote it for this upload
    old = "sand" if is_strict(stack) else "沙滩"  # what v1 could have written there
    legacy = {"autotag": f"v1:{record.upload_token}", f"autotag:{old}": "93", "autotag:note": "keep me", "owner": "x"}
    seed_object(stack.emulator, BUCKET, "old.jpg", jpeg(3), content_type="image/jpeg", tags=legacy)
    since = time.time()
    summary = stack.app().handle(event, context())
    assert summary["duplicates"] == 1 and stack.calls("old.jpg", since) == {"GetObjectTagging": 1}
    assert [lb["name"] for lb in labels_shown(capsys, "old.jpg")["labels"]] == [old]
    code, _ = untag(tmp_path, "--mode", "tags")
    assert code == 0
    assert stack.tags("old.jpg") == {"autotag:note": "keep me", "owner": "x"}  # v1 owned the 0-100 values only


# --- AUTOTAG_TAG_TEXT ---------------------------------------------------------------------------


UTF8 = [pytest.param(p, id=p.name) for p in (Profile(tag_rule="utf8"),)]


@pytest.fixture
def strict_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with running_stack(profile=Profile(tag_rule="strict")) as s:
        for name, value in env_for(s.emulator).items():
            monkeypatch.setenv(name, value)
        yield s


def test_auto_under_strict_warns_once_per_container_and_then_writes_encoded_first(
    strict_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = strict_stack
    app = stack.app()
    rids = {key: upload(stack, key, 10 + i, CHINESE, {}) for i, key in enumerate(("1.jpg", "2.jpg"))}
    since = time.time()
    with captured_logs() as logs:
        first = app.handle(stack.event("1.jpg", rids["1.jpg"]), context())
        second = app.handle(stack.event("2.jpg", rids["2.jpg"]), context())
    assert first["labeled"] == second["labeled"] == 1
    assert puts(stack, "1.jpg", since) == 2 and puts(stack, "2.jpg", since) == 1
    warnings = [line for line in logs if line["level"] == "warning" and "InvalidTag" in line["message"]]
    assert len(warnings) == 1
    assert "AUTOTAG_TAG_TEXT=ascii-safe" in warnings[0]["message"] and "AUTOTAG_TAG_TEXT=utf8" in warnings[0]["message"]
    for key in ("1.jpg", "2.jpg"):
        assert [(lb["name"], lb["confidence"]) for lb in labels_shown(capsys, key)["labels"]] == CHINESE
        assert encoded("意式浓缩咖啡") in stack.tags(key) and "autotag:cup" in stack.tags(key)
    # find decodes the encoded form too.
    capsys.readouterr()
    assert main(["find", "咖啡杯", "--bucket", BUCKET, "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert "1.jpg" in out and "2.jpg" in out


def test_utf8_under_strict_fails_the_record_with_the_fix_and_writes_nothing(strict_stack: Stack) -> None:
    stack = strict_stack
    rid = upload(stack, "u.jpg", 20, CHINESE, {"owner": "bob"})
    with captured_logs() as logs:
        summary = stack.app(tag_text="utf8").handle(stack.event("u.jpg", rid), context())
    assert summary["labeled"] == 0 and len(summary["failed"]) == 1
    assert not summary["failed"][0]["retryable"]
    assert stack.tags("u.jpg") == {"owner": "bob"}  # not labeled, no marker
    errors = [line["message"] for line in logs if line["level"] == "error" and "misconfigured" in line["message"]]
    assert any("AUTOTAG_TAG_TEXT=auto or ascii-safe" in message for message in errors), errors


@pytest.mark.parametrize("profile", UTF8)
def test_ascii_safe_writes_the_encoded_form_even_where_utf8_tags_are_accepted(
    profile: Profile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(profile=profile) as stack:
        for name, value in env_for(stack.emulator).items():
            monkeypatch.setenv(name, value)
        rid = upload(stack, "s.jpg", 30, CHINESE, {})
        since = time.time()
        assert stack.app(tag_text="ascii-safe").handle(stack.event("s.jpg", rid), context())["labeled"] == 1
        assert puts(stack, "s.jpg", since) == 1
        tags = stack.tags("s.jpg")
        assert {encoded("意式浓缩咖啡"), encoded("咖啡杯"), "autotag:cup"} <= set(tags)
        assert all(k.isascii() for k in tags)
        assert [(lb["name"], lb["confidence"]) for lb in labels_shown(capsys, "s.jpg")["labels"]] == CHINESE


# --- untag never loses a concurrent change --------------------------------------------------------


@pytest.mark.parametrize("path", ["PutObjectTagging", "DeleteObjectTagging"])
def test_a_tag_set_while_untag_writes_is_kept_and_the_functions_tags_still_go(
    strict_stack: Stack, tmp_path: Path, path: str
) -> None:
    """A user's tool read the tag set before untag wrote, and writes it back with `legal-hold`
    while untag's write is being answered: untag's re-read sees the function's tags back, takes
    them off again, and keeps `legal-hold`."""
    stack = strict_stack
    user = {"owner": "bob"} if path == "PutObjectTagging" else {}
    rid = upload(stack, "race.jpg", 40, CHINESE, user)
    assert stack.app().handle(stack.event("race.jpg", rid), context())["labeled"] == 1
    read_before = stack.tags("race.jpg")  # what the user's tool read
    results: dict[str, Any] = {}
    with pause(stack.emulator, path, key="race.jpg", when="after") as gate:
        runner = threading.Thread(target=lambda: results.update(zip(("code", "report"), untag(tmp_path), strict=True)))
        runner.start()
        gate.wait_arrived(timeout=20)  # untag's write ran; its answer is held
        put_tags(stack, "race.jpg", {**read_before, "legal-hold": "yes"})
        gate.release()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert stack.tags("race.jpg") == {**user, "legal-hold": "yes"}
    report = results["report"]
    assert results["code"] == 0 and report["untagged"] == 1, report


def test_a_tag_added_to_the_fresh_set_during_untags_delete_is_kept(strict_stack: Stack, tmp_path: Path) -> None:
    stack = strict_stack
    rid = upload(stack, "del.jpg", 41, CHINESE, {})
    assert stack.app().handle(stack.event("del.jpg", rid), context())["labeled"] == 1
    results: dict[str, Any] = {}
    with pause(stack.emulator, "DeleteObjectTagging", key="del.jpg", when="after") as gate:
        runner = threading.Thread(target=lambda: results.update(zip(("code", "report"), untag(tmp_path), strict=True)))
        runner.start()
        gate.wait_arrived(timeout=20)
        put_tags(stack, "del.jpg", {"legal-hold": "yes"})
        gate.release()
        runner.join(timeout=60)
    assert stack.tags("del.jpg") == {"legal-hold": "yes"}
    assert results["code"] == 0 and results["report"]["untagged"] == 1
