"""`make bench`: measure every figure of issue 5 beside its baseline, print the table, write it down.

    python -m tests.bench.run [--only cold,import,scf-cold,memory,rps,calls,backfill,resume,layer,search]
                              [--quick] [--no-write]

Writes tests/bench/RESULTS.md (the table, the missed goals and how each figure was measured),
the block between `<!-- bench:start -->` and `<!-- bench:end -->` in README.md when those
markers are there, and every number to .bench/results.json. A missed goal is a result, not
an error: the exit code is 1 only when a figure could not be measured at all. Only a full run
(no --only, no --quick) writes RESULTS.md and the README block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from . import api_calls, backfill, cold_start, function_import, layer, memory, scf_cold_start, search, throughput
from .common import ROOT, WORK, Figure

README = ROOT / "README.md"
RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _figures(quick: bool) -> dict[str, Callable[[], Figure | list[Figure]]]:
    return {
        "cold": lambda: cold_start.measure(repeats=5 if quick else 15),
        "import": lambda: function_import.measure(repeats=7 if quick else 15),
        "scf-cold": lambda: scf_cold_start.measure(repeats=5 if quick else 10),
        "memory": lambda: memory.measure(repeats=1 if quick else 3),
        "rps": lambda: throughput.measure(records=20 if quick else 30, rounds=7 if quick else 28),
        "calls": api_calls.measure,
        "backfill": backfill.measure_throughput,
        "resume": backfill.measure_resume,
        "layer": layer.measure,
        "search": search.measure,
    }


def _error_figure(name: str, error: BaseException) -> Figure:
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return Figure(name=name, value="error", baseline="-", ratio="-", goal="-", met=None, notes=[last])


def _commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        )
    except OSError:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _context(load_before: float, load_after: float) -> str:
    version = platform.python_version()
    return (
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {_commit()} on CPython {version} "
        f"(SCF runs Python 3.10: the layer check runs on 3.10 when this machine has it), {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} "
        "after (anything else running on the machine shows up in the timings)."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(figures: list[Figure], context: str, full: bool) -> str:
    lines = [
        "<!-- written by `make bench` (python -m tests.bench.run); edit tests/bench/, not this text -->",
        context,
        "",
        "| figure | measured | baseline (same run) | ratio | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        cells = (f.name, f.value, f.baseline, f.ratio, f.goal, f.verdict)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    missed = [f for f in figures if f.met is False]
    if missed:
        lines += ["", "Missed goals, by how much, why, and what would close it:", ""]
        lines += [f"- **{f.name}**: {f.miss or 'see the notes below.'}" for f in missed]
    unmeasured = [f for f in figures if f.met is None]
    if unmeasured:
        lines += ["", "Not measured here:", ""]
        lines += [f"- **{f.name}**: {'; '.join(f.notes)}" for f in unmeasured]
    if full:
        lines += ["", "How each figure was measured (tests/bench/, one module per figure):", ""]
        for f in figures:
            if f.met is not None:
                lines.append(f"- **{f.name}**: " + "; ".join(f.notes) + ".")
    else:
        lines += ["", "How each figure was measured: [tests/bench/RESULTS.md](tests/bench/RESULTS.md)."]
    # Never a machine-specific path in a committed file: paths inside the repository become relative.
    return "\n".join(lines).replace(str(ROOT) + os.sep, "") + "\n"


def write_results(figures: list[Figure], context: str) -> list[Path]:
    written = []
    RESULTS.write_text("# Benchmark results\n\n" + render(figures, context, full=True), encoding="utf-8")
    written.append(RESULTS)
    if README.exists():
        text = README.read_text(encoding="utf-8")
        start, end = text.find(START), text.find(END)
        if 0 <= start < end:
            block = START + "\n" + render(figures, context, full=False) + END
            README.write_text(text[:start] + block + text[end + len(END) :], encoding="utf-8")
            written.append(README)
    return written


def print_table(figures: list[Figure]) -> None:
    rows = [("figure", "measured", "baseline", "ratio", "goal", "result")]
    rows += [(f.name[:48], f.value, f.baseline[:44], f.ratio, f.goal[:40], f.verdict.strip("*")) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated figures: " + ", ".join(_figures(False)))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run; figures are noisier)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no RESULTS.md or README block")
    # Only a full run rewrites RESULTS.md and the README block, so they never hold a partial table.
    args = parser.parse_args(argv)
    available = _figures(args.quick)
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {', '.join(available)}")

    WORK.mkdir(exist_ok=True)
    load_before = os.getloadavg()[0]
    figures: list[Figure] = []
    for name in chosen:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            measured = available[name]()
        except Exception as error:  # one broken figure must not hide the others
            traceback.print_exc()
            measured = _error_figure(name, error)
        for figure in measured if isinstance(measured, list) else [measured]:  # a module may give several
            print(
                f"[bench] {name}: {figure.value} ({figure.verdict.strip('*')}, {time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            figures.append(figure)
    context = _context(load_before, os.getloadavg()[0])

    print()
    print(context)
    print_table(figures)
    for f in figures:
        if f.met is False:
            print(f"\nmissed: {f.name}: {f.miss}")
    (WORK / "results.json").write_text(
        json.dumps([{**f.__dict__, "verdict": f.verdict} for f in figures], indent=1, default=str), encoding="utf-8"
    )
    if args.only or args.quick:
        print("\n(a partial or quick run: nothing written but .bench/results.json)", file=sys.stderr)
    elif not args.no_write:
        for path in write_results(figures, context):
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 1 if any(f.value == "error" for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
