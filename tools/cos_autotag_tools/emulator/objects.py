"""Object operations: PUT, GET (with Range), HEAD, DELETE, PUT-Copy and object tagging."""

from __future__ import annotations

import re
from urllib.parse import unquote

from cos_autotag_tools import cos_facts

from . import acl, xml_bodies
from .backend import (
    Backend,
    archived,
    check_conditions,
    check_content_md5,
    content_headers_from,
    iso_time,
    object_headers,
    request_header_pairs,
    require_key,
    storage_class_from,
    tags_from_header,
    user_metadata_from,
    validate_tags,
)
from .errors import CosError
from .messages import Request, Response, xml_response
from .store import ObjectState

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# GET's response-* query parameters override these response headers.
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def put_object(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    check_content_md5(req.header("content-md5"), req.body)
    pairs = request_header_pairs(req)
    _, grants = acl.acl_from_headers(dict(pairs), acl.owner_id(backend.owner_uin))
    state = backend.store.put(
        req.bucket or "",
        key,
        req.body,
        headers=content_headers_from(pairs),
        metadata=user_metadata_from(pairs),
        tags=tags_from_header(req.header_text("x-cos-tagging"), backend.profile),
        storage_class=storage_class_from(req.header("x-cos-storage-class")),
        request_id=req.request_id,
        sse=acl.sse_from(dict(pairs)),
        acl=grants,
    )
    backend.emit(cos_facts.EVENT_PUT, req, state)
    return Response(200, {"ETag": state.etag})


def _get_state(backend: Backend, req: Request, with_body: bool) -> ObjectState:
    key = require_key(req)
    state = backend.store.get(req.bucket or "", key, with_body=with_body)
    if state is None:
        raise CosError("NoSuchKey", "The specified key does not exist.")
    return state


def get_object(backend: Backend, req: Request) -> Response:
    state = _get_state(backend, req, with_body=True)
    archived(state)
    _conditions(req, state)
    headers = object_headers(state, backend.profile)
    for param, header in _RESPONSE_OVERRIDES.items():
        value = req.param(param)
        if value is not None:
            headers[header] = value
    body = state.body
    range_header = req.header("range")
    if range_header is not None:
        start, end = _parse_range(range_header, len(body))
        headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        return Response(206, headers, body[start : end + 1])
    return Response(200, headers, body)


def head_object(backend: Backend, req: Request) -> Response:
    state = _get_state(backend, req, with_body=False)
    _conditions(req, state)
    headers = object_headers(state, backend.profile)
    # HEAD answers the object's length without a body; the server sends this as Content-Length.
    headers["Content-Length"] = str(state.size)
    return Response(200, headers)


def _conditions(req: Request, state: ObjectState) -> None:
    check_conditions(
        state,
        req.header("if-match"),
        req.header("if-none-match"),
        req.header("if-modified-since"),
        req.header("if-unmodified-since"),
        copy_source=False,
    )


def _parse_range(value: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range."""
    match = _RANGE_RE.match(value.strip())
    if not match or match.group(1) == match.group(2) == "":
        raise CosError("InvalidRange", f"The Range {value!r} is not a single bytes=first-last range")
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        raise CosError("InvalidRange", f"The Range {value!r} is not satisfiable for a {size}-byte object")
    return start, end


def delete_multiple_objects(backend: Backend, req: Request) -> Response:
    """`POST /?delete`: remove up to 1000 keys. A key that does not exist counts as deleted, as in
    COS; quiet mode lists only the failures."""
    if req.header("content-md5") is None:
        raise CosError("InvalidRequest", "DeleteMultipleObjects needs a Content-MD5 header")
    check_content_md5(req.header("content-md5"), req.body)
    quiet, keys = xml_bodies.parse_delete(req.body)
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for key in keys:
        if len(key.encode()) > cos_facts.KEY_MAX_BYTES:
            errors.append((key, "KeyTooLong", f"The key is longer than {cos_facts.KEY_MAX_BYTES} bytes"))
            continue
        gone = backend.store.delete(req.bucket or "", key)
        if gone is not None:
            backend.emit("cos:ObjectRemove:Delete", req, gone)
        deleted.append(key)
    return xml_response(xml_bodies.delete_result_body([] if quiet else deleted, errors))


def delete_object(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    gone = backend.store.delete(req.bucket or "", key)
    if gone is not None:
        backend.emit("cos:ObjectRemove:Delete", req, gone)
    return Response(204)


# --- copy -----------------------------------------------------------------------------------------


def _parse_copy_source(value: str) -> tuple[str, str, str]:
    """(bucket, region, key) of `x-cos-copy-source: <bucket>.cos.<region>.myqcloud.com/<encoded key>`."""
    text = value.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    host, sep, path = text.partition("/")
    match = cos_facts.COS_HOST_RE.match(host)
    if not sep or not match or not path:
        raise CosError(
            "InvalidCopySource",
            f"x-cos-copy-source {value!r} is not <bucket>.cos.<region>.myqcloud.com/<url-encoded key>",
        )
    path = path.split("?", 1)[0]  # a ?versionId= suffix; this emulator keeps no versions
    return match.group("bucket"), match.group("region"), unquote(path)


def copy_object(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    src_bucket, src_region, src_key = _parse_copy_source(req.header_text("x-cos-copy-source") or "")
    if backend.store.bucket_region(src_bucket) != src_region:
        raise CosError("NoSuchBucket", f"The copy source bucket {src_bucket} does not exist in {src_region}")
    source = backend.store.get(src_bucket, src_key)
    if source is None:
        raise CosError("NoSuchCopySource", f"The copy source {src_bucket}/{src_key} does not exist")
    archived(source)
    check_conditions(
        source,
        req.header("x-cos-copy-source-if-match"),
        req.header("x-cos-copy-source-if-none-match"),
        req.header("x-cos-copy-source-if-modified-since"),
        req.header("x-cos-copy-source-if-unmodified-since"),
        copy_source=True,
    )
    metadata_directive = _directive(req, "x-cos-metadata-directive")
    tagging_directive = _directive(req, "x-cos-tagging-directive")
    storage_class = storage_class_from(req.header("x-cos-storage-class"))
    same_object = (src_bucket, src_key) == (req.bucket, key)
    if same_object and metadata_directive == "Copy" and storage_class == source.storage_class:
        raise CosError(
            "InvalidRequest",
            "This copy request is illegal because it copies an object onto itself without changing its "
            "metadata (x-cos-metadata-directive: Replaced) or its storage class.",
        )
    pairs = request_header_pairs(req)
    # 436/10881: what the copy request does not send, the destination does not get: no
    # encryption header means unencrypted, no ACL header means the bucket's default ACL.
    sse = acl.sse_from(dict(pairs))
    _, grants = acl.acl_from_headers(dict(pairs), acl.owner_id(backend.owner_uin))
    failure = backend.faults.faults.copy_error_in_body
    if failure is not None:
        return xml_response(
            xml_bodies.error_body(
                failure, f"injected fault: the copy failed after it started ({failure})",
                f"{req.bucket}/{key}", req.request_id, req.request_id,
            )
        )  # fmt: skip
    if metadata_directive == "Replaced":
        headers, metadata = content_headers_from(pairs), user_metadata_from(pairs)
    else:
        headers, metadata = source.headers, source.metadata
    tags = (
        source.tags
        if tagging_directive == "Copy"
        else tags_from_header(req.header_text("x-cos-tagging"), backend.profile)
    )
    state = backend.store.put(
        req.bucket or "",
        key,
        source.body,
        headers=headers,
        metadata=metadata,
        tags=tags,
        storage_class=storage_class,
        request_id=req.request_id,
        etag=source.etag,
        sse=sse,
        acl=grants,
    )
    backend.emit(cos_facts.EVENT_COPY, req, state)
    return xml_response(xml_bodies.copy_result_body(state.etag, iso_time(state.last_modified)))


def _directive(req: Request, header: str) -> str:
    value = req.header(header) or "Copy"
    if value not in ("Copy", "Replaced"):
        raise CosError("InvalidArgument", f"{header} must be Copy or Replaced, not {value!r}")
    return value


# --- tagging --------------------------------------------------------------------------------------


def put_object_tagging(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    tags = validate_tags(xml_bodies.parse_tagging(req.body), backend.profile)
    if not backend.store.set_tags(req.bucket or "", key, tags):
        raise CosError("NoSuchKey", "The specified key does not exist.")
    return Response(200)


def get_object_tagging(backend: Backend, req: Request) -> Response:
    state = _get_state(backend, req, with_body=False)
    return xml_response(xml_bodies.tagging_body(state.tags))


def delete_object_tagging(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    if not backend.store.set_tags(req.bucket or "", key, {}):
        raise CosError("NoSuchKey", "The specified key does not exist.")
    return Response(204)


# --- ACL ------------------------------------------------------------------------------------------


def get_object_acl(backend: Backend, req: Request) -> Response:
    """GET Object acl: the object's own ACL, or the effective one it inherits from the bucket."""
    state = _get_state(backend, req, with_body=False)
    owner = acl.owner_id(backend.owner_uin)
    grants = acl.effective(
        None if state.acl is None else list(state.acl), backend.bucket_acls.get(req.bucket or "", "private"), owner
    )
    return xml_response(acl.acl_body(grants, owner))


def put_object_acl(backend: Backend, req: Request) -> Response:
    """PUT Object acl: from `x-cos-acl` / `x-cos-grant-*` headers, or an `<AccessControlPolicy>` body."""
    key = require_key(req)
    owner = acl.owner_id(backend.owner_uin)
    from_headers, grants = acl.acl_from_headers(dict(request_header_pairs(req)), owner)
    if req.body.strip():
        if from_headers:
            raise CosError("InvalidRequest", "set an object ACL by headers or by a body, not both")
        grants = acl.acl_from_body(req.body, owner)
    elif not from_headers:
        raise CosError("MalformedXML", "PUT Object acl needs x-cos-acl / x-cos-grant-* headers or a body")
    if not backend.store.set_acl(req.bucket or "", key, grants):
        raise CosError("NoSuchKey", "The specified key does not exist.")
    return Response(200)
