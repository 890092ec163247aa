"""The idempotency guard: duplicates, retries and the function's own writes change nothing.

Two layers:
- The object marker (always on). The marker is written in the same request as the labels
  (the tag PUT, or the metadata copy), so labels without a marker, or a marker without its
  labels, cannot happen. An overwrite of the object replaces its tags and metadata, so a
  marker on the object means the current content has been labeled.
- An optional strict store (Redis) in front, with the Powertools state machine: it stops two
  deliveries of one upload that run at the same moment in two containers from both paying.
"""

from __future__ import annotations

import enum
from typing import Protocol

from .events import CosRecord
from .retry import Deadline
from .writeback import marker_token


class Claim(enum.Enum):
    NEW = "new"  # this delivery owns the upload: go on
    DUPLICATE = "duplicate"  # already labeled: do nothing
    IN_PROGRESS = "in_progress"  # another delivery is labeling it right now


class StrictStore(Protocol):
    """A store that records uploads outside the object (see guard_redis.RedisStore)."""

    def claim(self, record: CosRecord, deadline: Deadline) -> Claim: ...

    def complete(self, record: CosRecord, deadline: Deadline) -> None: ...

    def release(self, record: CosRecord, deadline: Deadline) -> None: ...


def idempotency_key(record: CosRecord) -> str:
    """Bucket, key and the upload's identity: one record per upload, not per object."""
    return f"{record.bucket}/{record.key}#{record.identity or 'current'}"


def marker_says_done(marker: str | None, record: CosRecord) -> bool:
    """Whether the marker read from the object shows this upload needs no more work."""
    if marker is None:
        return False
    if not record.identity:
        # No upload identity (a backfill): any marker means the current content is labeled.
        return True
    if marker_token(marker) == record.upload_token:
        return True  # the same upload: a retry or a duplicate delivery
    # A copy carries the source's tags and metadata, marker and labels included: they describe
    # the copied content. This is also how the function's own metadata rewrite is recognised.
    return record.is_copy
