"""The emulator as a process and under load: disk persistence across restarts, a hard crash
mid-upload, hundreds of concurrent uploads and deliveries, and the `local` command."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.emulator.cli import run_local
from cos_autotag_tools.emulator.store import Store
from tests.support.constants import APPID, BUCKET, REGION, SECRET_ID, SECRET_KEY, free_port
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_data_dir_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with Emulator(credentials={SECRET_ID: SECRET_KEY}, data_dir=tmp_path, appid=APPID) as first:
        first.create_bucket(BUCKET, REGION)
        client = make_client(first)
        labeled = {"ContentType": "image/jpeg", "Metadata": {"x-cos-meta-labels": "cat"}, "Tagging": "label=cat"}
        client.put_object(Bucket=BUCKET, Key="dir/猫 1.jpg", Body=b"cat", **labeled)
        client.put_object(Bucket=BUCKET, Key="deleted", Body=b"x")
        client.delete_object(Bucket=BUCKET, Key="deleted")
    second = Emulator(credentials={SECRET_ID: SECRET_KEY}, data_dir=tmp_path, appid=APPID)
    second.start(port)
    try:
        assert second.buckets() == {BUCKET: REGION}  # the bucket came back from disk
        client = make_client(second)
        assert client.get_object(Bucket=BUCKET, Key="dir/猫 1.jpg")["Body"].get_raw_stream().read() == b"cat"
        head = client.head_object(Bucket=BUCKET, Key="dir/猫 1.jpg")
        assert head["Content-Type"] == "image/jpeg" and head["x-cos-meta-labels"] == "cat"
        tags = client.get_object_tagging(Bucket=BUCKET, Key="dir/猫 1.jpg")["TagSet"]["Tag"]
        assert tags == [{"Key": "label", "Value": "cat"}]
        assert [c["Key"] for c in client.list_objects(Bucket=BUCKET)["Contents"]] == ["dir/猫 1.jpg"]
    finally:
        second.stop()


def wait_for_endpoint(proc: subprocess.Popen[str], timeout_s: float = 20) -> tuple[int, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return int(match.group(1)), lines
    raise AssertionError(f"the emulator did not start: {lines} {proc.stderr.read() if proc.stderr else ''}")


def spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "cos_autotag_tools.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_hard_crash_mid_upload_leaves_no_corrupt_object(tmp_path: Path) -> None:
    proc = spawn(
        ["--data-dir", str(tmp_path), "--bucket", BUCKET, "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY]
    )
    try:
        port, _ = wait_for_endpoint(proc)
        client = CosS3Client(
            CosConfig(
                Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http", IP="127.0.0.1", Port=port
            ),
            retry=0,
        )
        stop = threading.Event()
        done: list[str] = []

        def upload(n: int) -> None:
            i = 0
            while not stop.is_set():
                body = hashlib.sha256(f"{n}-{i}".encode()).digest() * 32768  # 1 MiB, distinct per write
                try:
                    client.put_object(Bucket=BUCKET, Key=f"obj-{n}", Body=body)
                    done.append(f"obj-{n}")
                except (CosClientError, CosServiceError):
                    return
                i += 1

        threads = [threading.Thread(target=upload, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(done) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(done) >= 12, "uploads did not get going"
        proc.send_signal(signal.SIGKILL)  # no cleanup, mid-write for some uploads
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    store = Store(tmp_path)
    keys = list(store.keys_from(BUCKET, "", ""))
    assert keys  # what was acknowledged before the crash is there
    for key in keys:
        state = store.get(BUCKET, key)
        assert state is not None and len(state.body) == 1024 * 1024
        assert state.etag == '"' + hashlib.md5(state.body).hexdigest() + '"', key
    leftovers = [p.name for p in (tmp_path / BUCKET / "objects").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_local_command_serves_until_interrupted() -> None:
    proc = spawn(["--bucket", f"pics-{APPID}:ap-shanghai", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY])
    try:
        port, lines = wait_for_endpoint(proc)
        client = CosS3Client(
            CosConfig(
                Region="ap-shanghai", SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http", IP="127.0.0.1", Port=port
            ),
            retry=0,
        )
        client.put_object(Bucket=f"pics-{APPID}", Key="hello.txt", Body=b"hi")
        assert client.get_object(Bucket=f"pics-{APPID}", Key="hello.txt")["Body"].get_raw_stream().read() == b"hi"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)  # a clean exit, not a fast one: a loaded CI machine may take a while
        # Read through the same buffered pipes as wait_for_endpoint (communicate() would skip their buffers).
        out = proc.stdout.read() if proc.stdout else ""
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    text = "".join(lines) + out
    assert f"Port={port}" in text and "SecretId=" + SECRET_ID in text and "served 2 requests" in text


def test_local_command_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_local(["--bucket", "Not_A_Bucket"]) == 2
    assert "bucket names must be <name>-<appid>" in capsys.readouterr().err
    assert run_local(["--bucket", "a-1250000000", "--bucket", "b-1250000001"]) == 2
    assert run_local(["--engine", "nope"]) == 2


def test_hundreds_of_concurrent_uploads_and_deliveries(emulator: Emulator) -> None:
    client = make_client(emulator)
    seen: list[str] = []
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: dict[str, Any]) -> None:
        for record in event["Records"]:
            key = record["cos"]["cosObject"]["key"].removeprefix(f"/{APPID}/photos/")
            # Re-enter the emulator from the handler, as the real function does.
            head = client.head_object(Bucket=BUCKET, Key=key)
            assert int(head["Content-Length"]) == record["cos"]["cosObject"]["size"]
            with lock:
                seen.append(key)

    emulator.add_trigger(BUCKET, handler)
    keys = [f"load/{i:03d}.bin" for i in range(300)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=k.encode()), keys))
    emulator.wait_idle(30)
    assert sorted(seen) == keys
    assert all(i.outcome == "ok" for i in emulator.invocations) and len(emulator.invocations) == 300
    assert emulator.count("PutObject", status=200) == 300
    listed = client.list_objects(Bucket=BUCKET, Prefix="load/")
    assert len(listed["Contents"]) == 300
