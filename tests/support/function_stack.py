"""The function wired to the local emulator, as tests and the demo use it.

`Stack` starts an emulator with a label engine, creates the bucket, and builds the real
`App` (the object behind `index.main_handler`) with settings and credentials pointing at it.
Nothing is patched: the SDK talks HTTP to 127.0.0.1 and the emulator checks its signatures.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from typing import Any

from qcloud_cos import CosConfig, CosS3Client

from cos_autotag.handler import App
from cos_autotag.settings import Settings
from cos_autotag_tools.emulator import Emulator, Faults, Profile
from cos_autotag_tools.labels import DeterministicEngine

from .constants import BUCKET, CREDENTIAL_ENV, REGION, SECRET_ID, SECRET_KEY
from .scf import cos_event


class Stack:
    """A started emulator serving BUCKET, its label engine, and what builds the function against it."""

    def __init__(self, emulator: Emulator, engine: DeterministicEngine) -> None:
        self.emulator, self.engine = emulator, engine
        self.env = dict(CREDENTIAL_ENV)  # a copy: a test may add a session token
        self.client = CosS3Client(CosConfig(**emulator.sdk_config(REGION, secret_id=SECRET_ID)), retry=0)

    def settings(self, **changes: Any) -> Settings:
        base = Settings(cos_endpoint=("http", "127.0.0.1", self.emulator.port), min_confidence=10)
        return base._replace(**changes)

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
        """An event in the SCF COS trigger shape for an upload to `key` (its size unless given)."""
        if size is None:
            state = self.emulator.get_object_state(BUCKET, key)
            size = state.size if state else 0
        return cos_event(
            key,
            request_id,
            size,
            event_name=event_name,
            content_type=content_type,
            meta=meta,
            request_headers={"Authorization": "q-sign-algorithm=sha1&q-signature=deadbeef00"},
        )

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
def running_stack(
    faults: Faults | None = None,
    token: str | None = None,
    delivery_workers: int = 4,
    profile: Profile | None = None,
) -> Iterator[Stack]:
    """`delivery_workers`: how many invocations the trigger runs at once (SCF's concurrency);
    `profile`: which reading of the contested COS rules the emulator plays (tests/support/profiles.py)."""
    engine = DeterministicEngine(require_image_signature=True)
    emulator = Emulator(
        credentials={SECRET_ID: SECRET_KEY},
        token=token,
        label_engine=engine,
        faults=faults,
        delivery_workers=delivery_workers,
        profile=profile,
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
