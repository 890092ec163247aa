"""Pause points: hold an emulator request until the test releases it, or wait until one arrives.

Tests stage races with these instead of sleeping: a race is then shown every time, whatever the
machine's load. A `Gate` matches requests by operation name (the names the request log uses),
and optionally key and bucket; it catches the first `count` matching requests and lets later
ones through untouched.

    with pause(emu, "PutObjectTagging", key="a.jpg") as gate:
        ...                              # start something that will send the request
        gate.wait_arrived(timeout=10)    # it has arrived and is held, not yet applied
        ...                              # do whatever must happen in between
        gate.release()                   # it now goes on
        gate.wait_done(timeout=10)       # and has been answered

`when="after"` holds a request after the operation ran but before its answer is sent.
`watch(emu, ...)` is the same gate without holding: it only counts and waits for arrivals.
The emulator calls its `hooks` at each pause point of every request; `pause` installs a
`PauseRegistry` there (the emulator's own hooks do nothing).

Every wait has a timeout, so a broken test fails instead of hanging: `wait_arrived` and
`wait_done` raise `TimeoutError`, and a held request that nobody releases goes on by itself
after `hold_timeout_s`; leaving the `with` block (or `close()`) then raises `GateTimeout`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.emulator.messages import Request
from cos_autotag_tools.emulator.service import OPERATIONS, RequestHooks

When = Literal["before", "after"]
WHEN_VALUES: tuple[When, ...] = ("before", "after")


class GateTimeout(AssertionError):
    """A held request was never released and went on by itself: the test's staging is broken."""


@dataclass(frozen=True)
class Arrival:
    """A request a gate caught."""

    op: str
    method: str
    bucket: str | None
    key: str | None
    request_id: str
    arrived_at: float  # time.monotonic()


class Gate:
    """One pause point. Thread-safe; build it with `pause` or `watch`."""

    def __init__(
        self,
        registry: PauseRegistry,
        op: str,
        *,
        key: str | None = None,
        bucket: str | None = None,
        count: int = 1,
        when: When = "before",
        hold: bool = True,
        hold_timeout_s: float = 30.0,
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        if when not in WHEN_VALUES:
            raise ValueError(f"when must be one of {WHEN_VALUES}, not {when!r}")
        if hold_timeout_s <= 0:
            raise ValueError("hold_timeout_s must be > 0")
        self.op, self.key, self.bucket = op, key, bucket
        self.count, self.when, self.hold, self.hold_timeout_s = count, when, hold, hold_timeout_s
        self._registry = registry
        self._cond = threading.Condition()
        self._arrivals: list[Arrival] = []
        self._done = 0
        self._released = not hold
        self._timed_out: list[Arrival] = []
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"Gate({self.op!r}, key={self.key!r}, bucket={self.bucket!r}, when={self.when!r}, "
            f"hold={self.hold}, arrived={self.arrived}/{self.count})"
        )

    # --- what the test calls ------------------------------------------------------------------

    @property
    def arrived(self) -> int:
        with self._cond:
            return len(self._arrivals)

    @property
    def arrivals(self) -> list[Arrival]:
        with self._cond:
            return list(self._arrivals)

    @property
    def released(self) -> bool:
        with self._cond:
            return self._released

    def wait_arrived(self, timeout: float = 10.0, n: int = 1) -> Arrival:
        """Block until `n` requests have been caught (held, if this gate holds); answer the n-th.
        Raise TimeoutError after `timeout` seconds."""
        if not 1 <= n <= self.count:
            raise ValueError(f"n must be 1..{self.count} (the gate catches {self.count} requests)")
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._arrivals) >= n, timeout):
                raise TimeoutError(f"{self!r}: {n} request(s) did not arrive within {timeout}s")
            return self._arrivals[n - 1]

    def release(self) -> None:
        """Let every held request go on, and every later caught one pass without stopping."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def wait_done(self, timeout: float = 10.0, n: int = 1) -> None:
        """Block until `n` caught requests have been served (the operation ran, the answer is
        about to be written). Raise TimeoutError after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= n, timeout):
                raise TimeoutError(f"{self!r}: {n} request(s) were not served within {timeout}s")

    def close(self) -> None:
        """Release, stop catching requests, and fail if a held request had to go on by itself."""
        self.release()
        with self._cond:
            self._closed = True
            timed_out = list(self._timed_out)
        self._registry.remove(self)
        if timed_out:
            first = timed_out[0]
            raise GateTimeout(
                f"{self!r}: {len(timed_out)} held request(s) were never released and went on after "
                f"{self.hold_timeout_s}s (first: {first.method} {first.key!r}, request {first.request_id})"
            )

    def __enter__(self) -> Gate:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # the test already failed: do not hide its error behind ours
            with contextlib.suppress(GateTimeout):
                self.close()

    # --- what the service calls ---------------------------------------------------------------

    def _matches(self, op: str, bucket: str | None, key: str | None, when: str) -> bool:
        return (
            when == self.when
            and op == self.op
            and (self.key is None or key == self.key)
            and (self.bucket is None or bucket == self.bucket)
        )

    def _try_catch(self, arrival: Arrival) -> bool:
        """Record `arrival` if this gate still catches requests (called under the registry lock)."""
        with self._cond:
            if self._closed or len(self._arrivals) >= self.count:
                return False
            self._arrivals.append(arrival)
            self._cond.notify_all()
            return True

    def _hold(self, arrival: Arrival) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._released, self.hold_timeout_s):
                self._timed_out.append(arrival)

    def _served(self) -> None:
        with self._cond:
            self._done += 1
            self._cond.notify_all()


class PauseRegistry(RequestHooks):
    """The gates in force. The service asks it at each pause point of every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: list[Gate] = []

    def add(self, gate: Gate) -> Gate:
        with self._lock:
            self._gates.append(gate)
        return gate

    def remove(self, gate: Gate) -> None:
        with self._lock:
            if gate in self._gates:
                self._gates.remove(gate)

    def release_all(self) -> None:
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.release()

    def arrive(self, op: str, req: Request, when: str) -> Callable[[], None] | None:
        """Let the first matching gate with room catch this request and hold it if the gate
        holds; answer what tells the gate the request was served, or None."""
        with self._lock:
            if not self._gates:
                return None
            arrival = Arrival(op, req.method, req.bucket, req.key, req.request_id, time.monotonic())
            gate = next(
                (g for g in self._gates if g._matches(op, req.bucket, req.key, when) and g._try_catch(arrival)),
                None,
            )
        if gate is None:
            return None
        gate._hold(arrival)
        return gate._served


def _registry(emu: Emulator) -> PauseRegistry:
    if not isinstance(emu.hooks, PauseRegistry):
        emu.hooks = PauseRegistry()
    assert isinstance(emu.hooks, PauseRegistry)
    return emu.hooks


def _known_op(op: str) -> str:
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}; the emulator's operations are {sorted(OPERATIONS)}")
    return op


def pause(emu: Emulator, op: str, key: str | None = None, **options: Any) -> Gate:
    """Hold the first `count` requests of operation `op` (optionally for `key` / `bucket`)
    until `gate.release()`: `when="before"` the operation runs, or `"after"` it ran but before
    its answer is sent. Later matching requests pass. Use it as a context manager (leaving it
    releases). `options` are `Gate`'s: bucket, count, when, hold_timeout_s."""
    registry = _registry(emu)
    return registry.add(Gate(registry, _known_op(op), key=key, **options))


def watch(emu: Emulator, op: str, key: str | None = None, **options: Any) -> Gate:
    """Like `pause`, without holding: `gate.wait_arrived()` / `wait_done()` block until the
    first `count` matching requests arrived / were answered."""
    return pause(emu, op, key, hold=False, **options)
