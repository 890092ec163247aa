"""The function wired to the local emulator, as tests and the demo use it.

`Stack` starts an emulator with a label engine, creates the bucket, and builds the real
`App` (the object behind `index.main_handler`) with settings and credentials pointing at it.
Nothing is patched: the SDK talks HTTP to 127.0.0.1 and the emulator checks its signatures.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from qcloud_cos import CosConfig, CosS3Client

from cos_autotag.handler import App
from cos_autotag.settings import Settings
from cos_autotag_tools.emulator import Emulator, Faults
from cos_autotag_tools.labels import DeterministicEngine

BUCKET = "photos-1250000000"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDfunctiontest0001"
SECRET_KEY = "fn-secret-key-0123456789abcdef"
TOKEN = "fn-session-token-abcdefghijklmnop"


def jpeg(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    """A small real JPEG whose content (and so its deterministic labels) depends on `seed`."""
    from PIL import Image

    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], 0), (255 - seed % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class Stack:
    def __init__(self, emulator: Emulator, engine: DeterministicEngine) -> None:
        self.emulator, self.engine = emulator, engine
        self.env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
        self.client = CosS3Client(CosConfig(**emulator.sdk_config(REGION, secret_id=SECRET_ID)), retry=0)

    def settings(self, **changes: Any) -> Settings:
        base = Settings(cos_endpoint=("http", "127.0.0.1", self.emulator.port), min_confidence=10)
        return replace(base, **changes)

    def app(self, **changes: Any) -> App:
        return App(self.settings(**changes), env=self.env)

    def put(self, key: str, body: bytes, content_type: str = "image/jpeg", **kwargs: Any) -> str:
        """Upload with the SDK; answer the upload's x-cos-request-id, as the event carries it."""
        headers = self.client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type, **kwargs)
        return str(headers["x-cos-request-id"])

    def event(
        self,
        key: str,
        request_id: str,
        *,
        event_name: str = "cos:ObjectCreated:Put",
        content_type: str = "image/jpeg",
        size: int | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """An event in the SCF COS trigger shape (see tests/fixtures/events/put.json)."""
        state = self.emulator.get_object_state(BUCKET, key)
        obj_meta = {"x-cos-request-id": request_id, "Content-Type": content_type, **(meta or {})}
        return {
            "Records": [
                {
                    "cos": {
                        "cosSchemaVersion": "1.0",
                        "cosObject": {
                            "url": f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{quote(key)}",
                            "meta": obj_meta,
                            "vid": "",
                            "key": f"/1250000000/photos/{key}",
                            "size": size if size is not None else (state.size if state else 0),
                        },
                        "cosBucket": {"region": "gz", "name": "photos", "appid": "1250000000"},
                        "cosNotificationId": "unkown",
                    },
                    "event": {
                        "eventName": event_name,
                        "eventVersion": "1.0",
                        "eventTime": 1732420000,
                        "eventSource": "qcs::cos",
                        "requestParameters": {
                            "requestSourceIP": "127.0.0.1",
                            "requestHeaders": {"Authorization": "q-sign-algorithm=sha1&q-signature=deadbeef00"},
                        },
                        "eventQueue": "qcs:0:scf:gz:appid/1250000000:default.cos-autotag.$LATEST",
                        "reservedInfo": "",
                        "reqid": 1,
                    },
                }
            ]
        }

    def tags(self, key: str) -> dict[str, str]:
        state = self.emulator.get_object_state(BUCKET, key)
        assert state is not None, f"{key} is gone"
        return dict(state.tags)

    def calls(self, key: str, since: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for request in self.emulator.requests:
            if request.key == key and request.timestamp >= since and request.op != "PutObject":
                out[request.op] = out.get(request.op, 0) + 1
        return out


def context(time_limit_ms: int = 30000) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "function_name": "cos-autotag",
        "memory_limit_in_mb": 128,
        "time_limit_in_ms": time_limit_ms,
    }


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every JSON log line written while inside, parsed (a non-JSON line fails the test)."""
    buffer = io.StringIO()
    lines: list[dict[str, Any]] = []
    with redirect_stdout(buffer):
        yield lines
    for line in buffer.getvalue().splitlines():
        if line.strip():
            lines.append(json.loads(line))


@contextmanager
def running_stack(faults: Faults | None = None, token: str | None = None, delivery_workers: int = 4) -> Iterator[Stack]:
    """`delivery_workers`: how many invocations the trigger runs at once (SCF's concurrency)."""
    engine = DeterministicEngine(require_image_signature=True)
    emulator = Emulator(
        credentials={SECRET_ID: SECRET_KEY},
        token=token,
        label_engine=engine,
        faults=faults,
        delivery_workers=delivery_workers,
    )
    emulator.start()
    try:
        emulator.create_bucket(BUCKET, REGION)
        stack = Stack(emulator, engine)
        if token:
            stack.env["TENCENTCLOUD_SESSIONTOKEN"] = token
        yield stack
    finally:
        emulator.stop()
