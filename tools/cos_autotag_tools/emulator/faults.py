"""Fault knobs: what can go wrong on the API side and in trigger delivery, reproducibly.

`Faults` is an immutable value; the emulator swaps the whole value at run time
(`Emulator.set_faults(...)`), so a request or delivery always sees one consistent set.
Random decisions come from one RNG seeded with `Faults.seed`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cos_autotag import cos_facts

SERVER_ERRORS: dict[str, int] = {"SlowDown": 503, "InternalError": 500, "ServiceUnavailable": 503}


@dataclass(frozen=True)
class Faults:
    """Every knob defaults to "no fault"."""

    # --- delivery side (SCF COS trigger) ---
    duplicate_deliveries: int = 1  # each event is delivered this many times (1 = once)
    out_of_order: bool = False  # deliveries are held back a random time within the window below
    out_of_order_window_s: float = 0.2
    delivery_delay_s: float = 0.0  # fixed wait before every delivery
    batch_records: int = 1  # merge up to this many pending records into one event's Records
    batch_window_s: float = 0.05  # how long a record waits for others to batch with

    # --- API side ---
    latency_s: float = 0.0  # added to every request...
    latency_jitter_s: float = 0.0  # ...plus uniform(0, jitter)
    latency_by_op: Mapping[str, float] = field(default_factory=dict)  # extra per operation name
    detect_qps: float | None = None  # DetectLabel quota (token bucket, burst = max(1, qps))
    detect_throttle_rate: float = 0.0  # fraction of DetectLabel calls answered throttled
    throttle_code: str = "-164"
    throttle_status: int = 429
    error_5xx_rate: float = 0.0  # fraction of requests answered with a server error
    error_5xx_ops: frozenset[str] | None = None  # None = every operation
    error_5xx_codes: tuple[str, ...] = ("SlowDown", "InternalError")
    seed: int = 0

    # --- misconfiguration ---
    # Operations the caller's role is not allowed (a CAM policy missing an action): answered
    # 403 AccessDenied after the signature checks out. Names as in the request log
    # ("PutObjectTagging", "DetectLabel", ...), not CAM actions.
    denied_ops: frozenset[str] = frozenset()
    # PUT Object - Copy can fail after it started and still answer 200 OK with the error in the
    # body (436/10881). When set (an error code such as "InternalError"), every copy answers so
    # and writes nothing.
    copy_error_in_body: str | None = None

    # --- hostile replies ---
    # Every DetectLabel that gets past the throttle is answered 200 with exactly this
    # (content type, body) instead of the label engine's XML: truncated, nested, wrong type...
    detect_reply: tuple[str, bytes] | None = None
    detect_reply_keys: frozenset[str] | None = None  # only for these object keys (None = every key)

    def __post_init__(self) -> None:
        if self.duplicate_deliveries < 1:
            raise ValueError("duplicate_deliveries must be >= 1 (1 delivers each event once)")
        if self.batch_records < 1:
            raise ValueError("batch_records must be >= 1")
        for name in (
            "out_of_order_window_s",
            "delivery_delay_s",
            "batch_window_s",
            "latency_s",
            "latency_jitter_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("detect_throttle_rate", "error_5xx_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.detect_qps is not None and self.detect_qps <= 0:
            raise ValueError("detect_qps must be > 0 (or None for no quota)")
        if self.throttle_code not in cos_facts.THROTTLE_CODES:
            raise ValueError(f"throttle_code {self.throttle_code!r} is not one of {sorted(cos_facts.THROTTLE_CODES)}")
        unknown = [code for code in self.error_5xx_codes if code not in SERVER_ERRORS]
        if unknown or not self.error_5xx_codes:
            raise ValueError(f"error_5xx_codes must be drawn from {sorted(SERVER_ERRORS)}")
        # Accept any iterable of operation names, stored as a frozenset.
        if self.error_5xx_ops is not None:
            object.__setattr__(self, "error_5xx_ops", frozenset(self.error_5xx_ops))
        if isinstance(self.denied_ops, str):
            raise ValueError("denied_ops is a set of operation names, not one string")
        object.__setattr__(self, "denied_ops", frozenset(self.denied_ops))
        prefixed = sorted(op for op in self.denied_ops if ":" in op)
        if prefixed:
            raise ValueError(
                f"denied_ops takes operation names as the request log shows them (PutObjectTagging), "
                f"not CAM actions: {prefixed}"
            )
        object.__setattr__(self, "latency_by_op", dict(self.latency_by_op))
        if self.detect_reply is not None:
            content_type, body = self.detect_reply
            if not isinstance(content_type, str) or not isinstance(body, bytes):
                raise ValueError("detect_reply is (content type, body bytes)")
        if self.detect_reply_keys is not None:
            object.__setattr__(self, "detect_reply_keys", frozenset(self.detect_reply_keys))


class FaultInjector:
    """Applies a Faults value: seeded random draws and the DetectLabel token bucket."""

    def __init__(self, faults: Faults, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._clock = clock  # the token bucket's time source (a test may pass its own)
        self._tokens = 0.0
        self._refilled_at = clock()
        self._reset_bucket(faults)

    @property
    def faults(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> None:
        with self._lock:
            if faults.seed != self._faults.seed:
                self._rng = random.Random(faults.seed)
            if faults.detect_qps != self._faults.detect_qps:
                self._reset_bucket(faults)
            self._faults = faults

    def _reset_bucket(self, faults: Faults) -> None:
        self._tokens = max(1.0, faults.detect_qps or 0.0)
        self._refilled_at = self._clock()

    def random(self) -> float:
        with self._lock:
            return self._rng.random()

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def latency_for(self, op: str) -> float:
        f = self._faults
        delay = f.latency_s + f.latency_by_op.get(op, 0.0)
        if f.latency_jitter_s:
            delay += self.uniform(0.0, f.latency_jitter_s)
        return delay

    def server_error_for(self, op: str) -> str | None:
        """The 5xx code to answer `op` with, or None."""
        f = self._faults
        if f.error_5xx_rate <= 0 or (f.error_5xx_ops is not None and op not in f.error_5xx_ops):
            return None
        with self._lock:
            if self._rng.random() >= f.error_5xx_rate:
                return None
            return self._rng.choice(f.error_5xx_codes)

    def detect_throttled(self) -> bool:
        """Whether this DetectLabel call is throttled (quota exhausted or the random rate)."""
        f = self._faults
        with self._lock:
            if f.detect_throttle_rate > 0 and self._rng.random() < f.detect_throttle_rate:
                return True
            if f.detect_qps is None:
                return False
            now = self._clock()
            burst = max(1.0, f.detect_qps)
            self._tokens = min(burst, self._tokens + (now - self._refilled_at) * f.detect_qps)
            self._refilled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return False
            return True
