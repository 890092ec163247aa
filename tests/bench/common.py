"""What every benchmark shares: the figure record, paths, medians, events and subprocess helpers.

A benchmark is not a test: it asserts nothing about time. It measures a figure and a baseline
in the same run, and the report says whether the goal was met and by how much.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
WORK = ROOT / ".bench"  # scratch space for one run (git-ignored)

BUCKET = "photos-1250000000"
APPID = "1250000000"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDbenchmark00001"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
CREDENTIAL_ENV = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
RESULT_PREFIX = "BENCH-RESULT "  # a child process's one line of results among its JSON logs


@dataclass
class Figure:
    """One row of the results table."""

    name: str
    value: str  # the measured figure, formatted
    baseline: str  # the baseline measured in the same run ("-" when the goal has none)
    ratio: str  # figure / baseline, formatted ("-" when there is no baseline)
    goal: str
    met: bool | None  # None: could not be measured here
    notes: list[str] = field(default_factory=list)  # method and numbers behind the row
    miss: str = ""  # when missed: by how much, why, and what would close it
    raw: dict[str, Any] = field(default_factory=dict)  # every number, for .bench/results.json

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio_text(value: float) -> str:
    return f"{value:.2f}×"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: this one's, minus anything that changes imports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AUTOTAG_", "TENCENTCLOUD_"))}
    env.update(extra or {})
    return env


def run_python(
    code: str,
    *,
    env: Mapping[str, str] | None = None,
    flags: Sequence[str] = ("-I",),
    timeout_s: float = 120,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run `code` in a fresh interpreter and answer the JSON it printed after RESULT_PREFIX."""
    proc = subprocess.run(
        [python, *flags, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(env),
        cwd=ROOT,
        timeout=timeout_s,
        check=False,
    )
    return parse_result(proc)


def parse_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"the child process (exit {proc.returncode}) printed no result:\n{tail}")


def cos_event(key: str, request_id: str, size: int, event_name: str = "cos:ObjectCreated:Put") -> dict[str, Any]:
    """One record in the SCF COS trigger shape (tests/fixtures/events/put.json), for BUCKET."""
    name = BUCKET.rsplit("-", 1)[0]
    return {
        "Records": [
            {
                "cos": {
                    "cosSchemaVersion": "1.0",
                    "cosObject": {
                        "url": f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{quote(key)}",
                        "meta": {"x-cos-request-id": request_id, "Content-Type": "image/jpeg"},
                        "vid": "",
                        "key": f"/{APPID}/{name}/{key}",
                        "size": size,
                    },
                    "cosBucket": {"region": "gz", "name": name, "appid": APPID},
                    "cosNotificationId": "unkown",
                },
                "event": {
                    "eventName": event_name,
                    "eventVersion": "1.0",
                    "eventTime": 1732420000,
                    "eventSource": "qcs::cos",
                    "requestParameters": {"requestSourceIP": "127.0.0.1", "requestHeaders": {}},
                    "eventQueue": f"qcs:0:scf:gz:appid/{APPID}:default.cos-autotag.$LATEST",
                    "reservedInfo": "",
                    "reqid": 1,
                },
            }
        ]
    }


def scf_context(request_id: str = "bench-0") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "function_name": "cos-autotag",
        "memory_limit_in_mb": 64,
        "time_limit_in_ms": 30000,
    }


def mib(kib: float) -> float:
    return kib / 1024


def relative(path: Path) -> str:
    """A path as the report shows it: relative to the repository, never machine-specific."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name
