"""--via-scf: fan a bucket out to the deployed function, as synthetic COS events.

The objects are listed here and sent in batches to SCF's `Invoke` API with
InvocationType=Event, so SCF's own fleet does the labeling. Each record has the shape of a
real COS trigger record, with no upload identity (empty vid and request id): the guard then
treats any marker on the object as done, so an object labeled twice over costs one read.
Invokes are paced so that records go out no faster than the detect-label quota.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cos_autotag.cos_adapter import Credentials
from cos_autotag.eligibility import check_record
from cos_autotag.errors import CosCallError
from cos_autotag.events import MAX_RECORDS_PER_EVENT
from cos_autotag.outcome import Outcome, RecordResult
from cos_autotag.retry import Deadline, call_with_retry
from cos_autotag.settings import Settings
from cos_autotag_tools import cos_facts

from .listing import ListedObject
from .options import Options
from .rate import TokenBucket
from .report import SENT, BackfillResult
from .runner import Backfill

INVOKE_TIMEOUT_S = 30
INVOKE_DEADLINE_S = 120.0
NOTIFICATION_ID = "cos-autotag-backfill"
# Codes of the SCF API (and the SDK's own) that a later attempt may get past.
RETRYABLE_PREFIXES = (cos_facts.API_THROTTLE_CODE, "ResourceUnavailable", "InternalError", "FailedOperation.Invoke")
NETWORK_CODES = frozenset({"ClientNetworkError", "ServerNetworkError"})


class FanoutError(RuntimeError):
    """--via-scf cannot start (the SCF SDK is missing, bad endpoint)."""


class InvokeError(Exception):
    def __init__(self, code: str, message: str, request_id: str) -> None:
        super().__init__(f"Invoke: {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code, self.message, self.request_id = code, message, request_id
        self.retryable = code in NETWORK_CODES or code.startswith(RETRYABLE_PREFIXES)
        self.throttled = code.startswith(cos_facts.API_THROTTLE_CODE)


def synthetic_record(
    bucket: str,
    region: str,
    key: str,
    size: int | None,
    *,
    function: str,
    namespace: str = "default",
    qualifier: str = "$LATEST",
    event_time: int | None = None,
) -> dict[str, Any]:
    """A COS trigger record for an object, as COS would send for a PUT, without an upload identity."""
    match = cos_facts.BUCKET_RE.match(bucket)
    if match is None:
        raise ValueError(f"bucket {bucket!r} is not a <name>-<appid> bucket name")
    name, appid = match.group("name"), match.group("appid")
    short = cos_facts.region_short_code(region)
    cos_object: dict[str, Any] = {
        # The URL is percent-encoded and the key raw: the parser takes the reading both agree on.
        "url": f"http://{cos_facts.cos_host(bucket, region)}/{quote(key, safe='/')}",
        # Empty on purpose: no upload identity, so any marker on the object means "done".
        "meta": {"x-cos-request-id": "", "Content-Type": ""},
        "vid": "",
        "key": f"/{appid}/{name}/{key}",
    }
    if size is not None:
        cos_object["size"] = size
    return {
        "cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": cos_object,
            "cosBucket": {"region": short, "name": name, "appid": appid, "s3Region": region},
            "cosNotificationId": NOTIFICATION_ID,
        },
        "event": {
            "eventName": cos_facts.EVENT_PUT,
            "eventVersion": "1.0",
            "eventTime": int(time.time()) if event_time is None else event_time,
            "eventSource": "qcs::cos",
            "requestParameters": {"requestSourceIP": "", "requestHeaders": {}},
            "eventQueue": f"qcs:0:scf:{short}:appid/{appid}:{namespace}.{function}.{qualifier}",
            "reservedInfo": "",
            "reqid": 0,
        },
    }


def _dumps(obj: Any) -> str:
    # ASCII-only: the size SCF checks is then the same whether it counts characters or bytes.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


@dataclass
class Batch:
    objects: list[ListedObject] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # each record already serialised
    size: int = len(_dumps({"Records": []}))

    def payload(self) -> str:
        return '{"Records":[' + ",".join(self.records) + "]}"


class EventBatcher:
    """Groups records into events of at most `batch_size` records and `max_bytes` of JSON."""

    def __init__(self, batch_size: int, max_bytes: int = cos_facts.SCF_ASYNC_EVENT_MAX_BYTES) -> None:
        if not 1 <= batch_size <= MAX_RECORDS_PER_EVENT:
            raise ValueError(f"batch size must be 1 to {MAX_RECORDS_PER_EVENT}, not {batch_size}")
        self.batch_size, self.max_bytes = batch_size, max_bytes
        self._current = Batch()

    def add(self, obj: ListedObject, record: dict[str, Any]) -> list[Batch]:
        """Add a record; return the batches that are full and ready to send."""
        text = _dumps(record)
        empty = len(_dumps({"Records": []}))
        if empty + len(text) > self.max_bytes:
            raise ValueError(f"the record for {obj.key!r} alone is over the {self.max_bytes}-byte event limit")
        ready: list[Batch] = []
        current = self._current
        extra = len(text) + (1 if current.records else 0)  # the comma between records
        if current.records and current.size + extra > self.max_bytes:
            ready.append(current)
            current = self._current = Batch()
            extra = len(text)
        current.objects.append(obj)
        current.records.append(text)
        current.size += extra
        if len(current.records) >= self.batch_size:
            ready.append(current)
            self._current = Batch()
        return ready

    def flush(self) -> list[Batch]:
        current, self._current = self._current, Batch()
        return [current] if current.records else []


class ScfInvoker:
    """Invokes one function asynchronously through tencentcloud-sdk-python-scf (a client per thread)."""

    def __init__(self, options: Options, credentials: Callable[[], Credentials]) -> None:
        try:
            from tencentcloud.common import credential
            from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
            from tencentcloud.common.profile.client_profile import ClientProfile
            from tencentcloud.common.profile.http_profile import HttpProfile
            from tencentcloud.scf.v20180416 import models, scf_client
        except ImportError as error:
            raise FanoutError(
                "--via-scf needs tencentcloud-sdk-python-scf: install the backfill extra "
                "(pip install 'cos-autotag[backfill]')"
            ) from error
        self._credential, self._profile_types = credential, (ClientProfile, HttpProfile)
        self._client_type, self._models, self._sdk_error = scf_client.ScfClient, models, TencentCloudSDKException
        self.options, self._credentials = options, credentials
        self._local = threading.local()

    def _client(self) -> Any:
        creds = self._credentials()
        cached = getattr(self._local, "client", None)
        if cached is not None and cached[0] == creds:
            return cached[1]
        client_profile, http_profile = self._profile_types
        if self.options.scf_endpoint is not None:
            scheme, host = self.options.scf_endpoint
            http = http_profile(protocol=scheme, endpoint=host, reqTimeout=INVOKE_TIMEOUT_S)
        else:
            http = http_profile(reqTimeout=INVOKE_TIMEOUT_S)
        cred = self._credential.Credential(creds.secret_id, creds.secret_key, creds.token)
        client = self._client_type(cred, self.options.scf_region, client_profile(httpProfile=http))
        self._local.client = (creds, client)
        return client

    def invoke(self, payload: str) -> str:
        """Queue one event; return SCF's request id for the invocation."""
        request = self._models.InvokeRequest()
        request.FunctionName = self.options.via_scf
        request.InvocationType = "Event"
        request.Namespace = self.options.scf_namespace
        request.Qualifier = self.options.scf_qualifier
        request.ClientContext = payload
        try:
            response = self._client().Invoke(request)
        except self._sdk_error as error:
            raise InvokeError(str(error.code), str(error.message), str(error.requestId or "")) from error
        result = getattr(response, "Result", None)
        return str(getattr(result, "FunctionRequestId", "") or getattr(response, "RequestId", "") or "")


def run_via_scf(options: Options, settings: Settings, backfill: Backfill) -> None:
    invoker = ScfInvoker(options, backfill.gateway.credentials)
    # One token per record: the fleet then starts detect-label calls no faster than the quota.
    bucket = TokenBucket(options.qps, max(options.burst, float(options.batch)))
    batcher = EventBatcher(options.batch)
    report, log = backfill.report, backfill.log

    def send(batch: Batch) -> str:
        payload = batch.payload()

        def attempt() -> str:
            bucket.acquire(len(batch.records))
            with calls_lock:
                report.calls["Invoke"] += 1
            try:
                return invoker.invoke(payload)
            except InvokeError as error:
                if error.throttled:
                    bucket.throttled()
                raise

        return call_with_retry(attempt, Deadline(INVOKE_DEADLINE_S))

    calls_lock = threading.Lock()  # the report's counter is updated from the invoking threads
    pending: dict[Future[str], Batch] = {}

    def on_done(future: Future[str], batch: Batch) -> None:
        error = future.exception()
        if error is None:
            report.events_sent += 1
            log.info("event sent", records=len(batch.records), function_request_id=future.result())
            for obj in batch.objects:
                backfill.finish(obj, BackfillResult(options.bucket, obj.key, SENT))
            return
        log.error("invoke failed", error=str(error), keys=[o.key for o in batch.objects])
        code = getattr(error, "code", type(error).__name__)
        for obj in batch.objects:
            backfill.finish(
                obj,
                RecordResult(
                    options.bucket, obj.key, Outcome.FAILED, reason=f"invoke failed: {error}", error_code=str(code)
                ),
            )

    def collect(block_until: str) -> None:
        done, _ = wait(list(pending), return_when=block_until)
        for future in done:
            batch = pending.pop(future)
            if not future.cancelled():
                on_done(future, batch)

    def submit(pool: ThreadPoolExecutor, batch: Batch) -> None:
        while len(pending) >= 2 * options.concurrency:
            collect(FIRST_COMPLETED)
        pending[pool.submit(send, batch)] = batch

    backfill.start_counting()
    completed = False
    try:
        with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="backfill-invoke") as pool:
            try:
                try:
                    for obj in backfill.objects():
                        early = backfill.precheck(obj) or _ineligible(backfill, obj, settings)
                        if early is not None:
                            backfill.finish(obj, early)
                            continue
                        record = synthetic_record(
                            options.bucket,
                            options.region,
                            obj.key,
                            obj.size,
                            function=options.via_scf or "",
                            namespace=options.scf_namespace,
                            qualifier=options.scf_qualifier,
                        )
                        for batch in batcher.add(obj, record):
                            submit(pool, batch)
                    for batch in batcher.flush():
                        submit(pool, batch)
                    completed = True
                except (CosCallError, ValueError) as error:
                    report.aborted = f"listing failed: {error}"
                    log.error("listing failed; stopping after the events in flight", error=str(error))
                while pending:
                    collect(FIRST_COMPLETED)
            except KeyboardInterrupt:
                report.interrupted, completed = True, False
                backfill.stop_counting()
                for future in pending:
                    future.cancel()
                try:
                    while pending:
                        collect(FIRST_COMPLETED)
                except KeyboardInterrupt:
                    pass
    finally:
        report.rate = bucket.stats()
        backfill.close(completed and not report.aborted)


def _ineligible(backfill: Backfill, obj: ListedObject, settings: Settings) -> RecordResult | None:
    """Objects the function would skip by name or size alone are not worth an invocation."""
    verdict = check_record(backfill.record_for(obj), settings)
    if verdict.eligible or verdict.needs_sniff:
        return None
    return RecordResult(backfill.options.bucket, obj.key, Outcome.SKIPPED, reason=verdict.reason)
