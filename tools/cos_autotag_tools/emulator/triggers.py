"""The SCF COS trigger, emulated: event records, asynchronous delivery and SCF's retry policy.

Each object-created (or -removed) operation that matches a trigger becomes one record in
Tencent's documented event shape. A scheduler thread releases deliveries when they are due
(after fault delays, batching windows and retry delays) to a pool of workers. A worker runs the
handler in its own thread so that a handler running past `time_limit_ms` can be counted as a
timeout, the way SCF counts it, and retried while the late run is left to finish on its own.
A handler that raised, timed out or returned something SCF cannot serialise is redelivered up
to `retry_num` times, `retry_delay_s` apart; a normal return is success.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cos_autotag_tools import cos_facts
from cos_autotag_tools.scf_context import DEFAULT_UIN, scf_context

from .faults import FaultInjector, Faults

Handler = Callable[[dict[str, Any], dict[str, Any]], Any]
EVENT_KEY_ENCODINGS = ("raw", "url")
FUNCTION_VERSION = "$LATEST"
NAMESPACE = "default"


@dataclass(frozen=True)
class ObjectEvent:
    """What happened to an object, as the COS side reports it to the trigger machinery."""

    event_name: str  # e.g. cos:ObjectCreated:Put
    bucket: str
    region: str
    key: str
    size: int
    content_type: str | None
    metadata: dict[str, str]
    request_id: str  # the x-cos-request-id of the request that caused it
    authorization: str  # the uploader's signature, as COS passes it on
    source_ip: str
    event_time: float


@dataclass(frozen=True)
class Trigger:
    trigger_id: int
    bucket: str
    handler: Handler
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    retry_num: int = cos_facts.SCF_DEFAULT_RETRY_NUM
    retry_delay_s: float = 0.05
    time_limit_ms: int = 30000
    memory_mb: int = 128
    function_name: str = "cos-autotag"

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError("handler must be callable as handler(event, context)")
        if self.retry_num < 0 or self.retry_delay_s < 0 or self.time_limit_ms <= 0 or self.memory_mb <= 0:
            raise ValueError("retry_num and retry_delay_s must be >= 0; time_limit_ms and memory_mb > 0")

    def matches(self, event: ObjectEvent) -> bool:
        if event.bucket != self.bucket:
            return False
        if not (event.key.startswith(self.prefix) and event.key.endswith(self.suffix)):
            return False
        for name in self.events:
            if name == event.event_name:
                return True
            if name.endswith(":*") and event.event_name.startswith(name[:-1]):
                return True
        return False


@dataclass(frozen=True)
class Invocation:
    """One handler run: what it got, how it ended."""

    function_name: str
    event: dict[str, Any]
    context: dict[str, Any]
    attempt: int  # 1 for the first delivery, 2 for the first retry, ...
    outcome: str  # "ok" | "error" | "timeout"
    error: str | None
    duration_s: float
    started_at: float
    delivery_id: int  # shared by the attempts of one delivery
    result: Any = None

    @property
    def keys(self) -> list[str]:
        """Object keys (with the /<appid>/<name>/ prefix stripped) of the event's records."""
        out = []
        for record in self.event.get("Records", []):
            cos = record["cos"]
            prefix = f"/{cos['cosBucket']['appid']}/{cos['cosBucket']['name']}/"
            out.append(cos["cosObject"]["key"].removeprefix(prefix))
        return out


def validate_trigger_events(events: Sequence[str]) -> tuple[str, ...]:
    if isinstance(events, str):
        events = (events,)
    if not events:
        raise ValueError("a trigger needs at least one event name")
    for name in events:
        if name not in cos_facts.TRIGGER_EVENT_NAMES:
            raise ValueError(f"{name!r} is not a COS trigger event; use one of {cos_facts.TRIGGER_EVENT_NAMES}")
    return tuple(events)


def build_record(event: ObjectEvent, appid: str, function_name: str, key_encoding: str) -> dict[str, Any]:
    """One element of the event's `Records`, in the shape of Tencent's documented sample."""
    match = cos_facts.BUCKET_RE.match(event.bucket)
    name, bucket_appid = (match.group("name"), match.group("appid")) if match else (event.bucket, appid)
    short = cos_facts.region_short_code(event.region)
    quoted_key = quote(event.key, safe="/")
    meta: dict[str, str] = {
        "x-cos-request-id": event.request_id,
        "Content-Type": event.content_type or "",
        **event.metadata,
    }
    return {
        "cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": {
                "url": f"http://{cos_facts.cos_host(event.bucket, event.region)}/{quoted_key}",
                "meta": meta,
                "vid": "",
                "key": f"/{bucket_appid}/{name}/" + (quoted_key if key_encoding == "url" else event.key),
                "size": event.size,
            },
            "cosBucket": {"region": short, "name": name, "appid": bucket_appid, "s3Region": event.region},
            "cosNotificationId": "unkown",  # sic: Tencent's sample spells it this way
        },
        "event": {
            "eventName": event.event_name,
            "eventVersion": "1.0",
            "eventTime": int(event.event_time),
            "eventSource": "qcs::cos",
            "requestParameters": {
                "requestSourceIP": event.source_ip,
                "requestHeaders": {"Authorization": event.authorization},
            },
            "eventQueue": f"qcs:0:scf:{short}:appid/{bucket_appid}:{NAMESPACE}.{function_name}.{FUNCTION_VERSION}",
            "reservedInfo": "",
            "reqid": random.randrange(10**8, 10**9),
        },
    }


def build_context(trigger: Trigger, region: str, appid: str, uin: str) -> dict[str, Any]:
    """An SCF Python context dict; `request_id` is new for every attempt."""
    return scf_context(
        function_name=trigger.function_name,
        function_version=FUNCTION_VERSION,
        namespace=NAMESPACE,
        memory_limit_in_mb=trigger.memory_mb,
        time_limit_in_ms=trigger.time_limit_ms,
        region=region,
        appid=appid,
        uin=uin,
    )


@dataclass
class _Delivery:
    trigger: Trigger
    event: dict[str, Any]
    region: str
    delivery_id: int
    attempt: int = 1


@dataclass
class _Batch:
    records: list[dict[str, Any]] = field(default_factory=list)
    region: str = ""
    generation: int = 0


class Dispatcher:
    """Turns object events into handler invocations, asynchronously and with SCF's retries."""

    def __init__(self, appid: str, faults: FaultInjector, workers: int = 4, uin: str = DEFAULT_UIN) -> None:
        if workers < 1:
            raise ValueError("delivery workers must be >= 1")
        self.appid = appid
        self.uin = uin
        self.event_key_encoding = "raw"
        self._faults = faults
        self._lock = threading.Condition()
        self._triggers: dict[int, Trigger] = {}
        self._trigger_ids = itertools.count(1)
        self._delivery_ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._work: queue.Queue[_Delivery | None] = queue.Queue()
        self._batches: dict[int, _Batch] = {}
        self._outstanding = 0  # deliveries (and batched records) not finished for good
        self._running = 0  # handler threads alive, including timed-out ones still running
        self._inflight: set[threading.Event] = set()  # attempts a worker is waiting on
        self._invocations: list[Invocation] = []
        self._stopped = False
        # SCF waits a minute before a retry; a test compresses that wait, and may hold retries
        # until a fault it injects is over, as the minute would (`hold_retries`).
        self._retries_open = threading.Event()
        self._retries_open.set()
        self._threads = [threading.Thread(target=self._schedule_loop, name="scf-scheduler", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"scf-worker-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- triggers ----------------------------------------------------------------------------

    def add_trigger(self, **kwargs: Any) -> Trigger:
        with self._lock:
            trigger = Trigger(trigger_id=next(self._trigger_ids), **kwargs)
            self._triggers[trigger.trigger_id] = trigger
            return trigger

    def remove_trigger(self, trigger_id: int) -> None:
        with self._lock:
            self._triggers.pop(trigger_id, None)

    # --- events in -----------------------------------------------------------------------------

    def notify(self, event: ObjectEvent) -> None:
        """Called by the COS side after an operation succeeded; never blocks on handlers."""
        faults = self._faults.faults
        with self._lock:
            if self._stopped:
                return
            matching = [t for t in self._triggers.values() if t.matches(event)]
            encoding = self.event_key_encoding
        for trigger in matching:
            record = build_record(event, self.appid, trigger.function_name, encoding)
            if faults.batch_records > 1:
                self._add_to_batch(trigger, record, event.region, faults)
            else:
                with self._lock:
                    self._outstanding += 1
                self._release({"Records": [record]}, trigger, event.region, faults, counted=1)

    def _add_to_batch(self, trigger: Trigger, record: dict[str, Any], region: str, faults: Faults) -> None:
        with self._lock:
            self._outstanding += 1  # the record is outstanding until its batch is released
            batch = self._batches.setdefault(trigger.trigger_id, _Batch())
            batch.records.append(record)
            batch.region = region
            if len(batch.records) >= faults.batch_records:
                records, batch.records = batch.records, []
                batch.generation += 1
            else:
                if len(batch.records) == 1:
                    generation = batch.generation
                    self._push(
                        time.monotonic() + faults.batch_window_s,
                        lambda: self._flush_batch(trigger, generation),
                    )
                return
        self._release({"Records": records}, trigger, region, self._faults.faults, counted=len(records))

    def _flush_batch(self, trigger: Trigger, generation: int) -> None:
        with self._lock:
            batch = self._batches.get(trigger.trigger_id)
            if batch is None or batch.generation != generation or not batch.records:
                return  # already released because it filled up
            records, batch.records = batch.records, []
            batch.generation += 1
            region = batch.region
        self._release({"Records": records}, trigger, region, self._faults.faults, counted=len(records))

    def _release(self, event: dict[str, Any], trigger: Trigger, region: str, faults: Faults, counted: int) -> None:
        """Schedule the deliveries of one event; `counted` outstanding units become the deliveries."""
        copies = faults.duplicate_deliveries
        with self._lock:
            self._outstanding += copies - counted
            now = time.monotonic()
            for _ in range(copies):
                delay = faults.delivery_delay_s
                if faults.out_of_order:
                    delay += self._faults.uniform(0.0, faults.out_of_order_window_s)
                delivery = _Delivery(trigger, event, region, next(self._delivery_ids))
                self._push(now + delay, lambda d=delivery: self._work.put(d))  # type: ignore[misc]

    def _push(self, due: float, action: Callable[[], None]) -> None:
        """Schedule `action` on the scheduler thread (caller holds the lock)."""
        heapq.heappush(self._heap, (due, next(self._seq), action))
        self._lock.notify_all()

    # --- scheduling and running ----------------------------------------------------------------

    def _schedule_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._lock.wait(timeout)
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._heap)
            action()

    def _work_loop(self) -> None:
        while True:
            delivery = self._work.get()
            if delivery is None:
                return
            try:
                self._attempt(delivery)
            except Exception:  # the dispatcher must survive anything; count the delivery as done
                traceback.print_exc()
                self._finish()

    def _attempt(self, delivery: _Delivery) -> None:
        trigger = delivery.trigger
        context = build_context(trigger, delivery.region, self.appid, self.uin)
        # Each attempt gets its own copy: a handler that mutates its event must not change retries.
        event_copy = copy.deepcopy(delivery.event)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                result = trigger.handler(event_copy, dict(context))
                json.dumps(result)  # SCF must serialise the return value; if it cannot, that is an error
                outcome["result"] = result
            except BaseException as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                done.set()
                with self._lock:
                    self._running -= 1
                    self._lock.notify_all()

        with self._lock:
            if self._stopped:
                return
            self._running += 1
            self._inflight.add(done)
        started_at, start = time.time(), time.monotonic()
        threading.Thread(target=run, name=f"scf-{trigger.function_name}", daemon=True).start()
        finished = done.wait(trigger.time_limit_ms / 1000.0)
        duration = time.monotonic() - start
        with self._lock:
            self._inflight.discard(done)
            if self._stopped:
                return  # stop() woke us; the handler (if still running) is abandoned
        if not finished:
            status, error = "timeout", f"Task timed out after {trigger.time_limit_ms} ms"
        elif "error" in outcome:
            status, error = "error", str(outcome["error"])
        else:
            status, error = "ok", None
        invocation = Invocation(
            function_name=trigger.function_name,
            event=delivery.event,
            context=context,
            attempt=delivery.attempt,
            outcome=status,
            error=error,
            duration_s=duration,
            started_at=started_at,
            delivery_id=delivery.delivery_id,
            result=outcome.get("result"),
        )
        with self._lock:
            self._invocations.append(invocation)
            retry = status != "ok" and delivery.attempt <= trigger.retry_num and not self._stopped
            if retry:
                delivery.attempt += 1
                self._push(time.monotonic() + trigger.retry_delay_s, lambda: self._retry(delivery, trigger))
                return
        self._finish()

    def _retry(self, delivery: _Delivery, trigger: Trigger) -> None:
        if self._retries_open.is_set():
            self._work.put(delivery)
        else:  # held: try again after another delay
            with self._lock:
                self._push(time.monotonic() + trigger.retry_delay_s, lambda: self._retry(delivery, trigger))

    def hold_retries(self, held: bool) -> None:
        """Hold SCF's retries (they wait until released), or release them."""
        if held:
            self._retries_open.clear()
        else:
            self._retries_open.set()

    def _finish(self) -> None:
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)
            self._lock.notify_all()

    # --- observing -----------------------------------------------------------------------------

    def invocations(self) -> list[Invocation]:
        with self._lock:
            return list(self._invocations)

    def clear_invocations(self) -> None:
        with self._lock:
            self._invocations.clear()

    def pending(self) -> tuple[int, int]:
        with self._lock:
            return self._outstanding, self._running

    def wait_idle(self, timeout_s: float) -> None:
        """Block until no delivery is pending (retries and delayed ones included) and no handler
        is still running; raise TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._outstanding > 0 or self._running > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"trigger deliveries still busy after {timeout_s} s: {self._outstanding} pending, "
                        f"{self._running} handler(s) running"
                    )
                self._lock.wait(remaining)

    def stop(self) -> None:
        """Stop scheduling and delivering; handlers already running are left to finish."""
        with self._lock:
            self._stopped = True
            self._heap.clear()
            self._outstanding = 0
            for done in self._inflight:
                done.set()  # wake workers waiting on handlers so that they exit now
            self._lock.notify_all()
        for _ in self._threads[1:]:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
