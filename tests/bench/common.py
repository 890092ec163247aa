"""What every benchmark shares: the figure record, paths, medians and subprocess helpers.

The bucket, credentials, events, context and images are the tests' own, from tests/support.

A benchmark is not a test: it asserts nothing about time. It measures a figure and a baseline
in the same run, and the report says whether the goal was met and by how much.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
TOOLS = ROOT / "tools"
# A child running the tooling imports this checkout's function and tooling, not an installed copy.
TOOLING_PYTHONPATH = os.pathsep.join((str(SRC), str(TOOLS)))
WORK = ROOT / ".bench"  # scratch space for one run (git-ignored)

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
    return parse_result(_run_child([python, *flags, "-c", code], env, timeout_s, check=False))


def _run_child(
    argv: list[str], env: Mapping[str, str] | None, timeout_s: float | None, *, check: bool
) -> subprocess.CompletedProcess[str]:
    """Run `argv` from the repository root with child_env(env), capturing its output as text."""
    return subprocess.run(
        argv, capture_output=True, text=True, env=child_env(env), cwd=ROOT, timeout=timeout_s, check=check
    )


# `import time: <self µs> | <cumulative µs> | <indent><module>`: a top-level import has no indent.
_IMPORT_TIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def run_importtime(
    code: str, *, env: Mapping[str, str] | None = None, timeout_s: float | None = 120
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh `python -I -X importtime` (a failure raises); its stderr has the import times."""
    return _run_child([sys.executable, "-I", "-X", "importtime", "-c", code], env, timeout_s, check=True)


def import_times(stderr: str) -> Iterator[tuple[str, int, int, bool]]:
    """(module, own µs, cumulative µs, whether top-level) for each `-X importtime` line in `stderr`."""
    for line in stderr.splitlines():
        match = _IMPORT_TIME_LINE.match(line)
        if match:
            yield match.group(4), int(match.group(1)), int(match.group(2)), not match.group(3)


def parse_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"the child process (exit {proc.returncode}) printed no result:\n{tail}")


def mib(kib: float) -> float:
    return kib / 1024


def relative(path: Path) -> str:
    """A path as the report shows it: relative to the repository, never machine-specific."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name
