"""Multipart upload: initiate, upload part, complete, abort, and the two listings the SDK's
`upload_file` uses to resume (ListMultipartUploads, ListParts)."""

from __future__ import annotations

import hashlib
import time
import uuid
from urllib.parse import quote

from cos_autotag_tools import cos_facts

from . import xml_bodies
from .backend import (
    Backend,
    Upload,
    check_content_md5,
    content_headers_from,
    iso_time,
    object_url,
    request_header_pairs,
    require_key,
    storage_class_from,
    tags_from_header,
    user_metadata_from,
)
from .errors import CosError
from .messages import Request, Response, xml_response
from .store import md5_etag
from .xml_bodies import element

MAX_PART_NUMBER = 10000


def initiate(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    pairs = request_header_pairs(req)
    upload = Upload(
        upload_id=uuid.uuid4().hex,
        bucket=req.bucket or "",
        key=key,
        headers=content_headers_from(pairs),
        metadata=user_metadata_from(pairs),
        tags=tags_from_header(req.header_text("x-cos-tagging"), backend.profile),
        storage_class=storage_class_from(req.header("x-cos-storage-class")),
        initiated=time.time(),
    )
    with backend.uploads_lock:
        backend.uploads[upload.upload_id] = upload
    return xml_response(xml_bodies.initiate_multipart_body(upload.bucket, key, upload.upload_id))


def _upload(backend: Backend, req: Request) -> Upload:
    upload_id = req.param("uploadId") or ""
    with backend.uploads_lock:
        upload = backend.uploads.get(upload_id)
    if upload is None or (upload.bucket, upload.key) != (req.bucket, req.key):
        raise CosError("NoSuchUpload", f"The upload {upload_id!r} does not exist for this key")
    return upload


def upload_part(backend: Backend, req: Request) -> Response:
    require_key(req)
    try:
        number = int(req.param("partNumber") or "")
    except ValueError:
        raise CosError("InvalidArgument", "partNumber must be an integer") from None
    if not 1 <= number <= MAX_PART_NUMBER:
        raise CosError("InvalidArgument", f"partNumber must be within 1-{MAX_PART_NUMBER}")
    check_content_md5(req.header("content-md5"), req.body)
    upload = _upload(backend, req)
    etag = md5_etag(req.body)
    with backend.uploads_lock:
        upload.parts[number] = (etag, req.body)
    return Response(200, {"ETag": etag})


def complete(backend: Backend, req: Request) -> Response:
    key = require_key(req)
    upload = _upload(backend, req)
    listed = xml_bodies.parse_complete_multipart(req.body)
    numbers = [number for number, _ in listed]
    if numbers != sorted(set(numbers)):
        raise CosError("InvalidPartOrder", "The part list must be in ascending order without repeats")
    with backend.uploads_lock:
        parts = dict(upload.parts)
    chosen: list[bytes] = []
    for index, (number, etag) in enumerate(listed):
        stored = parts.get(number)
        if stored is None or stored[0].strip('"') != etag.strip('"'):
            raise CosError("InvalidPart", f"Part {number} was not uploaded or its ETag does not match")
        data = stored[1]
        if index < len(listed) - 1 and len(data) < cos_facts.MULTIPART_MIN_PART_BYTES:
            raise CosError(
                "EntityTooSmall",
                f"Part {number} is {len(data)} bytes; every part but the last must be at least "
                f"{cos_facts.MULTIPART_MIN_PART_BYTES} bytes",
            )
        chosen.append(data)
    # S3/COS multipart ETag: MD5 of the concatenated binary part MD5s, then "-<part count>".
    digests = b"".join(hashlib.md5(data).digest() for data in chosen)
    etag = f'"{hashlib.md5(digests).hexdigest()}-{len(chosen)}"'
    with backend.uploads_lock:
        if backend.uploads.pop(upload.upload_id, None) is None:
            raise CosError("NoSuchUpload", "The upload was completed or aborted meanwhile")
    state = backend.store.put(
        upload.bucket,
        key,
        b"".join(chosen),
        headers=upload.headers,
        metadata=upload.metadata,
        tags=upload.tags,
        storage_class=upload.storage_class,
        request_id=req.request_id,
        etag=etag,
    )
    backend.emit(cos_facts.EVENT_COMPLETE_MULTIPART, req, state)
    location = object_url(upload.bucket, req.region or "", key)
    return xml_response(xml_bodies.complete_multipart_body(location, upload.bucket, key, etag))


def abort(backend: Backend, req: Request) -> Response:
    require_key(req)
    upload = _upload(backend, req)
    with backend.uploads_lock:
        backend.uploads.pop(upload.upload_id, None)
    return Response(204)


def list_parts(backend: Backend, req: Request) -> Response:
    upload = _upload(backend, req)
    with backend.uploads_lock:
        parts = sorted(upload.parts.items())
    url_encode = req.param("encoding-type") == "url"
    key = quote(upload.key, safe="/") if url_encode else upload.key
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult>',
        element("Bucket", upload.bucket),
        element("Key", key),
        element("UploadId", upload.upload_id),
        element("StorageClass", upload.storage_class),
        element("IsTruncated", "false"),
    ]
    if url_encode:
        out.append(element("EncodingType", "url"))
    for number, (etag, data) in parts:
        out.append(
            "<Part>"
            + element("PartNumber", number)
            + element("LastModified", iso_time(upload.initiated))
            + element("ETag", etag)
            + element("Size", len(data))
            + "</Part>"
        )
    out.append("</ListPartsResult>")
    return xml_response("".join(out).encode())


def list_uploads(backend: Backend, req: Request) -> Response:
    prefix = req.param("prefix") or ""
    url_encode = req.param("encoding-type") == "url"
    with backend.uploads_lock:
        uploads = sorted(
            (u for u in backend.uploads.values() if u.bucket == req.bucket and u.key.startswith(prefix)),
            key=lambda u: (u.key, u.initiated),
        )

    def enc(text: str) -> str:
        return quote(text, safe="/") if url_encode else text

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>',
        element("Bucket", req.bucket),
        element("Prefix", enc(prefix)),
        element("IsTruncated", "false"),
    ]
    if url_encode:
        out.append(element("EncodingType", "url"))
    for upload in uploads:
        out.append(
            "<Upload>"
            + element("Key", enc(upload.key))
            + element("UploadId", upload.upload_id)
            + element("StorageClass", upload.storage_class)
            + element("Initiated", iso_time(upload.initiated))
            + "</Upload>"
        )
    out.append("</ListMultipartUploadsResult>")
    return xml_response("".join(out).encode())
