"""The SCF handler: one invocation, every record in its event, one summary.

SCF retries an asynchronous invocation only when the handler raises; a returned value counts
as success. So the handler finishes every record, then raises if any failure is one a retry
could fix, naming the keys; failures a retry cannot fix are logged and returned.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import observability
from .cos_adapter import CosGateway
from .errors import ConfigurationError, EventError, RetryableFailure
from .events import CosRecord, MalformedRecord, parse_event
from .idempotency import store_from_url
from .outcome import Outcome, RecordResult
from .pipeline import Pipeline
from .retry import Deadline, is_retryable
from .settings import Settings, unknown_variables

if TYPE_CHECKING:
    from .idempotency import StrictStore

DEFAULT_TIME_LIMIT_MS = 3000  # SCF's default timeout, if the context does not say
# Stop retrying early enough to log the summary and return before SCF's timeout.
SAFETY_MARGIN_S = 1.5


class App:
    """One warm container's state: settings, the COS client and the cold-start flag."""

    def __init__(
        self,
        settings: Settings,
        gateway: CosGateway | None = None,
        strict_store: StrictStore | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        observability.configure(settings.log_level)
        self.gateway = gateway or CosGateway(settings, env)
        if settings.redis_url:
            observability.register_redis_url(settings.redis_url)  # before anything could print it
            if strict_store is None:
                strict_store = store_from_url(settings.redis_url, ttl_s=settings.idempotency_ttl_s)
        self.log = observability.get_logger()
        # A misspelt setting would otherwise be silently ignored: name it, with the closest known one.
        for name, closest in unknown_variables(env):
            self.log.warning("unknown setting ignored", variable=name, did_you_mean=closest)
        # The adapter is both ports: object storage and label detection.
        self.pipeline = Pipeline(settings, self.gateway, self.gateway, strict_store, self.log)
        self._cold = True
        self._cold_lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> App:
        return cls(Settings.from_env(env), env=env)

    def _take_cold_start(self) -> bool:
        with self._cold_lock:
            cold, self._cold = self._cold, False
            return cold

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        started = time.monotonic()
        context = context if isinstance(context, Mapping) else {}
        time_limit_s = _time_limit_s(context)
        deadline = Deadline(max(0.5, time_limit_s - min(SAFETY_MARGIN_S, time_limit_s * 0.2)))
        observability.bind_invocation(context, self._take_cold_start(), _correlation_id(event))
        log = self.log
        self._register_secrets()
        if self.settings.log_event:
            log.info("event received", cos_event=event)

        results: list[RecordResult] = []
        summary: dict[str, Any] = {"records": 0, "malformed": 0, "ignored": 0}
        try:
            records = parse_event(event)
        except EventError as error:
            log.error("malformed event: not processed", error=str(error))
            records, summary["malformed"] = [], 1
        for record in records:
            summary["records"] += 1
            if isinstance(record, MalformedRecord):
                summary["malformed"] += 1
                log.error("malformed record: skipped", record_index=record.index, problem=record.problem)
            elif not record.is_created:
                summary["ignored"] += 1
                log.info(
                    "not an object-created event: ignored",
                    event_name=record.event_name,
                    key=record.key,
                    bucket=record.bucket,
                )
            elif self.settings.buckets and record.bucket not in self.settings.buckets:
                summary["ignored"] += 1
                log.warning("bucket not in AUTOTAG_BUCKETS: refused", bucket=record.bucket, key=record.key)
            else:
                results.append(self._process(record, deadline))

        summary.update(_tally(results))
        _report_misconfiguration(results, log)
        summary["duration_ms"] = round((time.monotonic() - started) * 1000)
        summary["results"] = [r.as_dict() for r in results]
        log.info("invocation summary", **{k: v for k, v in summary.items() if k != "results"})
        retry_keys = [r.key for r in results if r.outcome == Outcome.FAILED and r.retryable]
        if retry_keys:
            raise RetryableFailure(f"{len(retry_keys)} record(s) failed and may succeed on retry: {retry_keys}")
        return summary

    def _process(self, record: CosRecord, deadline: Deadline) -> RecordResult:
        # Each record carries its own upload's request id: that is the line's correlation id.
        with observability.bound(correlation_id=record.upload_request_id or None):
            try:
                return self.pipeline.process(record, deadline)
            except ConfigurationError:
                raise  # no credentials at all: every record would fail, so the invocation says so
            except Exception as error:  # one record's surprise never sinks the others
                return _unexpected_failure(self.log, record, error)

    def _register_secrets(self) -> None:
        try:
            creds = self.gateway.credentials()
        except ConfigurationError:
            return  # reported by the first call that needs them
        observability.register_credentials(creds.secret_id, creds.secret_key, creds.token)


def _unexpected_failure(log: Any, record: CosRecord, error: Exception) -> RecordResult:
    """The last resort: an exception no step expected fails its record alone, said once at ERROR.
    Retried by SCF only when it is a known transient (the pipeline already released its claim)."""
    result = RecordResult(record.bucket, record.key, Outcome.FAILED, f"unexpected error: {type(error).__name__}")
    result.retryable = is_retryable(error) or isinstance(error, (ConnectionError, TimeoutError))
    log.error(
        "record failed",
        bucket=record.bucket,
        key=record.key,
        outcome=str(result.outcome),
        reason=result.reason,
        retryable=result.retryable,
        exc_info=error,
    )
    return result


def _time_limit_s(context: Mapping[str, Any]) -> float:
    value = context.get("time_limit_in_ms")
    try:
        ms = float(value) if value is not None else DEFAULT_TIME_LIMIT_MS
    except (TypeError, ValueError):
        ms = DEFAULT_TIME_LIMIT_MS
    return max(0.1, ms / 1000)


def _correlation_id(event: Any) -> str:
    try:
        value = event["Records"][0]["cos"]["cosObject"]["meta"]["x-cos-request-id"]
    except (KeyError, IndexError, TypeError):
        return ""
    return value[:200] if isinstance(value, str) else ""


def _tally(results: list[RecordResult]) -> dict[str, Any]:
    skipped: Counter[str] = Counter(r.reason for r in results if r.outcome == Outcome.SKIPPED)
    calls: Counter[str] = Counter()
    for r in results:
        calls.update(r.calls)
    return {
        "labeled": sum(r.outcome == Outcome.LABELED for r in results),
        "skipped": dict(skipped),
        "duplicates": sum(r.outcome == Outcome.DUPLICATE for r in results),
        "failed": [
            {"key": r.key, "reason": r.reason, "retryable": r.retryable} for r in results if r.outcome == Outcome.FAILED
        ],
        "calls": dict(calls),
        "calls_total": sum(calls.values()),
    }


def _report_misconfiguration(results: list[RecordResult], log: Any) -> None:
    """One ERROR per distinct deployment problem per invocation, saying what to fix."""
    seen: dict[str, list[RecordResult]] = {}
    for r in results:
        if r.fix:
            seen.setdefault(r.fix, []).append(r)
    for fix, failed in seen.items():
        log.error(
            "the deployment is misconfigured: " + fix,
            error_code=failed[0].error_code,
            request_id=failed[0].request_id,
            records=len(failed),
            keys=[r.key for r in failed[:5]],
        )


_app: App | None = None
_app_lock = threading.Lock()


def main_handler(event: Any, context: Any) -> dict[str, Any]:
    """The SCF entry point (`index.main_handler`). Settings are read once per warm container."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                _app = App.from_env()
    return _app.handle(event, context)
