"""Peak memory of one invocation labeling one object, as SCF's 64 MB tier would see it.

A fresh `python -I` process imports the handler and runs one invocation through
`index.main_handler` against the emulator in another process, then reads its own peak RSS
(VmHWM). The baseline is a fresh process that only does `import qcloud_cos, structlog`.
"""

from __future__ import annotations

import json

from .common import RESULT_PREFIX, SRC, WORK, Figure, mib, ratio_text, run_python
from .emulator_proc import EmulatorProcess

GOAL_MIB = 48.0
SCF_TIER_MB = 64

# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec, so a child would report the
# larger parent's resident size; VmHWM is the peak of this process image alone.
_PEAK = (
    "hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
    f"print({RESULT_PREFIX!r} + json.dumps(dict(result, peak_kib=int(hwm), "
    "ru_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
)
BASELINE = "import json, resource\nimport qcloud_cos, structlog\nresult = {}\n" + _PEAK
INVOCATION = (
    f"import json, resource, sys\nsys.path.insert(0, {str(SRC)!r})\n"
    "import index\n"
    "event, context = json.load(open(sys.argv[1], encoding='utf-8'))\n"
    "summary = index.main_handler(event, context)\n"
    "result = {'labeled': summary['labeled'], 'calls': summary['calls']}\n" + _PEAK
)


def measure(repeats: int = 3) -> Figure:
    from tests.support.images import jpeg

    WORK.mkdir(exist_ok=True)
    handler_kib: list[int] = []
    baseline_kib: list[int] = []
    calls: list[dict[str, int]] = []
    ru_maxrss_kib: list[int] = []  # for the record only (see _PEAK)
    with EmulatorProcess() as emu:
        # A photo-sized JPEG: tags mode never downloads it, but the emulator labels real bytes.
        events = emu.put_many({f"memory/{i}.jpg": jpeg(i, size=(1600, 1200)) for i in range(repeats)})
        for i, (_key, event) in enumerate(sorted(events.items())):
            path = WORK / f"memory-event-{i}.json"
            path.write_text(json.dumps([event, {"request_id": f"mem-{i}", "time_limit_in_ms": 30000}]))
            result = run_python(
                INVOCATION.replace("sys.argv[1]", repr(str(path))), env=emu.function_env(AUTOTAG_MIN_CONFIDENCE="10")
            )
            if result["labeled"] != 1:
                raise RuntimeError(f"the invocation did not label its object: {result}")
            handler_kib.append(int(result["peak_kib"]))
            ru_maxrss_kib.append(int(result["ru_maxrss_kib"]))
            calls.append(result["calls"])
            baseline_kib.append(int(run_python(BASELINE)["peak_kib"]))
    peak, base = mib(max(handler_kib)), mib(max(baseline_kib))
    met = peak <= GOAL_MIB
    figure = Figure(
        name="peak memory of one invocation labeling one object",
        value=f"{peak:.1f} MiB RSS",
        baseline=f"{base:.1f} MiB (bare `import qcloud_cos, structlog`)",
        ratio=ratio_text(peak / base),
        goal=f"≤ {GOAL_MIB:.0f} MiB RSS (fits SCF's {SCF_TIER_MB} MB tier)",
        met=met,
        raw={"handler_kib": handler_kib, "baseline_kib": baseline_kib, "ru_maxrss_kib": ru_maxrss_kib, "calls": calls},
    )
    figure.notes.append(
        f"the largest peak RSS of {repeats} fresh processes per side, read from VmHWM (`ru_maxrss` would show the "
        "bench's own larger size: Linux carries it across fork and exec); each invocation labeled one "
        f"1600x1200 JPEG in tags mode with calls {calls[0]}; {peak - base:.1f} MiB above the bare import"
    )
    if not met:
        figure.miss = (
            f"missed by {peak - GOAL_MIB:.1f} MiB: the interpreter, the SDK and structlog already take "
            f"{base:.1f} MiB; the rest is the handler's own modules and one request's buffers."
        )
    return figure
