"""A thin stand-in for SCF's `Invoke` API (Tencent Cloud API 3.0), for testing --via-scf over HTTP.

It checks the TC3-HMAC-SHA256 signature (so a wrong key is refused as SCF would), answers in the
API's JSON shape, and runs the handler inline for each accepted invocation. SCF's queue and
retry policy are SCF's business, not the fan-out's: they are not modelled here.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tencentcloud.common.sign import Sign

from cos_autotag_tools import cos_facts

from .scf import context

Handler = Callable[[dict[str, Any], dict[str, Any]], Any]
_AUTH_RE = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>[\d-]+)/(?P<service>\w+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class ApiCall:
    action: str
    error_code: str  # "" when it succeeded
    secret_id: str


@dataclass(frozen=True)
class Invocation:
    event: dict[str, Any]
    outcome: str  # "ok" | "error"
    result: Any

    @property
    def keys(self) -> list[str]:
        """The object keys of a COS event's records (without the /<appid>/<name>/ prefix)."""
        return [r["cos"]["cosObject"]["key"].split("/", 3)[3] for r in self.event.get("Records", [])]


@dataclass
class ScfApi:
    handler: Handler
    credentials: dict[str, str]
    functions: tuple[str, ...] = ("cos-autotag",)
    calls: list[ApiCall] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    endpoint: str = ""
    _reject: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reject_next(self, count: int, code: str, message: str) -> None:
        """Answer the next `count` signed Invoke calls with this error."""
        with self._lock:
            self._reject.extend([(code, message)] * count)

    def answer(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        secret_id = ""
        try:
            secret_id = self._authenticate(headers, body)
            result = self._invoke(json.loads(body))
            error_code, answer = "", {"Result": result}
        except ApiError as error:
            error_code, answer = error.code, {"Error": {"Code": error.code, "Message": str(error)}}
        with self._lock:
            self.calls.append(ApiCall(headers.get("x-tc-action", ""), error_code, secret_id))
        return {"Response": {**answer, "RequestId": "req-" + hashlib.sha1(body).hexdigest()[:12]}}

    def _authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        match = _AUTH_RE.fullmatch(headers.get("authorization", ""))
        if match is None:
            raise ApiError("AuthFailure.InvalidAuthorization", "not a TC3-HMAC-SHA256 Authorization")
        secret_key = self.credentials.get(match["id"])
        if secret_key is None:
            raise ApiError("AuthFailure.SecretIdNotFound", f"the SecretId {match['id']} is not found")
        signed = match["signed"].split(";")
        signed_lines = "".join(f"{h}:{headers.get(h, '')}\n" for h in signed)
        canonical = f"POST\n/\n\n{signed_lines}\n{match['signed']}\n{hashlib.sha256(body).hexdigest()}"
        scope = f"{match['date']}/{match['service']}/tc3_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"TC3-HMAC-SHA256\n{headers.get('x-tc-timestamp', '')}\n{scope}\n{digest}"
        if Sign.sign_tc3(secret_key, match["date"], match["service"], to_sign) != match["signature"]:
            raise ApiError("AuthFailure.SignatureFailure", "the request signature does not match")
        return match["id"]

    def _invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("FunctionName") not in self.functions:
            raise ApiError("ResourceNotFound.Function", f"the function {params.get('FunctionName')} does not exist")
        raw = params.get("ClientContext") or "{}"
        if len(raw.encode()) > cos_facts.SCF_ASYNC_EVENT_MAX_BYTES:
            raise ApiError("InvalidParameterValue.ClientContext", "ClientContext is over the async limit")
        with self._lock:
            if self._reject:
                raise ApiError(*self._reject.pop(0))
        ctx = context(function_name=str(params["FunctionName"]))
        event = json.loads(raw)
        try:
            result, outcome = self.handler(json.loads(raw), ctx), "ok"
        except Exception as error:  # SCF records a failed run; the caller already had its answer
            result, outcome = repr(error), "error"
        with self._lock:
            self.invocations.append(Invocation(event, outcome, result))
        return {"FunctionRequestId": ctx["request_id"], "InvokeResult": 0}


@contextmanager
def serve(api: ScfApi) -> Iterator[ScfApi]:
    """Serve `api` on 127.0.0.1 for the block; its `endpoint` is set while it runs."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # every call is in api.calls

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            data = json.dumps(api.answer(headers, body)).encode()
            self.send_response(200)  # API 3.0 answers 200 with any error inside
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
