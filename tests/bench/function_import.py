"""The function's own import cost: what `import index` adds once `qcloud_cos` and `structlog` are in.

Each repeat is one fresh `python -I -X importtime` process that runs
`import qcloud_cos, structlog` and then `import index` (src/ on sys.path), from bytecode (one
untimed run writes it first). `-X importtime`'s cumulative time of `index` is the figure; the
same process's cumulative times of `qcloud_cos` and `structlog` are the baseline, so both come
from the same run and the same interpreter. The CPU time of each part (time.process_time) is
reported beside it: it moves less than the wall clock when the machine is busy.
"""

from __future__ import annotations

from tests.support.constants import CREDENTIAL_ENV

from .common import RESULT_PREFIX, SRC, Figure, import_times, median, parse_result, ratio_text, run_importtime

GOAL_MS = 10.0
CODE = (
    "import sys, time, json\n"
    f"sys.path.insert(0, {str(SRC)!r})\n"
    "c0 = time.process_time()\n"
    "import qcloud_cos, structlog\n"
    "c1 = time.process_time()\n"
    "import index\n"
    "c2 = time.process_time()\n"
    f"print({RESULT_PREFIX!r} + json.dumps({{'base_cpu_ms': (c1 - c0) * 1000, 'fn_cpu_ms': (c2 - c1) * 1000}}))\n"
)


def _once() -> tuple[float, float, float, float, dict[str, int]]:
    """One process: (function ms, baseline ms, function CPU ms, baseline CPU ms, own µs per module)."""
    proc = run_importtime(CODE, env=CREDENTIAL_ENV)
    cumulative: dict[str, int] = {}
    own: dict[str, int] = {}
    for name, own_us, cumulative_us, top_level in import_times(proc.stderr):
        if top_level:
            cumulative[name] = cumulative_us
        if name == "index" or name.startswith("cos_autotag"):
            own[name] = own_us
    cpu = {k: float(v) for k, v in parse_result(proc).items()}
    base_us = cumulative["qcloud_cos"] + cumulative["structlog"]
    return cumulative["index"] / 1000, base_us / 1000, cpu["fn_cpu_ms"], cpu["base_cpu_ms"], own


def measure(repeats: int = 15) -> Figure:
    _once()  # writes the bytecode of src/ (this machine may run with PYTHONDONTWRITEBYTECODE elsewhere)
    runs = [_once() for _ in range(repeats)]
    fn, base, fn_cpu, base_cpu = (median([run[i] for run in runs]) for i in range(4))
    met = fn <= GOAL_MS
    own: dict[str, list[int]] = {}
    for run in runs:
        for name, us in run[4].items():
            own.setdefault(name, []).append(us)
    heaviest = sorted(((name, median(us)) for name, us in own.items()), key=lambda item: -item[1])[:6]
    listed = ", ".join(f"`{name}` {us / 1000:.1f} ms" for name, us in heaviest)
    figure = Figure(
        name="function import: `import index` after the SDK and structlog",
        value=f"{fn:.1f} ms",
        baseline=f"{base:.0f} ms (`import qcloud_cos, structlog`, same process)",
        ratio=ratio_text(fn / base),
        goal=f"≤ {GOAL_MS:.0f} ms",
        met=met,
        raw={
            "repeats": repeats,
            "function_ms": [run[0] for run in runs],
            "baseline_ms": [run[1] for run in runs],
            "function_cpu_ms": [run[2] for run in runs],
            "baseline_cpu_ms": [run[3] for run in runs],
            "own_us": {name: median(us) for name, us in own.items()},
        },
    )
    figure.notes.append(
        f"medians of {repeats} fresh `python -I -X importtime` processes importing `qcloud_cos, structlog` "
        f"then `index` from bytecode, cumulative times from the same process; CPU time "
        f"(time.process_time): function {fn_cpu:.1f} ms, baseline {base_cpu:.0f} ms; the SDK import plus "
        f"the function's is {(base + fn) / base:.3f}× the SDK import alone; heaviest own modules: {listed}"
    )
    if not met:
        figure.miss = (
            f"missed by {fn - GOAL_MS:.1f} ms; the heaviest of the function's modules by own time: {listed}. "
            "Deferring what a normal record does not use to its first use would close it."
        )
    return figure
