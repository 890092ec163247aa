"""Measure the EfficientNet engine: weight load time and per-image time on the demo photos.

Run: `python -m tests.support.label_bench [repeats]` (prints JSON).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from cos_autotag_tools.labels.efficientnet import EfficientNetLite0, default_checkpoint_path, softmax
from cos_autotag_tools.labels.image import preprocess
from cos_autotag_tools.photos import list_photos


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def benchmark(repeats: int = 5) -> dict[str, float | int]:
    """Load time (s) and median/max per-image times (ms) over the demo photos."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    photos = [path.read_bytes() for path in list_photos()]
    start = time.perf_counter()
    # A fresh load, not the process-wide cached model, so the figure is the real cost.
    model = EfficientNetLite0.from_checkpoint(default_checkpoint_path())
    load_s = time.perf_counter() - start
    model.logits(preprocess(photos[0]))  # warm up BLAS and caches; not counted

    pre: list[float] = []
    forward: list[float] = []
    for _ in range(repeats):
        for data in photos:
            t0 = time.perf_counter()
            x = preprocess(data)
            t1 = time.perf_counter()
            softmax(model.logits(x))
            t2 = time.perf_counter()
            pre.append(t1 - t0)
            forward.append(t2 - t1)
    total = [a + b for a, b in zip(pre, forward, strict=True)]
    return {
        "load_s": round(load_s, 3),
        "images": len(total),
        "preprocess_median_ms": _ms(statistics.median(pre)),
        "forward_median_ms": _ms(statistics.median(forward)),
        "per_image_median_ms": _ms(statistics.median(total)),
        "per_image_max_ms": _ms(max(total)),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    repeats = int(args[0]) if args else 5
    print(json.dumps(benchmark(repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
