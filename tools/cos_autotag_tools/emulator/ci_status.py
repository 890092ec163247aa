"""Cloud Infinite's status queries, on the `ci.` hosts (not the bucket's COS host):

- DescribeAIBuckets (436/50196, SDK `ci_get_ai_bucket`): `GET /ai_bucket` on
  `ci.<region>.myqcloud.com` with `regions`, `bucketNames` (exact, comma-separated), `bucketName`
  (a prefix), `pageNumber`, `pageSize`; it lists the buckets with AI content recognition on as
  `<Response><RequestId/><TotalCount/><PageNumber/><PageSize/><AiBucketList>...`. Its CAM action
  is `ci:DescribeAiProcessBucket`. (The SDK sends it to 127.0.0.1 itself when configured with
  IP/Port, so a request without a COS or CI host that asks for `/ai_bucket` lands here too.)
- The bucket's binding status (436/74933): `GET /` on `<bucket>.ci.<region>.myqcloud.com`
  answers JSON `{"CIStatus": "on" | "off" | "unbinding"}`. The SDK has no method for it.
"""

from __future__ import annotations

import json
import re
import time

import xmltodict

from .backend import Backend, iso_time
from .errors import CosError
from .messages import Request, Response, xml_response

CI_HOST_RE = re.compile(r"^ci\.(?P<region>[a-z0-9-]+)\.myqcloud\.com$")
BUCKET_CI_HOST_RE = re.compile(r"^(?P<bucket>[a-z0-9-]+-\d{5,12})\.ci\.(?P<region>[a-z0-9-]+)\.myqcloud\.com$")
CI_STATUSES = ("on", "off", "unbinding")
_PAGE_SIZE_MAX = 100


def _positive(req: Request, name: str, default: int, limit: int | None = None) -> int:
    text = req.param(name) or ""
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1 or (limit is not None and int(text) > limit):
        bound = f" and at most {limit}" if limit else ""
        raise CosError("InvalidArgument", f"{name} must be a whole number of at least 1{bound}, not {text!r}")
    return int(text)


def describe_ai_buckets(backend: Backend, req: Request) -> Response:
    regions = {r for r in (req.param("regions") or "").split(",") if r}
    exact = {b for b in (req.param("bucketNames") or "").split(",") if b}
    prefix = req.param("bucketName") or ""
    page_number = _positive(req, "pageNumber", 1)
    page_size = _positive(req, "pageSize", 10, _PAGE_SIZE_MAX)
    listed = [
        (name, region)
        for name, region in sorted(backend.store.buckets().items())
        if backend.ci_status(name) == "on"
        and (not regions or region in regions)
        and (not exact or name in exact)
        and name.startswith(prefix)
    ]
    page = listed[(page_number - 1) * page_size : page_number * page_size]
    doc = {
        "Response": {
            "RequestId": req.request_id,
            "TotalCount": str(len(listed)),
            "PageNumber": str(page_number),
            "PageSize": str(page_size),
            "AiBucketList": [
                {"BucketId": name, "Name": name, "Region": region, "CreateTime": iso_time(time.time())}
                for name, region in page
            ],
        }
    }
    return xml_response(str(xmltodict.unparse(doc)).encode("utf-8"))


def bucket_ci_status(backend: Backend, req: Request) -> Response:
    if req.key:
        raise CosError("InvalidURI", "the bucket's Cloud Infinite status is GET / on its ci. host")
    body = json.dumps({"CIStatus": backend.ci_status(req.bucket or "")}).encode()
    return Response(200, {"Content-Type": "application/json"}, body)
