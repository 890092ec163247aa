"""Every exception the function raises on purpose, in one place, each named for what happened.

`retryable` says whether SCF's retry of the invocation (a minute later) could succeed where this
attempt failed; the handler raises at the end of an invocation only for those.
"""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting has a value the function cannot run with.

    `value` None: the value can hold a secret, so the message names the variable only.
    """

    def __init__(self, var: str, value: str | None, allowed: str) -> None:
        shown = f"{var}={value!r}" if value is not None else f"{var} (value not shown: it can hold a password)"
        super().__init__(f"{shown} is not valid: expected {allowed}")
        self.var, self.value, self.allowed = var, value, allowed


class EventError(ValueError):
    """The event as a whole is not a COS trigger event."""


class ConfigurationError(RuntimeError):
    """The function cannot call COS at all (no credentials): every record would fail."""


class CosCallError(Exception):
    """A COS or CI call failed; `retryable` says whether trying again could help."""

    def __init__(
        self, operation: str, code: str, message: str, status: int | None, request_id: str, retryable: bool
    ) -> None:
        super().__init__(f"{operation}: {code} ({status}): {message}")
        self.operation, self.code, self.message = operation, code, message
        self.status, self.request_id, self.retryable = status, request_id, retryable

    @property
    def not_found(self) -> bool:
        # A missing bucket is a deployment error, never "this object is gone".
        return self.code != "NoSuchBucket" and (self.status == 404 or self.code in ("NoSuchKey", "NoSuchResource"))


class StoreUnavailable(RuntimeError):
    """The strict idempotency store could not be used; the object marker still guards.

    Every failure of the store is one of these, whatever caused it, so that the pipeline's
    fallback to the object marker catches them all.
    """


class StoreRefused(StoreUnavailable):
    """The store answered a command with an error (`-WRONGPASS ...`, `-WRONGTYPE ...`)."""


class StoreProtocolError(StoreUnavailable):
    """The store's bytes are not the protocol as expected (garbage, nesting too deep, huge lengths)."""


class StoreRecordUnreadable(StoreUnavailable):
    """The store holds a value under our key that this function did not write; it is left alone."""


class AlreadyInProgress(RuntimeError):
    """Another delivery holds the upload; SCF's retry will find it completed."""

    retryable = True


class ObjectKeptChanging(RuntimeError):
    """The object changed twice while being labeled; SCF's retry, a minute later, will find it settled."""

    retryable = True


class RetryableFailure(RuntimeError):
    """Raised at the end of an invocation so that SCF retries it: some records may succeed then."""


class InvalidRedisUrl(ValueError):
    """The Redis URL cannot be used; the message says which part is wrong and never repeats any of it."""


class UnreadableReply(CosCallError):
    """A 2xx reply that is not the documented shape (truncated, another format, hostile).

    Never retryable: a retry reads the same reply. Its text is the record's reason.
    """

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(operation, "UnreadableReply", detail, None, "", retryable=False)
        self.args = (f"unreadable reply from {operation}: {detail[:200]}",)
