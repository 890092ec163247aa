"""A token bucket that paces detect-label calls near the account's quota (AIMD).

The rate starts at the quota the user gives (--qps). When Cloud Infinite answers "too many
requests" the rate is cut multiplicatively, once per cool-down (every call in flight during a
burst is throttled together, and one burst should cost one cut, not ten). After a quiet period
the rate climbs back additively toward the quota. Callers reserve their slot and sleep outside
the lock, so the calls leave evenly spaced at the current rate whatever the thread count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketStats:
    ceiling_qps: float
    rate_qps: float  # the rate now
    lowest_qps: float  # the lowest rate a throttle pushed it to
    throttles: int  # throttled answers reported
    cuts: int  # times the rate was cut (at most one per cool-down)
    waited_s: float  # total time callers slept for a token


class TokenBucket:
    def __init__(
        self,
        qps: float,
        burst: float = 1.0,
        *,
        decrease: float = 0.7,
        min_qps: float | None = None,
        recover_after_s: float = 2.0,
        recover_qps_per_s: float | None = None,
        cut_cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0:
            raise ValueError(f"qps must be > 0, not {qps}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, not {decrease}")
        self.ceiling = float(qps)
        self.burst = float(burst)
        self.decrease = decrease
        # Never slower than this: a long throttling spell must not stall the run for minutes.
        self.min_qps = min_qps if min_qps is not None else max(0.1, qps * 0.05)
        self.recover_after_s = recover_after_s
        # By default a full recovery from one cut takes a few seconds of quiet.
        self.recover_qps_per_s = recover_qps_per_s if recover_qps_per_s is not None else max(0.1, qps * 0.1)
        self.cut_cooldown_s = cut_cooldown_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        now = clock()
        self._rate = self.ceiling
        self._tokens = self.burst
        self._last_refill = now
        self._last_cut: float | None = None
        self._lowest = self.ceiling
        self._throttles = 0
        self._cuts = 0
        self._waited = 0.0

    @property
    def rate(self) -> float:
        with self._lock:
            self._update(self._clock())
            return self._rate

    def acquire(self, tokens: float = 1.0) -> None:
        """Wait until `tokens` calls may go out at the current rate."""
        with self._lock:
            self._update(self._clock())
            self._tokens -= tokens
            # A negative balance is a queue of reservations: wait until it is paid back.
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
            self._waited += wait
        if wait > 0:
            self._sleep(wait)

    def throttled(self) -> None:
        """A call was answered "too many requests": slow down (once per cool-down)."""
        with self._lock:
            now = self._clock()
            self._update(now)
            self._throttles += 1
            if self._last_cut is not None and now - self._last_cut < self.cut_cooldown_s:
                return
            self._rate = max(self.min_qps, self._rate * self.decrease)
            self._lowest = min(self._lowest, self._rate)
            self._last_cut = now
            self._cuts += 1

    def stats(self) -> BucketStats:
        with self._lock:
            self._update(self._clock())
            return BucketStats(
                ceiling_qps=self.ceiling,
                rate_qps=round(self._rate, 3),
                lowest_qps=round(self._lowest, 3),
                throttles=self._throttles,
                cuts=self._cuts,
                waited_s=round(self._waited, 3),
            )

    def _update(self, now: float) -> None:
        elapsed = max(0.0, now - self._last_refill)
        # Refill at the rate that held over the interval, then let the rate recover.
        self._tokens = min(self.burst, self._tokens + elapsed * self._rate)
        if self._last_cut is not None and self._rate < self.ceiling:
            quiet_from = self._last_cut + self.recover_after_s
            start = max(quiet_from, self._last_refill)
            if now > start:
                self._rate = min(self.ceiling, self._rate + (now - start) * self.recover_qps_per_s)
        self._last_refill = now
