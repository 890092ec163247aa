"""Cloud Infinite MetaInsight (智能检索), the part the tools use, on `<appid>.ci.<region>.myqcloud.com`.

POST /dataset               CreateDataset         (460/106020)  {"DatasetName", "TemplateId", ...}
POST /datasetbinding        CreateDatasetBinding  (460/106159)  {"DatasetName", "URI": "cos://<bucket>"}
POST /filemeta              CreateFileMetaIndex   (460/106022)  {"DatasetName", "File": {"URI"}}
POST /datasetquery/simple   DatasetSimpleQuery    (460/106375)  {"DatasetName", "Query", "MaxResults",
                                                                 "NextToken", "Aggregations", ...}

Requests and answers are JSON, as the pages show. What the emulator models:
- A binding indexes new files in near real time: an object uploaded, or whose tags or metadata
  change, after the binding is visible to queries at once. Objects already in the bucket when it
  was bound are not, until CreateFileMetaIndex names them (one request per object).
- Query operators and, or, not, eq, lt, lte, gt, gte, exist, prefix, match-phrase (a substring
  here: the service's tokenization is not documented); at most 100 sub-queries, nesting at most 5.
- Fields URI, Filename (the key), ETag, Size, ContentType, COSStorageClass, FileModifiedTime,
  COSTaggingCount, COSTagging.<tag key> and COSUserMeta.<key without x-cos-meta-> (one reading of
  points the pages leave open; `dataset_query.py` asks in both).
- `MaxResults` 1-100 files per page (0 or absent: 100) with an opaque `NextToken`; Aggregations
  `count` (files with the field) and `group` (files per value, most first, at most 2000 groups),
  which answer instead of `Files`; several in one request. `group` on a whole map (`COSTagging`)
  is refused: the pages document grouping by a field's value, not by tag keys.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cos_autotag import cos_facts

from .backend import Backend, iso_time
from .errors import CosError
from .messages import Request, Response
from .store import ObjectState

MAX_RESULTS = 100
MAX_GROUPS = 2000
MAX_SUB_QUERIES = 100
MAX_DEPTH = 5
LOGICAL = ("and", "or", "not")
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


@dataclass
class _Dataset:
    name: str
    template: str
    created: float
    bindings: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # bucket -> pre-binding state
    indexed: set[tuple[str, str]] = field(default_factory=set)  # (bucket, key) named by CreateFileMetaIndex


class Datasets:
    """The account's datasets (one emulator serves one account)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._datasets: dict[str, _Dataset] = {}

    def create(self, name: str, template: str) -> _Dataset:
        with self._lock:
            if name in self._datasets:
                raise CosError("DatasetAlreadyExist", f"dataset {name} already exists", 409)
            dataset = self._datasets[name] = _Dataset(name, template, time.time())
            return dataset

    def get(self, name: str) -> _Dataset:
        with self._lock:
            dataset = self._datasets.get(name)
        if dataset is None:
            raise CosError("DatasetNotFound", f"dataset {name} does not exist: create it first", 404)
        return dataset


def _fingerprint(state: ObjectState) -> tuple[Any, ...]:
    return (state.etag, state.last_modified, tuple(sorted(state.tags.items())), tuple(sorted(state.metadata.items())))


def _json(data: Mapping[str, Any], req: Request, status: int = 200) -> Response:
    body = json.dumps({**data, "RequestId": req.request_id}, ensure_ascii=False).encode()
    return Response(status, {"Content-Type": "application/json"}, body)


def _body(req: Request) -> dict[str, Any]:
    try:
        data = json.loads(req.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CosError("InvalidArgument", f"the request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CosError("InvalidArgument", "the request body must be a JSON object")
    return data


def _name(data: Mapping[str, Any]) -> str:
    name = data.get("DatasetName")
    if not isinstance(name, str) or not name:
        raise CosError("InvalidArgument", "DatasetName is required")
    return name


def _bucket_of(backend: Backend, uri: Any) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("cos://"):
        raise CosError("InvalidArgument", f"URI {uri!r} is not cos://<bucket>[/<key>]")
    bucket, _, key = uri[len("cos://") :].partition("/")
    if backend.store.bucket_region(bucket) is None:
        raise CosError("NoSuchBucket", f"The specified bucket {bucket} does not exist.", 404)
    return bucket, key


def create_dataset(backend: Backend, req: Request) -> Response:
    data = _body(req)
    dataset = backend.datasets.create(_name(data), str(data.get("TemplateId") or "Official:Empty"))
    return _json({"Dataset": {"DatasetName": dataset.name, "TemplateId": dataset.template,
                              "CreateTime": iso_time(dataset.created)}}, req)  # fmt: skip


def create_binding(backend: Backend, req: Request) -> Response:
    data = _body(req)
    dataset = backend.datasets.get(_name(data))
    bucket, _ = _bucket_of(backend, data.get("URI"))
    if bucket not in dataset.bindings:
        if len(dataset.bindings) >= 10:
            raise CosError("InvalidArgument", "a dataset takes at most 10 bindings")
        before = {}
        for key in list(backend.store.keys_from(bucket, "", "")):
            state = backend.store.get(bucket, key, with_body=False)
            if state is not None:
                before[key] = _fingerprint(state)
        dataset.bindings[bucket] = before
    return _json({"Binding": {"URI": f"cos://{bucket}", "State": "Running", "DatasetName": dataset.name}}, req)


def create_file_meta_index(backend: Backend, req: Request) -> Response:
    data = _body(req)
    dataset = backend.datasets.get(_name(data))
    file = data.get("File")
    if not isinstance(file, Mapping):
        raise CosError("InvalidArgument", 'File is required: {"URI": "cos://<bucket>/<key>"}')
    bucket, key = _bucket_of(backend, file.get("URI"))
    if backend.store.get(bucket, key, with_body=False) is None:
        raise CosError("NoSuchKey", "The specified key does not exist.", 404)
    dataset.indexed.add((bucket, key))
    return _json({"EventId": req.request_id}, req)


def _document(state: ObjectState) -> dict[str, Any]:
    prefix = cos_facts.USER_META_PREFIX
    return {
        "URI": f"cos://{state.bucket}/{state.key}",
        "Filename": state.key,
        "ETag": state.etag,
        "Size": state.size,
        "ContentType": state.content_type or "",
        "COSStorageClass": state.storage_class,
        "FileModifiedTime": iso_time(state.last_modified),
        "COSTagging": dict(state.tags),
        "COSTaggingCount": len(state.tags),
        "COSUserMeta": {k[len(prefix) :]: v for k, v in state.metadata.items() if k.startswith(prefix)},
    }


def _documents(backend: Backend, dataset: _Dataset) -> list[dict[str, Any]]:
    """The dataset's files as indexed now, in URI order."""
    docs = []
    for bucket, before in dataset.bindings.items():
        for key in list(backend.store.keys_from(bucket, "", "")):
            state = backend.store.get(bucket, key, with_body=False)
            if state is None:
                continue
            if (bucket, key) in dataset.indexed or before.get(key) != _fingerprint(state):
                docs.append(_document(state))
    return docs


def _field(doc: Mapping[str, Any], name: str) -> Any:
    for map_name in ("COSTagging", "COSUserMeta"):
        if name.startswith(map_name + "."):
            return doc[map_name].get(name[len(map_name) + 1 :])
    return doc.get(name)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check(query: Any, depth: int = 1) -> int:
    """Validate a query container; answer how many sub-queries it holds."""
    if not isinstance(query, Mapping):
        raise CosError("InvalidArgument", "Query must be an object")
    if depth > MAX_DEPTH:
        raise CosError("InvalidArgument", f"sub-queries nest at most {MAX_DEPTH} deep")
    op = query.get("Operation")
    if op in LOGICAL:
        subs = query.get("SubQueries")
        if not isinstance(subs, list) or not subs or (op == "not" and len(subs) != 1):
            raise CosError("InvalidArgument", f"{op} needs SubQueries" + (" (exactly one)" if op == "not" else ""))
        return len(subs) + sum(_check(sub, depth + 1) for sub in subs)
    if op not in (*COMPARE, "exist", "prefix", "match-phrase"):
        raise CosError("InvalidArgument", f"Operation {op!r} is not supported")
    if not isinstance(query.get("Field"), str) or not query["Field"]:
        raise CosError("InvalidArgument", f"{op} needs a Field")
    if op != "exist" and not isinstance(query.get("Value"), str):
        raise CosError("InvalidArgument", f"{op} needs a Value (a string)")
    return 0


def _matches(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    op = query["Operation"]
    if op == "and":
        return all(_matches(sub, doc) for sub in query["SubQueries"])
    if op == "or":
        return any(_matches(sub, doc) for sub in query["SubQueries"])
    if op == "not":
        return not _matches(query["SubQueries"][0], doc)
    value = _field(doc, query["Field"])
    if op == "exist":
        return value is not None
    if value is None:
        return False
    wanted = query["Value"]
    if op == "prefix":
        return str(value).startswith(wanted)
    if op == "match-phrase":
        return wanted.casefold() in str(value).casefold()
    a, b = _number(value), _number(wanted)
    if a is not None and b is not None:
        return COMPARE[op](a, b)
    return COMPARE[op](str(value), wanted)


def simple_query(backend: Backend, req: Request) -> Response:
    data = _body(req)
    dataset = backend.datasets.get(_name(data))
    query = data.get("Query")
    if query is not None and _check(query) > MAX_SUB_QUERIES:
        raise CosError("InvalidArgument", f"at most {MAX_SUB_QUERIES} sub-queries")
    try:
        max_results = int(data.get("MaxResults") or 0)
    except (TypeError, ValueError) as exc:
        raise CosError("InvalidArgument", "MaxResults must be a number") from exc
    aggregations = data.get("Aggregations")
    limit = MAX_GROUPS if aggregations else MAX_RESULTS
    if not 0 <= max_results <= limit:
        raise CosError("InvalidArgument", f"MaxResults must be 0 to {limit}")
    docs = [d for d in _documents(backend, dataset) if query is None or _matches(query, d)]
    if aggregations:
        return _json({"Aggregations": [_aggregate(a, docs, max_results or MAX_RESULTS) for a in aggregations]}, req)
    start = _offset(data.get("NextToken"))
    page = docs[start : start + (max_results or MAX_RESULTS)]
    end = start + len(page)
    token = base64.urlsafe_b64encode(f"{dataset.name}:{end}".encode()).decode() if end < len(docs) else ""
    files = [{**d, "DatasetName": dataset.name} for d in page]
    return _json({"Files": files, "NextToken": token}, req)


def _offset(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(str(token)).decode().rpartition(":")[2])
    except ValueError as exc:
        raise CosError("InvalidArgument", "NextToken is not one this dataset gave") from exc


def _aggregate(aggregation: Any, docs: list[dict[str, Any]], max_groups: int) -> dict[str, Any]:
    if not isinstance(aggregation, Mapping) or not isinstance(aggregation.get("Field"), str):
        raise CosError("InvalidArgument", "each Aggregations item needs a Field and an Operation")
    name, op = aggregation["Field"], aggregation.get("Operation")
    if op == "group" and name in ("COSTagging", "COSUserMeta"):
        # `group` counts files per value of a field (460/106154); a map's keys are not values.
        raise CosError("InvalidArgument", f"group takes a field with a value, such as {name}.<key>, not {name}")
    values = [v for v in (_field(d, name) for d in docs) if v is not None]
    if op == "count":
        return {"Field": name, "Operation": op, "Value": len(values)}
    if op == "group":
        counts: dict[str, int] = {}
        for value in values:
            counts[str(value)] = counts.get(str(value), 0) + 1
        groups = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_groups]
        return {"Field": name, "Operation": op, "Groups": [{"Value": v, "Count": c} for v, c in groups]}
    raise CosError("InvalidArgument", f"aggregation {op!r} is not emulated (count, group are)")


OPERATIONS: dict[tuple[str, str], Callable[[Backend, Request], Response]] = {
    ("POST", "/dataset"): create_dataset,
    ("POST", "/datasetbinding"): create_binding,
    ("POST", "/filemeta"): create_file_meta_index,
    ("POST", "/datasetquery/simple"): simple_query,
}
NAMES = {
    "/dataset": "CreateDataset",
    "/datasetbinding": "CreateDatasetBinding",
    "/filemeta": "CreateFileMetaIndex",
    "/datasetquery/simple": "DatasetSimpleQuery",
}
