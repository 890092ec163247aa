"""`cos-autotag event ... | cos-autotag invoke - --upload FILE` against the emulator, as the README shows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.event import build_event
from cos_autotag_tools.labels import fallback_name
from cos_autotag_tools.photos import photo_path
from tests.support.constants import BUCKET, SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.integration


def summary_of(out: str) -> dict[str, object]:
    """The summary `invoke` prints last (the function's JSON log lines come before it)."""
    start = 0 if out.startswith("{\n") else out.rindex("\n{\n") + 1
    summary: dict[str, object] = json.loads(out[start:])
    return summary


@pytest.fixture
def function_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only what `cos-autotag local` prints: the keys and the endpoint.
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", SECRET_KEY)
    monkeypatch.delenv("TENCENTCLOUD_SESSIONTOKEN", raising=False)
    monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", emulator.endpoint)


@pytest.mark.usefixtures("function_env")
def test_invoke_from_stdin_uploads_then_labels(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = photo_path("coffee.png").read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(build_event("put", BUCKET, "相册/咖啡.png"))))

    assert main(["invoke", "-", "--upload", str(photo_path("coffee.png"))]) == 0

    summary = summary_of(capsys.readouterr().out)
    assert summary["labeled"] == 1, summary
    state = emulator.get_object_state(BUCKET, "相册/咖啡.png")
    assert state is not None and state.body == data
    assert "autotag:" + fallback_name(data) in state.tags  # the emulator's engine answers in Chinese


@pytest.mark.usefixtures("function_env")
def test_invoke_without_upload_finds_the_object_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event_file = tmp_path / "put.json"
    event_file.write_text(json.dumps(build_event("put", BUCKET, "nowhere.jpg")), encoding="utf-8")

    assert main(["invoke", str(event_file)]) == 0

    assert summary_of(capsys.readouterr().out)["skipped"] == {"object gone": 1}


def test_invoke_without_credentials_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", "http://127.0.0.1:9")
    event_file = tmp_path / "put.json"
    event_file.write_text(json.dumps(build_event("put", BUCKET, "a.jpg")), encoding="utf-8")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")

    assert main(["invoke", str(event_file), "--upload", str(tmp_path / "a.jpg")]) == 2

    assert "TENCENTCLOUD_SECRETID" in capsys.readouterr().err


def test_an_unreadable_event_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["invoke", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.usefixtures("function_env")
def test_invoke_keeps_stdout_for_the_summary_alone_so_jq_reads_it(
    emulator: Emulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    event_file = tmp_path / "put.json"
    event_file.write_text(json.dumps(build_event("put", BUCKET, "jq/咖啡.png")), encoding="utf-8")
    cli = Path(sys.executable).with_name("cos-autotag")
    done = subprocess.run(
        [str(cli), "invoke", str(event_file), "--upload", str(photo_path("coffee.png"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert summary["labeled"] == 1
    assert '"message"' in done.stderr  # the function's log lines are on stderr
