"""Retry what a retry can fix, with exponential backoff and full jitter, inside a deadline.

SCF retries a failed invocation only a minute later; throttling and 5xx bursts usually clear
in seconds, so the function retries within the invocation first, as long as time is left.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BASE_DELAY_S = 0.2
MAX_DELAY_S = 4.0
MAX_ATTEMPTS = 8


class Deadline:
    """When the invocation must stop trying: SCF's time limit less a margin to finish cleanly."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())


def is_retryable(error: BaseException) -> bool:
    return bool(getattr(error, "retryable", False))


def call_with_retry(
    fn: Callable[[], T],
    deadline: Deadline,
    *,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> T:
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as error:
            attempt += 1
            if not is_retryable(error) or attempt >= max_attempts:
                raise
            # Full jitter; the module's generator unless one is given (seeding one per call costs a syscall).
            delay = (rng or random).uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))
            # Leave time for one more attempt after the pause, or give up now.
            if delay + 1.0 > deadline.remaining():
                raise
            if on_retry is not None:
                on_retry(error, attempt, delay)
            sleep(delay)
