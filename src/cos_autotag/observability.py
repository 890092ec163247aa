"""Structured JSON logs in the shape of AWS Lambda Powertools, written with structlog.

One JSON object per line on stdout: level, message, timestamp (UTC ISO), service, the
invocation's context (cold_start, function_name, function_memory_size, function_request_id,
correlation_id) and per record bucket, key and outcome. Nothing secret is ever written: the
event carries the uploader's Authorization header and the SDK's own debug lines carry ours.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

import structlog

SERVICE = "cos-autotag"
REDACTED = "***"

# Field names whose values are secrets wherever they appear (compared lower-cased).
_SECRET_FIELDS = re.compile(
    r"(authorization|signature|secret|token|password|credential|x-cos-security-token|q-sign|q-ak)", re.I
)
# Secrets embedded in strings: signed query strings, Authorization values, Redis passwords.
_SECRET_IN_TEXT = [
    (re.compile(r"(q-signature=)[0-9a-fA-F]+"), r"\1" + REDACTED),
    (re.compile(r"(q-ak=)[^&\s'\"]+"), r"\1" + REDACTED),
    (re.compile(r"(x-cos-security-token[=:]\s*['\"]?)[^&\s'\",}]+", re.I), r"\1" + REDACTED),
    (re.compile(r"(redis[s]?://[^:/@\s]*:)[^@\s]+@"), r"\1" + REDACTED + "@"),
]
_extra_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never print this exact value (the secret key, the session token), whatever field holds it."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _extra_secrets.add(value)


# One cheap search decides whether a string needs the substitutions at all (most never do).
_MAYBE_SECRET_TEXT = re.compile(r"q-signature=|q-ak=|x-cos-security-token|rediss?://", re.I)


@functools.lru_cache(maxsize=1024)
def _is_secret_field(name: str) -> bool:
    return bool(_SECRET_FIELDS.search(name))


def _redact_text(value: str) -> str:
    if _MAYBE_SECRET_TEXT.search(value):
        for pattern, replacement in _SECRET_IN_TEXT:
            value = pattern.sub(replacement, value)
    for secret in _extra_secrets:
        if secret in value:
            value = value.replace(secret, REDACTED)
    return value


def redact(value: Any, field_name: str = "") -> Any:
    if field_name and _is_secret_field(field_name):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


# Powertools' order: the keys a reader scans for first.
_FIRST_KEYS = (
    "level",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_request_id",
    "correlation_id",
    "bucket",
    "key",
    "outcome",
)


def _order_keys(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], "" if key in ("message", "event") else key)
    return event_dict


class _StdoutLogger:
    """Writes each rendered line to the current sys.stdout, whole lines only across threads."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            sys.stdout.write(message + "\n")
            sys.stdout.flush()

    log = debug = info = warning = error = critical = exception = msg


class _RedactingHandler(logging.Handler):
    """Sends the SDK's stdlib log records through the same redaction and JSON shape."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), logger=record.name)
        except Exception:  # a log line must never break the invocation
            self.handleError(record)


def configure(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _redact_processor,
            structlog.processors.EventRenamer("message"),
            _order_keys,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_: _StdoutLogger(),
        cache_logger_on_first_use=False,
    )
    # The SDK logs full request headers (Authorization, security token) at INFO and DEBUG:
    # keep only its warnings and errors, and never let them reach a root handler unredacted.
    sdk_logger = logging.getLogger("qcloud_cos")
    sdk_logger.setLevel(max(logging.WARNING, numeric))
    sdk_logger.propagate = False
    if not any(isinstance(h, _RedactingHandler) for h in sdk_logger.handlers):
        sdk_logger.addHandler(_RedactingHandler())


def _dumps(obj: Any, **kwargs: Any) -> str:
    kwargs["default"] = str  # anything odd in a field becomes text rather than a lost line
    return json.dumps(obj, ensure_ascii=False, **kwargs)


def bind_invocation(context: Mapping[str, Any], cold_start: bool, correlation_id: str) -> None:
    """Bind the Powertools invocation keys for every line of this invocation (this thread)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        service=SERVICE,
        cold_start=cold_start,
        function_name=context.get("function_name", ""),
        function_memory_size=context.get("memory_limit_in_mb", ""),
        function_request_id=context.get("request_id", ""),
        correlation_id=correlation_id,
    )


def bound(**fields: Any) -> AbstractContextManager[Any]:
    """Bind fields for the lines inside the block (None values are left out)."""
    return structlog.contextvars.bound_contextvars(**{k: v for k, v in fields.items() if v is not None})


def get_logger() -> Any:
    """A logger bound to the current configuration.

    Bound once, not lazily: structlog's lazy proxy rebuilds the logger (and re-checks its
    protocol) on every call, which showed up as a tenth of the per-record CPU in `make bench`.
    """
    return structlog.get_logger().bind()
