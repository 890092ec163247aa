"""Paginated listing of a bucket (ListObjects, 1,000 keys a page), in key order.

Each page is fetched with the same in-deadline retry as the function's calls, so a
throttled or failing page is tried again before the run gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from cos_autotag.retry import Deadline, call_with_retry


class Lister(Protocol):
    """What listing needs of the SDK adapter (or of a wrapper around it)."""

    def list_objects(
        self, bucket: str, region: str, prefix: str = "", marker: str = "", max_keys: int = 1000
    ) -> dict[str, Any]: ...


PAGE_SIZE = 1000  # COS's maximum for max-keys
PAGE_DEADLINE_S = 120.0


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int | None
    storage_class: str = ""
    # As ListObjects gives it ("" when unknown, e.g. a key retried from the checkpoint): it tells
    # whether a detect-label answer kept in the checkpoint is still the object's.
    etag: str = ""


def parse_size(value: Any) -> int | None:
    try:
        size = int(value)
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


def parse_page(page: dict[str, Any]) -> tuple[list[ListedObject], str | None]:
    """The objects on one ListObjects page, and the marker for the next page (None at the end)."""
    contents = page.get("Contents") or []
    if isinstance(contents, dict):  # one object: the XML parser gives a dict, not a list
        contents = [contents]
    objects = [
        ListedObject(
            str(item["Key"]),
            parse_size(item.get("Size")),
            str(item.get("StorageClass") or ""),
            str(item.get("ETag") or ""),
        )
        for item in contents
        if isinstance(item, dict) and item.get("Key")
    ]
    truncated = str(page.get("IsTruncated", "false")).lower() == "true"
    if not truncated:
        return objects, None
    # NextMarker is what COS says to continue from; the last key is the same when it is absent.
    next_marker = str(page.get("NextMarker") or (objects[-1].key if objects else ""))
    if not next_marker:
        raise ValueError("ListObjects says the listing is truncated but gives no way to continue")
    return objects, next_marker


def list_objects(
    gateway: Lister,
    bucket: str,
    region: str,
    prefix: str = "",
    after: str = "",
    *,
    page_size: int = PAGE_SIZE,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[ListedObject]:
    """Every object under `prefix` whose key sorts after `after`, one page at a time."""
    marker = after
    while True:
        page = call_with_retry(
            partial(gateway.list_objects, bucket, region, prefix=prefix, marker=marker, max_keys=page_size),
            Deadline(PAGE_DEADLINE_S),
        )
        objects, next_marker = parse_page(page)
        if on_page is not None:
            on_page(len(objects))
        yield from objects
        if next_marker is None:
            return
        if next_marker.encode() <= marker.encode():
            raise ValueError(f"ListObjects did not advance past {marker!r}: stopping rather than looping")
        marker = next_marker
