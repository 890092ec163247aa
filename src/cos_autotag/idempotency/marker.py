"""The object marker: the guard that is always on, written with the labels in one request."""

from __future__ import annotations

from ..events import CosRecord
from ..writeback import marker_token


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
