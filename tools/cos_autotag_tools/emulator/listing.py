"""GET Bucket (list objects): prefix, marker, max-keys, delimiter and CommonPrefixes, paging
with IsTruncated/NextMarker, and `encoding-type=url` (which the SDK always asks for)."""

from __future__ import annotations

from . import xml_bodies
from .backend import Backend, iso_time
from .errors import CosError
from .messages import Request, Response, xml_response

MAX_KEYS = 1000


def list_objects(backend: Backend, req: Request) -> Response:
    bucket = req.bucket or ""
    prefix = req.param("prefix") or ""
    marker = req.param("marker") or ""
    delimiter = req.param("delimiter") or ""
    encoding = req.param("encoding-type")
    if encoding not in (None, "", "url"):
        raise CosError("InvalidArgument", f"encoding-type must be url, not {encoding!r}")
    raw_max = req.param("max-keys") or ""
    try:
        max_keys = int(raw_max) if raw_max else MAX_KEYS
    except ValueError:
        raise CosError("InvalidArgument", f"max-keys must be an integer, not {raw_max!r}") from None
    if max_keys < 0:
        raise CosError("InvalidArgument", "max-keys must not be negative")
    max_keys = min(max_keys, MAX_KEYS)

    # A marker that is itself a common prefix means "after everything under it".
    skip_under = marker if delimiter and marker.startswith(prefix) and marker.endswith(delimiter) else None
    contents: list[xml_bodies.ListedObject] = []
    common: list[str] = []
    last_entry = ""
    truncated = False
    for key in backend.store.keys_from(bucket, marker, prefix):
        if skip_under is not None and key.startswith(skip_under):
            continue
        entry: str | None = None
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                entry = key[: cut + len(delimiter)]
                if common and common[-1] == entry:
                    continue  # same common prefix as the previous key: listed once
        if len(contents) + len(common) >= max_keys:
            truncated = True
            break
        if entry is not None:
            common.append(entry)
            last_entry = entry
            continue
        state = backend.store.get(bucket, key, with_body=False)
        if state is None:
            continue  # deleted while we were listing
        contents.append(
            xml_bodies.ListedObject(key, iso_time(state.last_modified), state.etag, state.size, state.storage_class)
        )
        last_entry = key
    body = xml_bodies.list_bucket_body(
        bucket=bucket,
        prefix=prefix,
        marker=marker,
        max_keys=max_keys,
        delimiter=delimiter,
        url_encode=encoding == "url",
        is_truncated=truncated,
        next_marker=last_entry,
        contents=contents,
        common_prefixes=common,
        owner_id=backend.appid,
    )
    return xml_response(body)


def head_bucket(backend: Backend, req: Request) -> Response:
    return Response(200, {"x-cos-bucket-region": req.region or ""})
