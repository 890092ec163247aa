"""`cos-autotag event put|post|multipart|copy|remove`: print an SCF COS trigger event.

The event has the shape of Tencent's documented sample (and of tests/fixtures/events/): the
same record builder the emulator's trigger uses, so `cosObject.key` is `/<appid>/<name>/<key>`
with the key as uploaded and `cosObject.url` percent-encoded. Pipe it to `cos-autotag invoke -`.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cos_autotag_tools import cos_facts

from .command import EXIT_OK, UsageError, command

EVENT_NAMES = {
    "put": cos_facts.EVENT_PUT,
    "post": cos_facts.EVENT_POST,
    "multipart": cos_facts.EVENT_COMPLETE_MULTIPART,
    "copy": cos_facts.EVENT_COPY,
    "remove": "cos:ObjectRemove:Delete",
}
DEFAULT_SIZE = 65536
# What the sample carries in requestHeaders: the uploader's signature. Here a made-up one.
EXAMPLE_AUTHORIZATION = (
    "q-sign-algorithm=sha1&q-ak=AKIDuploaderexample&q-sign-time={t};{e}&q-key-time={t};{e}"
    "&q-header-list=content-type;host&q-url-param-list=&q-signature={s}"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cos-autotag event",
        description="Print a realistic SCF COS trigger event (JSON) for one object.",
    )
    p.add_argument("kind", choices=tuple(EVENT_NAMES), help="what happened to the object")
    p.add_argument("--bucket", required=True, help="bucket as <name>-<appid>, e.g. photos-1250000000")
    p.add_argument("--key", required=True, help="object key as uploaded, e.g. photos/猫.jpg (no leading /)")
    p.add_argument("--region", default="ap-guangzhou", help="bucket region (default: ap-guangzhou)")
    p.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"object size in bytes (default: {DEFAULT_SIZE}; `invoke --upload` reports the real one)",
    )
    p.add_argument("--etag", help="the object's ETag, added to cosObject.meta (the sample carries none)")
    p.add_argument("--content-type", help="Content-Type in cosObject.meta (default: guessed from the key)")
    return p


def new_request_id() -> str:
    """An x-cos-request-id shaped like COS's (base64 of an opaque id)."""
    return base64.b64encode(secrets.token_hex(20).encode()).decode()


def build_event(
    kind: str,
    bucket: str,
    key: str,
    region: str = "ap-guangzhou",
    size: int = DEFAULT_SIZE,
    etag: str | None = None,
    content_type: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One-record event for `kind` (put, post, multipart, copy, remove); ValueError on bad input."""
    from cos_autotag_tools.emulator.triggers import ObjectEvent, build_record

    if kind not in EVENT_NAMES:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_NAMES)}")
    match = cos_facts.BUCKET_RE.match(bucket)
    if not match:
        raise ValueError(f"bucket {bucket!r} must be <name>-<appid>, e.g. photos-1250000000")
    if not cos_facts.REGION_RE.match(region):
        raise ValueError(f"region {region!r} is not a COS region such as ap-guangzhou")
    key = key.lstrip("/")
    if not key:
        raise ValueError("--key must name an object")
    if size < 0:
        raise ValueError("--size must be >= 0")
    now = int(time.time())
    removed = EVENT_NAMES[kind].startswith(cos_facts.EVENT_REMOVE_PREFIX)
    content_type = content_type if content_type is not None else (mimetypes.guess_type(key)[0] or "")
    signature = EXAMPLE_AUTHORIZATION.format(t=now - 10, e=now + 3590, s=secrets.token_hex(20))
    event = ObjectEvent(
        event_name=EVENT_NAMES[kind],
        bucket=bucket,
        region=region,
        key=key,
        size=0 if removed else size,
        content_type="" if removed else content_type,
        metadata={"ETag": etag} if etag else {},
        request_id=request_id or new_request_id(),
        authorization=signature,
        source_ip="127.0.0.1",
        event_time=now,
    )
    return {"Records": [build_record(event, match.group("appid"), "cos-autotag", "raw")]}


def _event(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        event = build_event(args.kind, args.bucket, args.key, args.region, args.size, args.etag, args.content_type)
    except ValueError as error:
        raise UsageError(str(error)) from error
    print(json.dumps(event, indent=2, ensure_ascii=False))
    return EXIT_OK


run_event = command(_parser, _event)
