"""The emulator in a process of its own, so its CPU is not counted against the code measured.

    with EmulatorProcess(faults={"latency_s": 0.2}) as emu:
        client = emu.client()                     # the unmodified SDK, over HTTP on 127.0.0.1
        emu.set_faults(detect_qps=20)
        emu.requests(op="DetectLabel")            # the emulator's request log, as dicts

The child (`python -m tests.bench.emulator_proc`) serves BUCKET with the deterministic label
engine and answers one JSON command per line on stdin with one JSON line on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import IO, Any

from qcloud_cos import CosConfig, CosS3Client

from tests.support.constants import BUCKET, CREDENTIAL_ENV, REGION, SECRET_ID, SECRET_KEY
from tests.support.scf import cos_event

from .common import ROOT, TOOLING_PYTHONPATH, child_env


class EmulatorProcess:
    def __init__(self, faults: dict[str, Any] | None = None) -> None:
        self._faults = faults or {}
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> EmulatorProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.emulator_proc", json.dumps({"faults": self._faults})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=child_env({"PYTHONPATH": TOOLING_PYTHONPATH}),
        )
        hello = self._read()
        self.port = int(hello["port"])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write(json.dumps({"op": "stop"}) + "\n")
                proc.stdin.flush()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what the benchmarks use ------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def function_env(self, **extra: str) -> dict[str, str]:
        """Environment for the function or the backfill CLI, pointed at this emulator."""
        return {**CREDENTIAL_ENV, "AUTOTAG_COS_ENDPOINT": self.endpoint, **extra}

    def client(self) -> CosS3Client:
        config = CosConfig(
            Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http", IP="127.0.0.1", Port=self.port
        )
        return CosS3Client(config, retry=0)

    def put_many(self, objects: dict[str, bytes]) -> dict[str, dict[str, Any]]:
        """Upload with the SDK (a few at a time); key -> cos_event() for its upload."""
        client = self.client()

        def put(item: tuple[str, bytes]) -> tuple[str, dict[str, Any]]:
            key, body = item
            headers = client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/jpeg")
            return key, cos_event(key, str(headers["x-cos-request-id"]), len(body))

        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(pool.map(put, objects.items()))

    def set_faults(self, **faults: Any) -> None:
        """Replace every fault knob (unnamed ones go back to "no fault")."""
        self._ask({"op": "faults", "faults": faults})

    def requests(self, op: str | None = None, key_prefix: str = "") -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self._ask({"op": "requests", "filter": op, "prefix": key_prefix})["requests"]
        return records

    def count(self, op: str, status: int | None = None, key_prefix: str = "") -> int:
        return int(self._ask({"op": "count", "filter": op, "status": status, "prefix": key_prefix})["count"])

    def tags(self, key: str) -> dict[str, str]:
        tags: dict[str, str] = self._ask({"op": "tags", "key": key})["tags"]
        return tags

    def clear(self) -> None:
        self._ask({"op": "clear"})

    # --- the pipe ---------------------------------------------------------------------------------

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("the emulator process is not running")
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process exited (code {self._proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"emulator process: {answer['error']}")
        return answer


# --- the child --------------------------------------------------------------------------------------


def _serve(config: dict[str, Any], commands: Iterator[str], out: IO[str]) -> None:
    from cos_autotag_tools.emulator import Emulator, Faults
    from cos_autotag_tools.labels import DeterministicEngine

    emu = Emulator(
        credentials={SECRET_ID: SECRET_KEY},
        label_engine=DeterministicEngine(require_image_signature=True),
        faults=Faults(**config.get("faults", {})),
    )
    port = emu.start()
    try:
        emu.create_bucket(BUCKET, REGION)
        _answer(out, {"port": port})
        for line in commands:
            command = json.loads(line)
            op = command.get("op")
            if op == "stop":
                return
            try:
                _answer(out, _run(emu, command, Faults))
            except Exception as error:  # the parent gets the error instead of a hang
                _answer(out, {"error": repr(error)})
    finally:
        emu.stop()


def _run(emu: Any, command: dict[str, Any], faults_cls: Any) -> dict[str, Any]:
    op = command["op"]
    if op == "faults":
        emu.faults = faults_cls(**command["faults"])
        return {}
    if op in ("requests", "count"):
        wanted, prefix, status = command.get("filter"), command.get("prefix") or "", command.get("status")
        matching = [
            r
            for r in emu.requests
            if (wanted is None or r.op == wanted)
            and (not prefix or (r.key or "").startswith(prefix))
            and (status is None or r.status == status)
        ]
        if op == "count":
            return {"count": len(matching)}
        return {"requests": [dataclasses.asdict(r) for r in matching]}
    if op == "tags":
        state = emu.get_object_state(BUCKET, command["key"])
        return {"tags": dict(state.tags) if state is not None else {}}
    if op == "clear":
        emu.clear_logs()
        return {}
    raise ValueError(f"unknown command {op!r}")


def _answer(out: IO[str], answer: dict[str, Any]) -> None:
    out.write(json.dumps(answer) + "\n")
    out.flush()


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    _serve(config, iter(sys.stdin.readline, ""), sys.stdout)


if __name__ == "__main__":
    main()
