"""A local stand-in for SCF's `Invoke` API (Tencent Cloud API 3.0), for testing --via-scf.

It checks every request's TC3-HMAC-SHA256 signature the way API 3.0 defines it (canonical
request, credential scope `<date>/scf/tc3_request`, signed headers, X-TC-Timestamp within five
minutes), answers in the API's JSON shape, and runs a handler for each invocation: at once for
RequestResponse, on worker threads for Event, with SCF's asynchronous retry policy (a handler
that raises runs again, up to `retry_num` more times). Point tencentcloud-sdk-python at it with
`HttpProfile(protocol="http", endpoint="127.0.0.1:<port>")`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cos_autotag_tools import cos_facts
from cos_autotag_tools.scf_context import DEFAULT_UIN, scf_context

HOST = "127.0.0.1"
ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = cos_facts.SCF_API_SERVICE
API_VERSION = cos_facts.SCF_API_VERSION
MAX_CLOCK_SKEW_S = cos_facts.TC3_MAX_CLOCK_SKEW_S
JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
INVOCATION_TYPES = ("Event", "RequestResponse")
DEFAULT_APPID = "1250000000"

Handler = Callable[[dict[str, Any], dict[str, Any]], Any]

_AUTHORIZATION_RE = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/,\s]+)"
    r"/tc3_request, ?SignedHeaders=(?P<signed>[a-z0-9;_.-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)


class ApiError(Exception):
    """An API 3.0 error: answered as {"Response": {"Error": {"Code", "Message"}, "RequestId"}}."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


# --- the signature, as Tencent Cloud API 3.0 defines it ------------------------------------------


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def canonical_request(
    method: str, uri: str, query: str, headers: Mapping[str, str], signed_headers: list[str], payload: bytes
) -> str:
    """Method, URI, query, `name:value` of each signed header (lower-cased, trimmed), the signed
    header list, and the payload's SHA-256, one per line."""
    lowered = {name.lower(): value for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '').strip().lower()}\n" for name in signed_headers)
    return "\n".join([method, uri, query, canonical_headers, ";".join(signed_headers), _sha256_hex(payload)])


def string_to_sign(timestamp: str, date: str, service: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, timestamp, f"{date}/{service}/tc3_request", _sha256_hex(canonical.encode("utf-8"))])


def tc3_signature(secret_key: str, date: str, service: str, to_sign: str) -> str:
    """HMAC chain: "TC3"+key -> date -> service -> "tc3_request" -> the string to sign."""
    secret_date = _hmac_sha256(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = _hmac_sha256(secret_date, service)
    secret_signing = _hmac_sha256(secret_service, "tc3_request")
    return hmac.new(secret_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# --- what the stand-in records --------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One API request and how it was answered."""

    action: str
    request_id: str
    error_code: str  # "" when it succeeded
    secret_id: str
    function_name: str
    invocation_type: str
    at: float


@dataclass(frozen=True)
class ScfInvocation:
    """One run of the handler (a retry is another run with the same request id)."""

    request_id: str  # FunctionRequestId: the same across the retries of one invocation
    function_name: str
    invocation_type: str
    event: dict[str, Any]
    attempt: int  # 1, then 2 for the first retry, ...
    outcome: str  # "ok" | "error"
    error: str | None
    result: Any
    started_at: float
    duration_s: float

    @property
    def keys(self) -> list[str]:
        """The object keys of a COS event's records (without the /<appid>/<name>/ prefix)."""
        out = []
        for record in self.event.get("Records", []):
            cos = record["cos"]
            prefix = f"/{cos['cosBucket']['appid']}/{cos['cosBucket']['name']}/"
            key = cos["cosObject"]["key"]
            out.append(key[len(prefix) :] if key.startswith(prefix) else key)
        return out


@dataclass
class _Job:
    request_id: str
    function_name: str
    qualifier: str
    event: dict[str, Any]
    region: str
    attempt: int = 1


class ScfApi:
    """The SCF API's `Invoke` on 127.0.0.1, running `handler(event, context)` for each invocation."""

    def __init__(
        self,
        handler: Handler,
        credentials: Mapping[str, str],
        *,
        token: str | None = None,
        functions: tuple[str, ...] = ("cos-autotag",),
        namespace: str = "default",
        regions: tuple[str, ...] | None = None,  # None: any region name is served
        workers: int = 4,
        retry_num: int = cos_facts.SCF_DEFAULT_RETRY_NUM,
        retry_delay_s: float = 0.0,  # SCF waits a minute; tests do not
        time_limit_ms: int = 30000,
        memory_mb: int = 128,
        appid: str = DEFAULT_APPID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not credentials:
            raise ValueError("credentials must hold at least one SecretId: SecretKey pair")
        if workers < 1 or retry_num < 0 or retry_delay_s < 0:
            raise ValueError("workers must be >= 1; retry_num and retry_delay_s >= 0")
        self.handler = handler
        self.credentials = dict(credentials)
        self.token = token
        self.functions, self.namespace, self.regions = functions, namespace, regions
        self.retry_num, self.retry_delay_s = retry_num, retry_delay_s
        self.time_limit_ms, self.memory_mb, self.appid = time_limit_ms, memory_mb, appid
        self._clock = clock
        self._workers = workers
        self._lock = threading.Condition()
        self._calls: list[ApiCall] = []
        self._invocations: list[ScfInvocation] = []
        self._outstanding = 0  # queued, running or waiting for a retry
        self._reject: list[tuple[str, str]] = []  # injected answers for the next Invoke calls
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        if self._server is not None:
            raise RuntimeError("already serving")
        if self._stopped:
            raise RuntimeError("a stopped ScfApi cannot restart; build a new one")
        api = self

        class _Bound(_RequestHandler):
            pass

        _Bound.api = api
        self._server = ThreadingHTTPServer((HOST, port), _Bound)
        self._server.daemon_threads = True
        serve = threading.Thread(target=self._server.serve_forever, name="scf-api", daemon=True)
        serve.start()
        self._threads.append(serve)
        for i in range(self._workers):
            worker = threading.Thread(target=self._work_loop, name=f"scf-worker-{i}", daemon=True)
            worker.start()
            self._threads.append(worker)
        return self.port

    def stop(self) -> None:
        """Stop serving and running; queued invocations are dropped. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for _ in range(self._workers):
            self._jobs.put(None)
        with self._lock:
            self._lock.notify_all()

    def __enter__(self) -> ScfApi:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not serving; call start() first")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    # --- observing and faults -------------------------------------------------------------------------

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    @property
    def invocations(self) -> list[ScfInvocation]:
        """Every handler run so far, retries included, in completion order."""
        with self._lock:
            return list(self._invocations)

    def reject_next(
        self, count: int, code: str = cos_facts.API_THROTTLE_CODE, message: str = "too many requests"
    ) -> None:
        """Answer the next `count` Invoke calls (after their signature checks) with this error."""
        with self._lock:
            self._reject.extend([(code, message)] * count)

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until every asynchronous invocation (retries included) has finished."""
        end = time.monotonic() + timeout_s
        with self._lock:
            while self._outstanding > 0 and not self._stopped:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._outstanding} asynchronous invocation(s) still pending")
                self._lock.wait(left)

    # --- one request ------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[dict[str, Any], ApiCall]:
        """Answer one API request: (the JSON answer, the call record)."""
        request_id = str(uuid.uuid4())
        lowered = {k.lower(): v for k, v in headers.items()}
        action = lowered.get("x-tc-action", "")
        secret_id, params = "", {}
        try:
            secret_id = self._authenticate(method, target, lowered, body)
            params = self._params(method, target, lowered, body)
            result = self._dispatch(action, lowered.get("x-tc-version", ""), params, lowered.get("x-tc-region", ""))
            answer: dict[str, Any] = {"Response": {**result, "RequestId": request_id}}
            error_code = ""
        except ApiError as error:
            answer = {"Response": {"Error": {"Code": error.code, "Message": error.message}, "RequestId": request_id}}
            error_code = error.code
        call = ApiCall(
            action=action,
            request_id=request_id,
            error_code=error_code,
            secret_id=secret_id,
            function_name=str(params.get("FunctionName") or ""),
            invocation_type=str(params.get("InvocationType") or ""),
            at=time.time(),
        )
        with self._lock:
            self._calls.append(call)
        return answer, call

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> str:
        auth = headers.get("authorization", "")
        match = _AUTHORIZATION_RE.match(auth.strip())
        if match is None:
            raise ApiError("AuthFailure.InvalidAuthorization", "the Authorization header is not TC3-HMAC-SHA256")
        secret_id, date, service = match.group("secret_id"), match.group("date"), match.group("service")
        signed = match.group("signed").split(";")
        secret_key = self.credentials.get(secret_id)
        if secret_key is None:
            raise ApiError("AuthFailure.SecretIdNotFound", f"the SecretId {secret_id} is not found")
        timestamp = headers.get("x-tc-timestamp", "")
        if not timestamp.isdigit():
            raise ApiError("MissingParameter", "the X-TC-Timestamp header is missing or not a number")
        if abs(self._clock() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            raise ApiError("AuthFailure.SignatureExpire", "the signature has expired: check the clock")
        if service != SERVICE:
            raise ApiError("AuthFailure.SignatureFailure", f"the credential scope names service {service!r}")
        if date != datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%d"):
            raise ApiError("AuthFailure.SignatureFailure", "the credential date is not X-TC-Timestamp's UTC date")
        if "content-type" not in signed or "host" not in signed or signed != sorted(signed):
            raise ApiError("AuthFailure.SignatureFailure", "SignedHeaders must list content-type and host, sorted")
        parts = urlsplit(target)
        query, payload = (parts.query, b"") if method == "GET" else ("", body)
        canonical = canonical_request(method, parts.path or "/", query, headers, signed, payload)
        expected = tc3_signature(secret_key, date, service, string_to_sign(timestamp, date, service, canonical))
        if not hmac.compare_digest(expected, match.group("signature")):
            raise ApiError("AuthFailure.SignatureFailure", "the request signature does not match")
        if self.token is not None and headers.get("x-tc-token", "") != self.token:
            raise ApiError("AuthFailure.TokenFailure", "the X-TC-Token is missing or wrong")
        return secret_id

    def _params(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if method == "GET":
            return dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        if method != "POST":
            raise ApiError("UnsupportedProtocol", f"HTTP method {method} is not supported: use POST or GET")
        if content_type != JSON_CONTENT_TYPE:
            raise ApiError("InvalidParameter", f"Content-Type {content_type!r}: POST takes application/json")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("InvalidParameter", "the request body is not JSON") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "the request body is not a JSON object")
        return params

    def _dispatch(self, action: str, version: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        if not action:
            raise ApiError("MissingParameter", "the X-TC-Action header is missing")
        if not version:
            raise ApiError("MissingParameter", "the X-TC-Version header is missing")
        if version != API_VERSION:
            raise ApiError("NoSuchVersion", f"SCF has no API version {version} (it is {API_VERSION})")
        if action != "Invoke":
            raise ApiError("InvalidAction", f"the action {action} is not served here (only Invoke)")
        if not region:
            raise ApiError("MissingParameter", "the X-TC-Region header is missing")
        if self.regions is not None and region not in self.regions:
            raise ApiError("UnsupportedRegion", f"the region {region} is not served")
        return self._invoke(params, region)

    def _invoke(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params.get("FunctionName")
        if not name:
            raise ApiError("MissingParameter", "FunctionName is required")
        if str(params.get("Namespace") or "default") != self.namespace:
            raise ApiError("ResourceNotFound.Namespace", f"the namespace {params.get('Namespace')} does not exist")
        if name not in self.functions:
            raise ApiError("ResourceNotFound.Function", f"the function {name} does not exist")
        invocation_type = str(params.get("InvocationType") or "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            raise ApiError("InvalidParameterValue.InvocationType", f"InvocationType {invocation_type!r}")
        raw = params.get("ClientContext") or "{}"
        limit = (
            cos_facts.SCF_ASYNC_EVENT_MAX_BYTES if invocation_type == "Event" else cos_facts.SCF_SYNC_EVENT_MAX_BYTES
        )
        if not isinstance(raw, str) or len(raw.encode("utf-8")) > limit:
            raise ApiError(
                "InvalidParameterValue.ClientContext", f"ClientContext must be JSON of at most {limit} bytes"
            )
        try:
            event = json.loads(raw)
        except ValueError:
            raise ApiError("InvalidParameterValue.ClientContext", "ClientContext is not JSON") from None
        if not isinstance(event, dict):
            raise ApiError("InvalidParameterValue.ClientContext", "ClientContext is not a JSON object")
        with self._lock:
            if self._reject:
                code, message = self._reject.pop(0)
                raise ApiError(code, message)
        job = _Job(str(uuid.uuid4()), str(name), str(params.get("Qualifier") or "$LATEST"), event, region)
        if invocation_type == "Event":
            with self._lock:
                self._outstanding += 1
            self._jobs.put(job)
            return {"Result": _result(job.request_id)}
        run = self._run(job, "RequestResponse")
        ret = json.dumps(run.result, ensure_ascii=False) if run.outcome == "ok" else ""
        return {
            "Result": _result(
                job.request_id,
                ret_msg=ret,
                err_msg=run.error or "",
                invoke_result=0 if run.outcome == "ok" else -1,
                duration_ms=run.duration_s * 1000,
            )
        }

    # --- running the handler -------------------------------------------------------------------------

    def _context(self, job: _Job) -> dict[str, Any]:
        return scf_context(
            request_id=job.request_id,
            function_name=job.function_name,
            function_version=job.qualifier,
            namespace=self.namespace,
            memory_limit_in_mb=self.memory_mb,
            time_limit_in_ms=self.time_limit_ms,
            region=job.region,
            appid=self.appid,
            uin=DEFAULT_UIN,
        )

    def _run(self, job: _Job, invocation_type: str) -> ScfInvocation:
        started_at, start = time.time(), time.monotonic()
        result: Any = None
        error: str | None = None
        try:
            # A copy per attempt: a handler that changes its event must not change the retry's.
            result = self.handler(copy.deepcopy(job.event), self._context(job))
            json.dumps(result)  # SCF serialises the return value; if it cannot, the run failed
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        run = ScfInvocation(
            request_id=job.request_id,
            function_name=job.function_name,
            invocation_type=invocation_type,
            event=job.event,
            attempt=job.attempt,
            outcome="ok" if error is None else "error",
            error=error,
            result=result if error is None else None,
            started_at=started_at,
            duration_s=time.monotonic() - start,
        )
        with self._lock:
            self._invocations.append(run)
        return run

    def _work_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            run = self._run(job, "Event")
            if run.outcome == "error" and job.attempt <= self.retry_num and not self._stopped:
                job.attempt += 1
                timer = threading.Timer(self.retry_delay_s, self._jobs.put, args=(job,))
                timer.daemon = True
                timer.start()
                continue
            with self._lock:
                self._outstanding -= 1
                self._lock.notify_all()


def _result(
    request_id: str, *, ret_msg: str = "", err_msg: str = "", invoke_result: int = 0, duration_ms: float = 0.0
) -> dict[str, Any]:
    return {
        "FunctionRequestId": request_id,
        "InvokeResult": invoke_result,
        "RetMsg": ret_msg,
        "ErrMsg": err_msg,
        "Log": "",
        "Duration": round(duration_ms, 3),
        "BillDuration": int(duration_ms + 0.999),
        "MemUsage": 0,
    }


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: ScfApi

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every call is in ScfApi.calls

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        answer, _ = self.api.handle(self.command, self.path, dict(self.headers.items()), body)
        data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        # API 3.0 answers 200 with the error inside; the SDK reads JSON only under this exact type.
        self.send_response(200)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST
