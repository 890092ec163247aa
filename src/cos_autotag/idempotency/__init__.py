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

from typing import TYPE_CHECKING

from .guard import (
    BREAKER_OPEN_S,
    OPERATION_BUDGET_S,
    Claim,
    IdempotencyGuard,
    StrictStore,
    idempotency_key,
    record_key,
)
from .marker import marker_says_done

if TYPE_CHECKING:
    import ssl


def store_from_url(
    url: str,
    ttl_s: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    budget_s: float = OPERATION_BUDGET_S,
    breaker_open_s: float = BREAKER_OPEN_S,
) -> IdempotencyGuard:
    """The strict store on Redis, from AUTOTAG_IDEMPOTENCY_REDIS_URL; nothing is connected yet.

    A URL that cannot be used raises `errors.InvalidRedisUrl`, naming the part that is wrong.
    """
    # Imported here: a function without Redis does not pay its 4 ms of cold start.
    from .redis_store import RedisRecordStore

    return IdempotencyGuard(
        RedisRecordStore.from_url(url, ssl_context), ttl_s, budget_s=budget_s, breaker_open_s=breaker_open_s
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
