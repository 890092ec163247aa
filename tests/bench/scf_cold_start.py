"""Cold start as SCF runs it: the function package and the layer unpacked, a new CPython 3.10 process.

`make bench` builds both first (`make package`). Each side gets a fresh copy of the two trees:
one as built (with the bytecode the build ships), one with every `__pycache__` removed (what
shipped before: every module compiled on every cold start). The sides alternate; each run is
`python3.10 -B -I -S` with only the code, the layer and the stdlib on the path, timed in-process
around `import index` (what SCF does first), with the process's peak RSS read at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support.constants import CREDENTIAL_ENV
from tests.support.layer_build import load_build_module

from .common import RESULT_PREFIX, WORK, Figure, _run_child, median, parse_result, ratio_text

GOAL_RATIO = 0.55
CHILD = (
    "import sys, time, json\n"
    "sys.path[:0] = sys.argv[1:3]\n"
    "started = time.perf_counter()\n"
    "import index\n"
    "ms = (time.perf_counter() - started) * 1000\n"
    # VmHWM, not ru_maxrss, which Linux carries across fork+exec from the (larger) parent (memory.py).
    "hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
    f"print({RESULT_PREFIX!r} + json.dumps({{'ms': ms, 'rss_mib': int(hwm) / 1024}}))\n"
)


def _once(python: str, code: Path, layer: Path) -> dict[str, float]:
    argv = [python, "-B", "-I", "-S", "-c", CHILD, str(code), str(layer)]
    return {k: float(v) for k, v in parse_result(_run_child(argv, CREDENTIAL_ENV, 120, check=True)).items()}


def _unpack(code: Path, layer: Path, where: Path, bytecode: bool) -> tuple[Path, Path]:
    """Copies of the two trees, as SCF unpacks them; without bytecode, every __pycache__ removed."""
    shutil.rmtree(where, ignore_errors=True)
    ignore = None if bytecode else shutil.ignore_patterns("__pycache__", "*.pyc")
    return (
        Path(shutil.copytree(code, where / "var-user", ignore=ignore)),
        Path(shutil.copytree(layer, where / "opt", ignore=ignore)),
    )


def measure(repeats: int = 10) -> Figure:
    build = load_build_module()
    name = "SCF cold start: package + layer unpacked, new 3.10 process, `import index`"
    goal = f"with bytecode ≤ {GOAL_RATIO:.2f}× without"
    python, reason = build.find_python310()
    code, layer = build.FUNCTION_OUT / "function", build.DEFAULT_OUT / "layer"
    summary_file = build.DEFAULT_OUT / build.SUMMARY_NAME
    missing = "" if python else reason
    if not missing and not ((code / "index.py").is_file() and summary_file.is_file()):
        missing = "no built layer or function package: run `make package` (make bench does)"
    summary: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    if not missing and not summary.get("bytecode"):
        missing = f"the layer was built without bytecode: {summary.get('no_bytecode_reason')}"
    if missing or python is None:
        return Figure(name=name, value="not measured", baseline="-", ratio="-", goal=goal, met=None, notes=[missing])
    with_bc = _unpack(code, layer, WORK / "scf-cold" / "bytecode", bytecode=True)
    without_bc = _unpack(code, layer, WORK / "scf-cold" / "source", bytecode=False)
    _once(python.exe, *with_bc), _once(python.exe, *without_bc)  # warm-up: the OS page cache
    runs: dict[str, list[dict[str, float]]] = {"bytecode": [], "source": []}
    for _ in range(repeats):
        runs["source"].append(_once(python.exe, *without_bc))
        runs["bytecode"].append(_once(python.exe, *with_bc))
    ms = {side: median([r["ms"] for r in rs]) for side, rs in runs.items()}
    rss = {side: median([r["rss_mib"] for r in rs]) for side, rs in runs.items()}
    ratio = ms["bytecode"] / ms["source"]
    figure = Figure(
        name=name,
        value=f"{ms['bytecode']:.0f} ms, {rss['bytecode']:.1f} MiB peak RSS (shipped bytecode)",
        baseline=f"{ms['source']:.0f} ms, {rss['source']:.1f} MiB (no bytecode)",
        ratio=ratio_text(ratio),
        goal=goal,
        met=ratio <= GOAL_RATIO,
        raw={"python": python.version, "repeats": repeats, "runs": runs, "ms": ms, "rss_mib": rss, "ratio": ratio},
    )
    sides = (("bytecode", with_bc), ("source", without_bc))
    sizes = {side: build.tree_size(trees[1]) / 1024 / 1024 for side, trees in sides}
    figure.notes.append(
        f"medians of {repeats} alternating `python{build.PYTHON_VERSION} -B -I -S` processes per side (CPython "
        f"{python.version}), each on fresh copies of build/function and layers/build/layer, timed around "
        f"`import index`; RSS is the process's peak; layer unzipped {sizes['source']:.2f} MB without bytecode, "
        f"{sizes['bytecode']:.2f} MB with, {summary['zipped_bytes'] / 1024 / 1024:.2f} MB zipped"
    )
    if not figure.met:
        figure.miss = f"ratio {ratio:.2f}× over the goal of {GOAL_RATIO:.2f}×"
    shutil.rmtree(WORK / "scf-cold", ignore_errors=True)
    return figure
