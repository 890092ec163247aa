"""The adapter to Cloud Infinite MetaInsight (智能检索): datasets, bindings, file indexes, simple query.

Every call goes through cos-python-sdk-v5: its client, configuration, signer (`CosS3Auth`) and
`send_request`, with the same URL, path and body its `ci_create_dataset`,
`ci_create_dataset_binding`, `ci_create_file_meta_index` and `ci_dataset_simple_query` build
(qcloud_cos/meta_insight.py): `POST https://<appid>.ci.<region>.myqcloud.com/<path>`. Those methods
read the answer with the SDK's XML reader, while the pages (460/106375, 436/107220) and Tencent's
Go SDK document a JSON answer (`Accept: application/json`); so this adapter sends that request
itself and reads JSON, or XML should the service answer XML (both readings).
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from typing import Any

import requests
from qcloud_cos import CosS3Auth, CosS3Client
from qcloud_cos.cos_comm import format_dict, xml_to_dict
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from cos_autotag.cos_adapter import CosGateway

from .dataset_query import MAX_RESULTS


def count_value(value: object) -> int | None:
    """An aggregation's count (`"12"`, `12`, `"12.0"`), or None when it is not a number."""
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return None

class MetaInsightError(Exception):
    """A MetaInsight call that failed; the message says what to do next."""


class MetaInsight:
    def __init__(self, gateway: CosGateway, bucket: str, region: str) -> None:
        self.bucket = bucket
        self.appid = bucket.rpartition("-")[2]
        base = gateway.client(region)
        conf = copy.copy(base._conf)  # the function's endpoint and credentials, plus the account
        conf._appid = self.appid
        self._conf = conf
        self._client = CosS3Client(conf, retry=1)
        self.requests = 0  # CI requests sent, for the reports

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._conf.uri(path=path, endpoint=self._conf._endpoint_ci, useAppid=True)
        self.requests += 1
        try:
            response = self._client.send_request(
                method="POST",
                url=url,
                appid=self.appid,
                data=json.dumps(body, ensure_ascii=False).encode(),
                auth=CosS3Auth(self._conf, path, params={}),
                params={},
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                ci_request=True,
            )
        except CosServiceError as error:
            raise MetaInsightError(_explain(path, error)) from error
        except (CosClientError, requests.RequestException) as error:
            raise MetaInsightError(f"{path}: {error}; check AUTOTAG_COS_ENDPOINT and the network") from error
        return decode(response.content)

    def create_dataset(self, name: str) -> bool:
        """Create the dataset; False when it exists already."""
        try:
            self._post("/dataset", {"DatasetName": name, "TemplateId": "Official:COSBasicMeta",
                                    "Description": "cos-autotag labels"})  # fmt: skip
        except MetaInsightError as error:
            if "AlreadyExist" in str(error):
                return False
            raise
        return True

    def bind(self, name: str) -> None:
        self._post("/datasetbinding", {"DatasetName": name, "URI": f"cos://{self.bucket}"})

    def index(self, name: str, key: str) -> None:
        self._post("/filemeta", {"DatasetName": name, "File": {"URI": f"cos://{self.bucket}/{key}"}})

    def files(self, name: str, query: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every file the query matches, a page of at most 100 per request, following NextToken."""
        token = ""
        while True:
            files, token = self.page(name, query, token)
            yield from files
            if not token:
                return

    def page(self, name: str, query: dict[str, Any] | None, token: str = "") -> tuple[list[dict[str, Any]], str]:
        """One page of files (at most 100) from `token` ("" for the first), and the next token ("" at the end)."""
        body: dict[str, Any] = {"DatasetName": name, "MaxResults": MAX_RESULTS}
        if query is not None:
            body["Query"] = query
        if token:
            body["NextToken"] = token
        answer = self._post("/datasetquery/simple", body)
        return _as_list(answer.get("Files")), str(answer.get("NextToken") or "")

    def aggregate(self, name: str, query: dict[str, Any] | None, field: str, operation: str) -> dict[str, Any]:
        found = self.aggregate_many(name, query, [(field, operation)])
        return found[0] if found else {}

    def aggregate_many(
        self, name: str, query: dict[str, Any] | None, aggregations: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Several aggregations (field, operation) in one request, answered in one list."""
        body: dict[str, Any] = {
            "DatasetName": name,
            "Aggregations": [{"Field": field, "Operation": operation} for field, operation in aggregations],
        }
        if query is not None:
            body["Query"] = query
        if any(operation == "group" for _, operation in aggregations):
            body["MaxResults"] = 2000
        answer = self._post("/datasetquery/simple", body)
        return _as_list(answer.get("Aggregations"))


def decode(content: bytes) -> dict[str, Any]:
    """An answer as a dict: JSON as documented, or the SDK's XML reading."""
    text = content.strip()
    if not text:
        return {}
    if text[:1] in (b"{", b"["):
        data = json.loads(text)
        return data if isinstance(data, dict) else {}
    try:
        data = xml_to_dict(content)
    except ElementTree.ParseError as error:
        raise MetaInsightError(f"MetaInsight answered neither JSON nor XML: {text[:80]!r}") from error
    format_dict(data, ["Files", "Aggregations"])
    return data.get("Response", data) if isinstance(data, dict) else {}


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _explain(path: str, error: CosServiceError) -> str:
    code = error.get_error_code()
    message = error.get_error_msg()
    hint = {
        "DatasetNotFound": "create it with `cos-autotag dataset NAME`",
        "AccessDenied": "the key needs the ci:CreateDataset, ci:CreateDatasetBinding, ci:CreateFileMetaIndex "
        "and ci:DatasetSimpleQuery actions",
        "SignatureDoesNotMatch": "check TENCENTCLOUD_SECRETID/SECRETKEY",
    }.get(str(code), "see the Cloud Infinite console's 智能检索 page")
    return f"MetaInsight {path} failed: {code} {message} ({error.get_status_code()}): {hint}"
