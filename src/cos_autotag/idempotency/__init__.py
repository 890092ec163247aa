"""The idempotency guard: duplicates, retries and the function's own writes change nothing.

Two layers:
- The object marker (always on, marker.py). The marker is written in the same request as the
  labels (the tag PUT, or the metadata copy), so labels without a marker, or a marker without
  its labels, cannot happen. An overwrite of the object replaces its tags and metadata, so a
  marker on the object means the current content has been labeled.
- An optional strict store in front, shaped as Powertools shapes its idempotency utility: it
  stops two deliveries of one upload that run at the same moment in two containers from both
  paying.
    guard.py        the state machine (claim / complete / release, takeover of an expired claim)
    record.py       the record format, read as untrusted bytes
    persistence.py  the record-store interface the state machine uses
    redis_store.py  the Redis adapter behind it (built by `store_from_url` below)
    resp.py         the RESP2 transport, bounded by a deadline
    redis_url.py    the Redis URL, parsed without ever showing its password
Every failure of the strict store is `errors.StoreUnavailable`; the pipeline then falls back to
the object marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .marker import marker_says_done

if TYPE_CHECKING:
    import ssl

    from .guard import Claim, IdempotencyGuard, StrictStore, idempotency_key, record_key

# The strict store's names, loaded on first use: a function without Redis never pays for them.
_FROM_GUARD = frozenset({"Claim", "IdempotencyGuard", "StrictStore", "idempotency_key", "record_key"})


def __getattr__(name: str) -> Any:
    if name in _FROM_GUARD:
        from . import guard

        return getattr(guard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def store_from_url(
    url: str,
    ttl_s: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    budget_s: float | None = None,
    breaker_open_s: float | None = None,
) -> IdempotencyGuard:
    """The strict store on Redis, from AUTOTAG_IDEMPOTENCY_REDIS_URL; nothing is connected yet.

    A URL that cannot be used raises `errors.InvalidRedisUrl`, naming the part that is wrong.
    `budget_s` and `breaker_open_s` default to the guard's own.
    """
    # Imported here: a function without Redis does not pay its cold start.
    from .guard import BREAKER_OPEN_S, OPERATION_BUDGET_S, IdempotencyGuard
    from .redis_store import RedisRecordStore

    return IdempotencyGuard(
        RedisRecordStore.from_url(url, ssl_context),
        ttl_s,
        budget_s=OPERATION_BUDGET_S if budget_s is None else budget_s,
        breaker_open_s=BREAKER_OPEN_S if breaker_open_s is None else breaker_open_s,
    )


__all__ = [
    "Claim",
    "IdempotencyGuard",
    "StrictStore",
    "idempotency_key",
    "marker_says_done",
    "record_key",
    "store_from_url",
]
