"""Cold start: a fresh interpreter importing the handler and building its COS client.

Both sides run in fresh `python -I` processes with the same interpreter and site-packages,
alternating, and time themselves from just before the first import to just after the client
exists (interpreter start-up is the same for both and is left out). The baseline is the
least any function using the SDK and structlog pays: `import qcloud_cos, structlog` and one
`CosS3Client`.
"""

from __future__ import annotations

from tests.support.constants import CREDENTIAL_ENV, REGION

from .common import RESULT_PREFIX, SRC, Figure, import_times, median, ratio_text, run_importtime, run_python

GOAL_RATIO = 1.15
PRELUDE = f"import sys, time, json\nsys.path.insert(0, {str(SRC)!r})\nstarted = time.perf_counter()\n"
REPORT = f"print({RESULT_PREFIX!r} + json.dumps({{'ms': (time.perf_counter() - started) * 1000}}))\n"

BASELINE = (
    PRELUDE
    + "import qcloud_cos, structlog\n"
    + f"qcloud_cos.CosS3Client(qcloud_cos.CosConfig(Region={REGION!r}, SecretId='AKIDcold', SecretKey='cold-key'))\n"
    + REPORT
)
HANDLER = (
    PRELUDE
    + "import index\n"
    + "from cos_autotag.handler import App\n"
    + f"App.from_env().gateway.client({REGION!r})\n"
    + REPORT
)


def _once(code: str) -> float:
    return float(run_python(code, env=CREDENTIAL_ENV)["ms"])


def import_offenders(limit: int = 8) -> list[tuple[str, int]]:
    """The modules the handler imports and the baseline does not, by own time (`-X importtime`), µs."""

    def self_times(code: str) -> dict[str, int]:
        proc = run_importtime(code, env=CREDENTIAL_ENV, timeout_s=None)
        return {name: own_us for name, own_us, _, _ in import_times(proc.stderr)}

    base, handler = self_times(BASELINE), self_times(HANDLER)
    extra = [(name, us) for name, us in handler.items() if name not in base]
    return sorted(extra, key=lambda item: -item[1])[:limit]


def measure(repeats: int = 15) -> Figure:
    _once(BASELINE), _once(HANDLER)  # warm-up: byte-code caches and the OS page cache
    baseline_ms: list[float] = []
    handler_ms: list[float] = []
    for _ in range(repeats):
        baseline_ms.append(_once(BASELINE))
        handler_ms.append(_once(HANDLER))
    base, handler = median(baseline_ms), median(handler_ms)
    ratio = handler / base
    met = ratio <= GOAL_RATIO
    figure = Figure(
        name="cold start: fresh process imports the handler and builds its client",
        value=f"{handler:.0f} ms",
        baseline=f"{base:.0f} ms (`import qcloud_cos, structlog` + a client)",
        ratio=ratio_text(ratio),
        goal=f"≤ {GOAL_RATIO:.2f}×",
        met=met,
        raw={"repeats": repeats, "baseline_ms": baseline_ms, "handler_ms": handler_ms, "ratio": ratio},
    )
    figure.notes.append(
        f"medians of {repeats} alternating fresh `python -I` processes per side, timed in-process from the "
        f"first import to the built client; spread: handler {min(handler_ms):.0f}–{max(handler_ms):.0f} ms, "
        f"baseline {min(baseline_ms):.0f}–{max(baseline_ms):.0f} ms"
    )
    offenders = import_offenders()
    figure.raw["offenders_us"] = offenders
    listed = ", ".join(f"`{name}` {us / 1000:.1f} ms" for name, us in offenders[:5])
    if met:
        figure.notes.append(f"the modules the handler adds, by own time (`-X importtime`): {listed}")
    else:
        figure.miss = (
            f"missed by {(ratio - GOAL_RATIO) * 100:.0f} points of the ratio ({handler - base:.0f} ms over the "
            f"baseline); `-X importtime` top offenders the baseline does not load: {listed}. Deferring those "
            "imports to first use would close it."
        )
    return figure
