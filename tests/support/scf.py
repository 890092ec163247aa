"""What SCF hands the function: the invocation context and COS trigger events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cos_autotag_tools.scf_context import DEFAULT_UIN, scf_context

from .constants import APPID, BUCKET, REGION

EVENTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "events"
# Where a COS trigger record nests the fields the function reads (the fuzz tests change them).
RECORD_FIELDS: list[tuple[str, ...]] = [
    ("cos",),
    ("cos", "cosObject"), ("cos", "cosObject", "key"), ("cos", "cosObject", "url"),
    ("cos", "cosObject", "size"), ("cos", "cosObject", "meta"), ("cos", "cosObject", "vid"),
    ("cos", "cosBucket"), ("cos", "cosBucket", "name"), ("cos", "cosBucket", "appid"), ("cos", "cosBucket", "region"),
    ("event",), ("event", "eventName"), ("event", "eventTime"),
]  # fmt: skip


def context(
    time_limit_ms: int = 30000, *, function_name: str = "cos-autotag", request_id: str | None = None
) -> dict[str, Any]:
    """The context SCF would pass for one invocation in REGION under APPID (a new request id unless given)."""
    return scf_context(
        request_id=request_id,
        function_name=function_name,
        time_limit_in_ms=time_limit_ms,
        region=REGION,
        appid=APPID,
        uin=DEFAULT_UIN,
    )


def load_event(name: str) -> dict[str, Any]:
    """A recorded trigger event from tests/fixtures/events."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def cos_event(
    key: str,
    request_id: str,
    size: int,
    *,
    event_name: str = "cos:ObjectCreated:Put",
    content_type: str = "image/jpeg",
    meta: Mapping[str, str] | None = None,
    request_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One record in the SCF COS trigger shape (tests/fixtures/events/put.json) for `key` in BUCKET;
    `request_id` is the upload's x-cos-request-id, as the event carries it."""
    name = BUCKET.rsplit("-", 1)[0]
    return {
        "Records": [
            {
                "cos": {
                    "cosSchemaVersion": "1.0",
                    "cosObject": {
                        "url": f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{quote(key)}",
                        "meta": {"x-cos-request-id": request_id, "Content-Type": content_type, **(meta or {})},
                        "vid": "",
                        "key": f"/{APPID}/{name}/{key}",
                        "size": size,
                    },
                    "cosBucket": {"region": "gz", "name": name, "appid": APPID},
                    "cosNotificationId": "unkown",
                },
                "event": {
                    "eventName": event_name,
                    "eventVersion": "1.0",
                    "eventTime": 1732420000,
                    "eventSource": "qcs::cos",
                    "requestParameters": {
                        "requestSourceIP": "127.0.0.1",
                        "requestHeaders": dict(request_headers or {}),
                    },
                    "eventQueue": f"qcs:0:scf:gz:appid/{APPID}:default.cos-autotag.$LATEST",
                    "reservedInfo": "",
                    "reqid": 1,
                },
            }
        ]
    }
