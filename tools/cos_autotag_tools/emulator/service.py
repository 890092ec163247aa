"""The COS front door: route a request to its operation, apply faults, check the signature,
answer errors in COS's XML shape, and log every request."""

from __future__ import annotations

import base64
import itertools
import os
import re
import sys
import time
import traceback
from collections.abc import Callable

from cos_autotag_tools import cos_facts

from . import auth, ci, ci_status, dataset, listing, multipart, objects, postform, xml_bodies
from .backend import Backend
from .errors import CosError
from .faults import SERVER_ERRORS
from .messages import BodyUnreadable, Request, Response
from .requestlog import RequestRecord

Operation = Callable[[Backend, Request], Response]

OPERATIONS: dict[str, Operation] = {
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "DeleteMultipleObjects": objects.delete_multiple_objects,
    "CopyObject": objects.copy_object,
    "GetObjectACL": objects.get_object_acl,
    "PutObjectACL": objects.put_object_acl,
    "PutObjectTagging": objects.put_object_tagging,
    "GetObjectTagging": objects.get_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "PostObject": postform.post_object,
    "InitiateMultipartUpload": multipart.initiate,
    "UploadPart": multipart.upload_part,
    "CompleteMultipartUpload": multipart.complete,
    "AbortMultipartUpload": multipart.abort,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_uploads,
    "ListObjects": listing.list_objects,
    "HeadBucket": listing.head_bucket,
    "DetectLabel": ci.detect_label,
    "ImageProcess": ci.image_process,
    "DescribeAIBuckets": ci_status.describe_ai_buckets,
    "GetCIStatus": ci_status.bucket_ci_status,
}

_counter = itertools.count(1)
_PROCESS_TAG = os.urandom(3).hex()


def new_request_id() -> str:
    """Unique and base64-looking like COS's (which encode "<hex>_<hex>_<hex>_<hex>")."""
    raw = f"{int(time.time()):x}_{_PROCESS_TAG}_{next(_counter):x}_{os.urandom(3).hex()}"
    return base64.b64encode(raw.encode()).decode()


# Sub-resources of operations the emulator does not implement: answered 501 instead of being
# mistaken for a plain GET/PUT of the bucket or object.
_UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "acl", "accelerate", "append", "cors", "delete", "domain", "encryption", "intelligenttiering",
        "inventory", "lifecycle", "location", "logging", "object-lock", "origin", "policy", "referer",
        "replication", "restore", "select", "symlink", "versioning", "versions", "website",
    }
)  # fmt: skip


# `<appid>.ci.<region>.myqcloud.com`: MetaInsight's host. The SDK (1.9.44), configured with IP/Port
# as for the emulator, sends `<appid>.cos.<region>...` as the Host of these calls: both are served.
_APPID_HOST_RE = re.compile(
    r"^(?P<appid>\d{5,12})\.(?:ci|cos)\.(?P<region>[a-z0-9-]+)\.(?:myqcloud\.com|tencentcos\.cn)$"
)


def route(req: Request) -> str:
    """The COS operation name of a request (an unknown one is answered 501 NotImplemented)."""
    method = req.method
    if method == "POST" and req.key is None and req.has_param("delete"):
        return "DeleteMultipleObjects"
    if req.key is not None and method in ("GET", "PUT") and req.has_param("acl"):
        return "GetObjectACL" if method == "GET" else "PutObjectACL"
    unsupported = next((name for name, _ in req.query if name in _UNSUPPORTED_SUBRESOURCES), None)
    if unsupported is not None:
        return f"{method}:{unsupported}"
    ci_process = req.param("ci-process")
    if req.key is None:  # bucket-level
        if method == "GET":
            if ci_process is not None:
                return "DetectLabel" if ci_process == "detect-label" else f"CI:{ci_process}"
            return "ListMultipartUploads" if req.has_param("uploads") else "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and postform.form_content_type(req):
            return "PostObject"
        return f"{method}Bucket"
    if method in ("GET", "HEAD"):
        if method == "GET" and req.has_param("tagging"):
            return "GetObjectTagging"
        if method == "GET" and ci_process is not None:
            return "DetectLabel" if ci_process == "detect-label" else f"CI:{ci_process}"
        if method == "GET" and req.has_param("uploadId"):
            return "ListParts"
        if method == "GET" and ci.processing_rules(req.query):
            return "ImageProcess"  # GET Object with an imageMogr2 rendition, as Cloud Infinite serves it
        return "GetObject" if method == "GET" else "HeadObject"
    if method == "PUT":
        if req.has_param("tagging"):
            return "PutObjectTagging"
        if req.has_param("partNumber") and req.has_param("uploadId"):
            return "UploadPartCopy" if req.header("x-cos-copy-source") else "UploadPart"
        return "CopyObject" if req.header("x-cos-copy-source") else "PutObject"
    if method == "POST":
        if req.has_param("uploads"):
            return "InitiateMultipartUpload"
        if req.has_param("uploadId"):
            return "CompleteMultipartUpload"
        return "PostObjectKey"
    if method == "DELETE":
        if req.has_param("tagging"):
            return "DeleteObjectTagging"
        return "AbortMultipartUpload" if req.has_param("uploadId") else "DeleteObject"
    return f"{method}Object"


def _ci_host_op(req: Request, host: str) -> str | None:
    """DescribeAIBuckets or the bucket's CIStatus, when the request is for a ci. host (or for
    /ai_bucket on the emulator's own address, where the SDK sends it under IP/Port); else None."""
    bucket_ci = ci_status.BUCKET_CI_HOST_RE.match(host)
    if bucket_ci and req.method == "GET":
        req.bucket, req.region, req.key = bucket_ci.group("bucket"), bucket_ci.group("region"), None
        return "GetCIStatus" if req.path == "/" else f"CI:{req.path}"
    account_ci = ci_status.CI_HOST_RE.match(host)
    if (account_ci or not cos_facts.COS_HOST_RE.match(host)) and req.path == "/ai_bucket" and req.method == "GET":
        req.region = account_ci.group("region") if account_ci else None
        # Sent to the emulator's address, the SDK signs the host without the port (as it would
        # sign ci.<region>.myqcloud.com): verify it as signed.
        req.headers["host"] = host
        return "DescribeAIBuckets"
    return None


class RequestHooks:
    """Called at two points of every request: `when="before"` its operation runs and "after" it
    ran, before the answer is sent. `arrive` may block, and may answer a callable that the service
    calls once the request is answered and logged. These do nothing; tests install pause points."""

    def arrive(self, op: str, req: Request, when: str) -> Callable[[], None] | None:
        return None

    def release_all(self) -> None:
        """Let every blocked request go on (the emulator is stopping)."""


class CosService:
    def __init__(self, backend: Backend, log: list[RequestRecord]) -> None:
        self.backend = backend
        self.log = log
        self.hooks = RequestHooks()

    def handle(self, req: Request) -> Response:
        start = time.monotonic()
        op = "Unknown"
        served: list[Callable[[], None] | None] = []
        try:
            op = self._resolve(req)
            served.append(self.hooks.arrive(op, req, "before"))
            delay = self.backend.faults.latency_for(op)
            if delay > 0:
                time.sleep(delay)
            response = self._serve(op, req)
        except CosError as exc:
            response = self._error(req, exc)
        except Exception as exc:  # a bug here must still answer COS-shaped, and be visible
            traceback.print_exc(file=sys.stderr)
            response = self._error(req, CosError("InternalError", f"emulator error: {exc!r}", 500))
        response.headers["x-cos-request-id"] = req.request_id
        if op != "Unknown":
            served.append(self.hooks.arrive(op, req, "after"))
        self.log.append(
            RequestRecord(
                op=op,
                method=req.method,
                bucket=req.bucket,
                key=req.key,
                status=response.status,
                error_code=response.error_code,
                request_id=req.request_id,
                timestamp=req.received_at,
                duration_s=time.monotonic() - start,
                secret_id=req.secret_id,
            )
        )
        # After the log entry, so that a test woken by wait_done also sees the request logged.
        for done in served:
            if done is not None:
                done()
        return response

    def _resolve(self, req: Request) -> str:
        host = (req.header("host") or "").split(":", 1)[0].lower()
        account = _APPID_HOST_RE.match(host)
        if account:  # MetaInsight (dataset.py), on the account's CI host
            req.region = account.group("region")
            name = dataset.NAMES.get(req.path)
            return name if name and req.method == "POST" else f"CI:{req.method}{req.path}"
        match = cos_facts.COS_HOST_RE.match(host)
        ci_op = _ci_host_op(req, host)
        if ci_op is not None:
            return ci_op
        if not match:
            raise CosError(
                "InvalidURI",
                f"Host {host!r} is not <bucket>.cos.<region>.myqcloud.com; configure the SDK with "
                "IP='127.0.0.1', Port=<port> (not Domain/Endpoint) so that it sends the bucket's host",
            )
        req.bucket, req.region = match.group("bucket"), match.group("region")
        req.key = req.path[1:] or None
        return route(req)

    def _serve(self, op: str, req: Request) -> Response:
        backend = self.backend
        if op in dataset.NAMES.values() or op.startswith("CI:/"):
            return self._serve_dataset(op, req)
        if op == "DescribeAIBuckets":
            pass  # an account-wide query, no bucket
        elif backend.store.bucket_region(req.bucket or "") != req.region:
            raise CosError("NoSuchBucket", f"The specified bucket {req.bucket} does not exist in {req.region}.")
        if req.key is not None and len(req.key.encode()) > cos_facts.KEY_MAX_BYTES:
            raise CosError("KeyTooLong", f"The key is longer than {cos_facts.KEY_MAX_BYTES} bytes")
        if op != "PostObject":  # a form upload is signed by its policy, checked by the operation
            # The signature covers the method, path, query and headers: checked before any body is read.
            signed = auth.verify(
                method=req.method,
                path=req.path,
                # Processing parameters follow a presigned URL unsigned, as CI's docs show.
                query=ci.without_processing(req.query) if op == "ImageProcess" else req.query,
                headers=req.headers,
                credentials=backend.credentials,
                token=backend.token,
            )
            req.secret_id, req.authorization = signed.secret_id, signed.authorization
        if op in backend.faults.faults.denied_ops:
            # What COS answers a signed request whose CAM policy lacks the action.
            raise CosError("AccessDenied", f"Access Denied. The caller is not authorized to perform {op}.")
        self._load_body(req)
        if op == "DetectLabel" and not backend.ci_bound(req.bucket or ""):
            return ci.unbound_answer(backend.profile)
        server_error = backend.faults.server_error_for(op)
        if server_error is not None:
            raise CosError(server_error, f"injected fault: {server_error}", SERVER_ERRORS[server_error])
        operation = OPERATIONS.get(op)
        if operation is None:
            raise CosError("NotImplemented", f"{op} is not emulated", 501)
        return operation(backend, req)

    def _serve_dataset(self, op: str, req: Request) -> Response:
        signed = auth.verify(
            method=req.method,
            path=req.path,
            query=req.query,
            headers=req.headers,
            credentials=self.backend.credentials,
            token=self.backend.token,
        )
        req.secret_id, req.authorization = signed.secret_id, signed.authorization
        host = req.header("host") or ""
        if not host.startswith(self.backend.appid + "."):
            raise CosError("AccessDenied", f"Host {host!r} is not this account's ({self.backend.appid}) CI host", 403)
        if op in self.backend.faults.faults.denied_ops:
            raise CosError("AccessDenied", f"Access Denied. The caller is not authorized to perform {op}.")
        self._load_body(req)
        operation = dataset.OPERATIONS.get((req.method, req.path))
        if operation is None:
            raise CosError("NotImplemented", f"{req.method} {req.path} is not emulated on the CI host", 501)
        return operation(self.backend, req)

    def _load_body(self, req: Request) -> None:
        """Read the body, refusing one over the cap from its declared length without reading it."""
        cap = self.backend.max_body_bytes
        too_large = CosError(
            "EntityTooLarge", f"Your proposed upload exceeds the maximum allowed object size ({cap} bytes)."
        )
        if req.content_length is not None and req.content_length > cap:
            raise too_large
        try:
            body = req.load_body(cap)
        except BodyUnreadable as exc:
            raise CosError("InvalidRequest", f"The request body could not be read: {exc}") from exc
        if len(body) > cap:
            raise too_large

    @staticmethod
    def _error(req: Request, exc: CosError) -> Response:
        headers = dict(exc.headers)
        if exc.status == 304 or req.method == "HEAD":
            body = b""  # no body on 304 or HEAD; the SDK reads HEAD errors from the status
        else:
            host = cos_facts.cos_host(req.bucket, req.region) if req.bucket and req.region else ""
            trace = base64.b64encode(os.urandom(24)).decode()
            body = xml_bodies.error_body(exc.code, exc.message, host + req.raw_path, req.request_id, trace)
            headers["Content-Type"] = xml_bodies.XML_CONTENT_TYPE
            headers["x-cos-trace-id"] = trace
        return Response(exc.status, headers, body, error_code=exc.code)
