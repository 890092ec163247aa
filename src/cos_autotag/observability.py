"""Structured JSON logs in the shape of AWS Lambda Powertools, written with structlog.

One JSON object per line on stdout: level, message, timestamp (UTC ISO), service, the
invocation's context (cold_start, function_name, function_memory_size, function_request_id,
correlation_id) and per record bucket, key and outcome; an exception adds Powertools'
`exception` (the traceback) and `exception_name`.

Nothing secret is ever written, at any level, in any encoding: the event carries the uploader's
Authorization header, the SDK's error lines and urllib3's debug lines carry whole signed URLs
(detect-url's twice encoded), and exception messages repeat them. Every structlog field, nested
values included, and every stdlib record from any library (message and traceback, redacted as
the record is made, whichever handler prints it) goes through `redact`.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import structlog

SERVICE = "cos-autotag"
REDACTED = "***"



class _LazyPattern:
    """A regular expression compiled when first used, as `re.compile` would have answered it.

    Most of the rules below run only when a line's cheap gate finds something that looks
    secret, which a normal record's lines never hold: compiling them all on import cost
    each cold start about a millisecond and a half.
    """

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:  # sub, search, fullmatch, finditer...: the compiled pattern's
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)  # a race compiles it twice, harmlessly
        return getattr(self._compiled, name)


# Field names whose values are secrets wherever they appear (compared lower-cased).
_SECRET_FIELD_NAMES = r"authorization|signature|secret|token|password|credential|x-cos-security-token|q-sign|q-ak"
_SECRET_FIELDS = _LazyPattern(f"({_SECRET_FIELD_NAMES})", re.I)

# Logged values come from untrusted input too (the event): nesting beyond this is cut, and an
# integer too long for `str()` (Python 3.11 refuses more than 4300 digits) is described instead.
MAX_DEPTH = 32
MAX_INT_BITS = 256

# --- secrets inside text ------------------------------------------------------------------------
# A secret reaches a log line raw (a header dict), URL-encoded once (a signed URL), twice (that
# URL inside detect-url's query) or more, with upper- or lower-case hex escapes. Two kinds of
# rules: named values (`q-signature=...`, whatever the encoding of `=` and `&`), and the exact
# values the function knows are secret (its keys, its token, the Redis password) in every encoding.

# The name-to-value separator: `=`, `: ` or `': '` / `': b'` (a dict's repr, a header), or `=` encoded.
_SEP = r"(?:%(?:25)*3[dD]|\s*['\"]?\s*[=:]\s*(?:b(?=['\"]))?['\"]?)"
# A value runs up to `&` (raw or encoded), whitespace, a quote or a closing bracket.
_VALUE = r"(?:(?!%(?:25)*26)[^&\s'\",;<>(){}\[\]])+"
_NAMED_SECRET = _LazyPattern(r"((?:q-signature|q-ak|x-c(?:os|i)-security-token)" + _SEP + ")" + _VALUE, re.I)
# A Redis URL's credentials are everything between `//` and the host's `@`: the LAST `@`, since
# Tencent Cloud Redis logs in with `account@password` and a password may hold `@`, `/` or `%`.
_REDIS_URL = _LazyPattern(r"(rediss?://)([^\s'\"<>]*)", re.I)
_REDIS_URL_ENCODED = _LazyPattern(r"(rediss?%(?:25)*3A%(?:25)*2F%(?:25)*2F)([^\s'\"<>&]*)", re.I)
_ENCODED_AT = _LazyPattern(r"%(?:25)*40")
# What a Redis URL without credentials looks like: host[:port][/db], maybe followed by punctuation.
_REDIS_PLAIN = _LazyPattern(r"[\w.\-\[\]]*(?::\d*)?(?:/\d*)?[.,;:)\]}]*")


def _redis_credentials(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    at = rest.rfind("@")
    if at >= 0:
        return scheme + REDACTED + rest[at:]
    if _REDIS_PLAIN.fullmatch(rest):
        return match.group(0)
    return scheme + REDACTED  # malformed (no host after the password?): show none of it


def _redis_credentials_encoded(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    ats = list(_ENCODED_AT.finditer(rest))
    return scheme + REDACTED + rest[ats[-1].start() :] if ats else match.group(0)


# The SDK prints each request's signing key and signature at DEBUG (`sign_key: <hex>`, `sign: <hex>`,
# `sign_key<hex>`, `signature: <hex>`). A signing key is derived per request from the secret key
# and a key time, and signs any request for hours, so it cannot be registered beforehand: any
# HMAC-SHA1 (40 hex) after one of these names, whatever the separator or its encoding, is redacted.
_HMAC_AFTER_NAME = _LazyPattern(
    r"((?<![A-Za-z-])(?:sign_key|sign|signature|signing_key)(?:" + _SEP + r")?)[0-9a-fA-F]{40}(?![0-9a-fA-F])",
    re.I,
)

_SECRET_IN_TEXT: list[tuple[Any, Any]] = [  # (a pattern, its replacement)
    (_NAMED_SECRET, r"\1" + REDACTED),
    (_HMAC_AFTER_NAME, r"\1" + REDACTED),
    (_REDIS_URL, _redis_credentials),
    (_REDIS_URL_ENCODED, _redis_credentials_encoded),
]


def _any_case(word: str) -> str:
    # Explicit character classes: several times faster than re.IGNORECASE on every log string.
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# One cheap search decides whether a string needs the substitutions at all (most never do): it
# looks for the names above and for a fragment every encoding of a registered secret contains.
_NAMES = "|".join(_any_case(name) for name in ("q-signature", "q-ak", "x-cos-security-token", "x-ci-security-token"))
_NAMES += "|" + _any_case("redis") + "|" + _any_case("sign")
# URL encoding leaves these characters alone, so a run of them is in every encoding of a secret.
_UNRESERVED_RUN = _LazyPattern(r"[A-Za-z0-9_.~-]+")
MIN_FRAGMENT = 4  # shorter would wake the full search on ordinary words
# What `_needs_field_pass` looks for in a line (lower-cased ASCII): the names the gate looks for
# and those of the fields hidden whole.
_LINE_WORDS = ("sign", "q-ak", "token", "redis", "authorization", "secret", "password", "credential")
_LONG_INT = re.compile(f"[0-9]{{{len(str(2**MAX_INT_BITS))}}}")  # may be over MAX_INT_BITS: described, not shown


class _KnownSecrets:
    """The exact secrets registered so far: every encoding of each in one pattern, and a gate."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.forms: set[str] = set()
        self.fragments: set[str] = set()
        # (gate, pattern, line fragments) in one attribute: a reader never pairs an old gate with a new pattern.
        self.compiled: tuple[re.Pattern[str] | _LazyPattern, re.Pattern[str] | None, tuple[str, ...]]
        self.compiled = (_LazyPattern(_NAMES), None, ())

    def add(self, value: str) -> None:
        forms = _encodings(value)
        runs = _UNRESERVED_RUN.findall(value)
        fragment = max(runs, key=len) if runs else ""
        if len(fragment) >= MIN_FRAGMENT:
            # Base64 shares nothing with the other forms: it is a fragment of its own.
            self.fragments |= {fragment} | {form for form in forms if _is_base64_form(form, value)}
        else:
            self.fragments |= forms  # no long plain run (short or mostly escaped): look for each form
        self.forms |= forms
        self.values.add(value)
        # Longest first: a form that contains another is replaced whole.
        alternation = "|".join(re.escape(form) for form in sorted(self.forms, key=len, reverse=True))
        fragments = "|".join(re.escape(fragment) for fragment in sorted(self.fragments, key=len, reverse=True))
        self.compiled = (
            re.compile(f"{_NAMES}|{fragments}"),
            re.compile(alternation),
            # JSON escapes `"`, `\\` and control characters one by one: a fragment inside a value is,
            # escaped the same way, inside the rendered line.
            tuple(self.fragments | {json.dumps(f, ensure_ascii=False)[1:-1] for f in self.fragments}),
        )


def _is_base64_form(form: str, secret: str) -> bool:
    raw = secret.encode("utf-8")
    return form in (base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii"))


_ESCAPE = _LazyPattern(r"%(?:25)*[0-9A-F]{2}")  # one escape, however often its `%` was escaped again


def _encodings(secret: str) -> set[str]:
    """Every way the secret can be printed: raw, URL-encoded up to three times (`quote` and
    `quote_plus`, `/` kept or escaped), hex escapes in either case, base64, and `+` read as a space."""
    forms = {secret, secret.replace("+", " ")}
    layer = {secret}
    for _ in range(3):
        layer = {encode(form, safe=safe) for form in layer for encode in (quote, quote_plus) for safe in ("", "/")}
        forms |= layer
    forms |= {_ESCAPE.sub(lambda m: m.group(0).lower(), form) for form in forms}
    raw = secret.encode("utf-8")
    forms |= {base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    forms |= {json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
    return {form for form in forms if form}


_known = _KnownSecrets()
_secrets_lock = threading.Lock()
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words; their URL forms are still caught


def register_secret(value: str | None) -> None:
    """Never print this exact value (the secret key, the session token), whatever field holds it
    and however it is encoded."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            if value not in _known.values:
                _known.add(value)


def register_credentials(secret_id: str | None, secret_key: str | None, token: str | None) -> None:
    """Every part of a set of COS credentials: never printed, in any log line, in any encoding."""
    for value in (secret_id, secret_key, token):
        register_secret(value)


def register_redis_url(url: str | None) -> None:
    """Never print the password of this Redis URL, nor its whole credentials part, in any encoding.

    The credentials are everything between `//` and the last `@` (`:password`, `user:password`,
    Tencent Cloud's `:account@password`); the password is what follows their first `:`, as
    written and percent-decoded.
    """
    if not url or "//" not in url:
        return
    netloc = url.split("//", 1)[1]
    at = netloc.rfind("@")
    if at < 0:
        return
    credentials = netloc[:at]
    password = credentials.split(":", 1)[1] if ":" in credentials else credentials
    # Tencent Cloud's `account@password`: the part after the account is the password proper.
    account_password = password.split("@", 1)[1] if "@" in password else ""
    for value in (credentials, password, account_password):
        register_secret(value)
        register_secret(unquote(value))


@functools.lru_cache(maxsize=1024)
def _is_secret_field(name: str) -> bool:
    return bool(_SECRET_FIELDS.search(name))


def redact_text(value: str) -> str:
    """The text with every secret in it replaced by `***`."""
    gate, pattern, _ = _known.compiled
    if gate.search(value) is None:
        return value
    for rule, replacement in _SECRET_IN_TEXT:
        value = rule.sub(replacement, value)
    return pattern.sub(REDACTED, value) if pattern is not None else value


_PLAIN_TYPES = (float, bool, type(None))


def redact(value: Any, field_name: str = "", depth: int = 0) -> Any:
    """A log field's value with its secrets redacted; a field named like a secret is hidden whole."""
    if field_name and _is_secret_field(field_name):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value.bit_length() <= MAX_INT_BITS else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, _PLAIN_TYPES):
        return value
    if depth >= MAX_DEPTH:
        return "<nested too deep to log>"
    if isinstance(value, Mapping):
        # A key can hold a secret too (a dict keyed by URL): its text is redacted like a value's.
        return {
            redact_text(k) if isinstance(k, str) else redact(k, depth=depth + 1): redact(v, str(k), depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, depth=depth + 1) for v in value]
    # Anything else (an exception, bytes, an object) is rendered as text, so redact that text.
    try:
        return redact_text(str(value))
    except Exception as error:  # an object whose str() fails is named, not printed
        return f"<a {type(value).__name__} that cannot be shown: {type(error).__name__}>"


def _format_exc_info(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`exc_info` becomes Powertools' `exception` (the traceback) and `exception_name`, as text
    the redaction then sees: a traceback quotes the messages, and the SDK's hold whole URLs."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    if exc_info[0] is not None:
        event_dict["exception"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
        event_dict["exception_name"] = exc_info[0].__name__
    return event_dict


def _redact_record(record: logging.LogRecord) -> None:
    """Redact a stdlib record in place, before any handler or formatter sees it."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: keep both, as text
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = redact_text(message), ()
    if record.exc_info and record.exc_info[0] is not None:
        # A formatter prints `exc_text` when set; without `exc_info` none can format the raw one.
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exception_name = record.exc_info[0].__name__
        record.exc_text, record.exc_info = redact_text(text), None
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def _install_record_redaction() -> None:
    """Every stdlib record, from any library (urllib3 prints whole URLs at DEBUG), is redacted as
    it is made, so whatever handler prints it, on whatever logger, added now or later, sees no secret."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


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


def _not_plain(value: Any) -> Any:
    raise TypeError("not plain JSON")  # an object, bytes, a set: the field-by-field pass shows it


def _needs_field_pass(event_dict: MutableMapping[str, Any]) -> bool:
    """False only when redacting field by field would change nothing, decided on the line as JSON.

    One C-encoded rendering and a few substring searches replace a Python call per value: a normal record's
    lines hold no secret, no field named like one, no integer too long, nothing nested deeply and
    nothing but JSON's own types, and then the line is the same either way. Anything else (and
    anything the search cannot rule out) goes field by field, as before.
    """
    try:
        text = json.dumps(event_dict, ensure_ascii=False, default=_not_plain)
    except Exception:  # an object, a cycle, an integer beyond str(): field by field
        return True
    # Each `{` or `[` opens at most one level (one inside a string only over-counts). Beyond ASCII,
    # case folding has exceptions the field-name rule's re.IGNORECASE knows (`ſ` is an `s`).
    if text.count("{") + text.count("[") > MAX_DEPTH or not text.isascii():
        return True
    lowered = text.lower()
    if any(word in lowered for word in _LINE_WORDS) or any(form in text for form in _known.compiled[2]):
        return True
    return _LONG_INT.search(text) is not None


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _needs_field_pass(event_dict):
        return event_dict
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
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            elif record.exc_text:  # the traceback, already redacted when the record was made
                fields["exception"] = record.exc_text
                fields["exception_name"] = getattr(record, "exception_name", "")
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:  # a log line must never break the invocation
            self.handleError(record)


class _DemoteHandledReplies(logging.Filter):
    """The SDK logs every error reply (a 4xx or 5xx body, or its headers) at ERROR before raising.
    The function handles each one (a skip, a retry, a misconfiguration) and logs the outcome on
    its own line, at the level the outcome deserves; so the SDK's copy becomes INFO, and its
    other errors (a network failure, retried) WARNING: an alert on ERROR fires once, for the
    function's own line, and never for a case the function handled."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.msg if isinstance(record.msg, str) else str(record.msg)
        # A reply's body (`<?xml ...<Error>`, JSON) or its headers (a dict) opens like this.
        level = logging.INFO if text.lstrip()[:1] in ("<", "{") else min(record.levelno, logging.WARNING)
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return self._logger.isEnabledFor(level)


def configure(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level)
    _install_record_redaction()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _format_exc_info,
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
        handler = _RedactingHandler()
        # On the handler: a logger's own filters never see its children's (`qcloud_cos.cos_client`) records.
        handler.addFilter(_DemoteHandledReplies(sdk_logger))
        sdk_logger.addHandler(handler)


def _dumps(obj: Any, **kwargs: Any) -> str:
    kwargs["default"] = str  # anything odd in a field becomes text rather than a lost line
    try:
        line = json.dumps(obj, ensure_ascii=False, **kwargs)
        line.encode("utf-8")  # a lone surrogate from the event cannot be written as UTF-8...
        return line
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, **kwargs)  # ...but can as a \u escape
    except (ValueError, TypeError, RecursionError) as error:  # a log line must never break the invocation
        kept = {k: obj[k] for k in ("level", "message", "timestamp") if isinstance(obj, Mapping) and k in obj}
        return json.dumps({**kept, "log_error": type(error).__name__}, ensure_ascii=True, default=repr)


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
