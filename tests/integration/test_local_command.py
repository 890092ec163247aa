"""`cos-autotag local` as a user runs it: no environment, an upload through the SDK, labels in Chinese."""

from __future__ import annotations

import io
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qcloud_cos import CosConfig, CosS3Client

from cos_autotag.errors import ConfigurationError, RetryableFailure
from cos_autotag_tools.emulator.cli import ConsoleReporter
from cos_autotag_tools.event import build_event
from cos_autotag_tools.photos import photo_path
from tests.support.constants import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BUCKET, REGION = "photos-1250000000", "ap-guangzhou"
SECRET_ID, SECRET_KEY = "AKIDtrylocal", "try-local-key"


def clean_env() -> dict[str, str]:
    """This process's environment without any function setting or credential: `local` needs none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTAG_", "TENCENTCLOUD_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tools"), env.get("PYTHONPATH", "")])
    return env


class LocalProcess:
    """`cos-autotag local` in the background, its output read line by line."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT, program: list[str] | None = None
    ) -> None:
        if "--port" in args:
            self.port = int(args[args.index("--port") + 1])
        else:
            self.port = free_port()
            args = ["--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            [*(program or [sys.executable, "-m", "cos_autotag_tools.cli"]), "local", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            env=env or clean_env(),
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float = 60) -> str:
        """The first line (from the start) containing `text`; fails with all output so far."""
        deadline = time.monotonic() + timeout_s
        for line in self.lines:
            if text in line:
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"local exited ({self.proc.wait()}) without {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def local() -> Iterator[LocalProcess]:
    proc = LocalProcess(["--bucket", f"{BUCKET}:{REGION}", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY])
    try:
        proc.wait_for("Press Ctrl-C to stop.")
        yield proc
    finally:
        proc.stop()


def client(port: int) -> CosS3Client:
    config = CosConfig(
        Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http", IP="127.0.0.1", Port=port
    )
    return CosS3Client(config, retry=0)


def tags_of(port: int, key: str) -> dict[str, str]:
    tag_set = client(port).get_object_tagging(Bucket=BUCKET, Key=key).get("TagSet") or {}
    tags = tag_set.get("Tag", [])
    return {t["Key"]: t["Value"] for t in ([tags] if isinstance(tags, dict) else tags)}


def test_an_sdk_upload_is_labeled_in_chinese_with_no_environment(local: LocalProcess) -> None:
    client(local.port).upload_file(Bucket=BUCKET, Key="photos/china.jpg", LocalFilePath=str(photo_path("china.jpg")))

    line = local.wait_for("  photos/china.jpg  ")
    assert "labeled" in line and "宫殿" in line and "DetectLabel" in line, line
    tags = tags_of(local.port, "photos/china.jpg")
    assert tags["autotag:宫殿"].isdigit(), tags
    assert "label engine: EfficientNetEngine, labels in zh" in "\n".join(local.lines)
    assert local.stop() == 0


def test_the_printed_upload_command_and_coscmd_lines_work(local: LocalProcess, tmp_path: Path) -> None:
    output = "\n".join(local.lines)
    upload = output.split("Upload a photo now (from another terminal):\n", 1)[1].splitlines()[0].strip()
    subprocess.run(["bash", "-c", upload], check=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert "意式浓缩咖啡" in local.wait_for("  photos/coffee.png  ")
    assert tags_of(local.port, "photos/coffee.png")["autotag:意式浓缩咖啡"] == "96"

    coscmd = shutil.which("coscmd", path=str(Path(sys.executable).parent))
    assert coscmd, "coscmd (the dev extra) is not installed next to this Python"
    shutil.copy(photo_path("flower.jpg"), tmp_path / "my.jpg")
    commands = output.split("coscmd 1.9:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(commands) == 2
    env = {**clean_env(), "HOME": str(tmp_path)}  # the printed lines name coscmd's own path
    for command in commands:
        subprocess.run(["bash", "-c", command.strip()], check=True, env=env, cwd=tmp_path, timeout=60)
    assert "雏菊" in local.wait_for("  photos/my.jpg  ")


def test_seed_uploads_a_folder_through_the_trigger(tmp_path: Path) -> None:
    shutil.copy(photo_path("coffee.png"), tmp_path / "coffee.png")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a photo")
    proc = LocalProcess(["--seed", str(tmp_path), "--engine", "deterministic", "--label-language", "en"])
    try:
        proc.wait_for("seeded 2 files")
        assert "labeled  label-" in proc.wait_for("coffee.png  labeled")
        assert "skipped" in proc.wait_for("notes/todo.txt")
    finally:
        assert proc.stop() == 0


def test_handler_errors_are_printed_with_their_traceback() -> None:
    # json.loads(event, context) raises TypeError: any handler failure must reach the console.
    proc = LocalProcess(["--trigger", "json:loads", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY])
    try:
        proc.wait_for("Press Ctrl-C to stop.")
        client(proc.port).put_object(Bucket=BUCKET, Key="a.jpg", Body=photo_path("rocket.jpg").read_bytes())
        assert "ERROR TypeError" in proc.wait_for("a.jpg  ERROR")
        proc.wait_for("Traceback (most recent call last):")
    finally:
        proc.stop()


def test_a_bad_setting_stops_start_up_with_the_variable_named() -> None:
    proc = LocalProcess([], env={**clean_env(), "AUTOTAG_MODE": "sideways"})
    assert proc.proc.wait(timeout=60) == 2
    assert "AUTOTAG_MODE" in proc.wait_for("AUTOTAG_MODE")


def test_no_trigger_stores_without_labeling() -> None:
    proc = LocalProcess(["--no-trigger", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY])
    try:
        proc.wait_for("trigger: off")
        proc.wait_for("Press Ctrl-C to stop.")
        client(proc.port).put_object(Bucket=BUCKET, Key="a.jpg", Body=photo_path("rocket.jpg").read_bytes())
        assert tags_of(proc.port, "a.jpg") == {}  # no trigger exists, so nothing can label it later either
    finally:
        assert proc.stop() == 0


# --- the console line, in process --------------------------------------------------------------


def _event(key: str) -> dict[str, object]:
    return build_event("put", BUCKET, key)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConfigurationError("no COS credentials: set TENCENTCLOUD_SECRETID"), "ERROR ConfigurationError: no COS"),
        (RetryableFailure("1 record(s) failed"), "failed: 1 record(s) failed (SCF retries the invocation)"),
        (KeyError("boom"), "Traceback"),
    ],
)
def test_the_reporter_prints_every_handler_error_and_reraises(error: Exception, expected: str) -> None:
    def handler(event: object, context: object) -> object:
        raise error

    out = io.StringIO()
    with pytest.raises(type(error)):
        ConsoleReporter(handler, out)(_event("相册/猫.jpg"), {})  # type: ignore[arg-type]

    assert "相册/猫.jpg" in out.getvalue() and expected in out.getvalue()


def test_the_reporter_prints_one_line_per_record() -> None:
    summary = {
        "results": [
            {
                "key": "相册/猫.jpg",
                "outcome": "labeled",
                "labels": [{"name": "虎斑猫", "confidence": 88}, {"name": "猫", "confidence": 70}],
                "calls": {"GetObjectTagging": 2, "DetectLabel": 1, "PutObjectTagging": 1},
            }
        ]
    }
    out = io.StringIO()

    assert ConsoleReporter(lambda e, c: summary, out)(_event("相册/猫.jpg"), {}) is summary  # type: ignore[arg-type]

    (line,) = out.getvalue().splitlines()
    assert "相册/猫.jpg  labeled  虎斑猫 88, 猫 70  4 calls (GetObjectTagging 2, DetectLabel, PutObjectTagging)" in line
