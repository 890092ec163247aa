"""--via-scf: fan-out through the real tencentcloud SDK to a local stand-in of SCF's Invoke API,
which checks the TC3-HMAC-SHA256 signature and runs the real handler against the emulator."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign
from tencentcloud.scf.v20180416 import models, scf_client

from cos_autotag.handler import App
from cos_autotag.settings import Settings
from cos_autotag_tools import cos_facts
from cos_autotag_tools.backfill import run_backfill
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator
from cos_autotag_tools.scf_api import ScfApi
from tests.support.constants import APPID, REGION, SECRET_ID, SECRET_KEY
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration

BUCKET = f"fanout-{APPID}"
FUNCTION = "cos-autotag"
IMAGES = [f"f/{i:03d}.jpg" for i in range(12)]


# --- the stand-in on its own, through the real SDK ------------------------------------------------


def sdk_client(api: ScfApi, secret_key: str = SECRET_KEY, token: str | None = None) -> scf_client.ScfClient:
    http = HttpProfile(protocol="http", endpoint=f"127.0.0.1:{api.port}", reqTimeout=10)
    return scf_client.ScfClient(
        credential.Credential(SECRET_ID, secret_key, token), REGION, ClientProfile(httpProfile=http)
    )


def invoke_request(event: dict[str, Any], function: str = FUNCTION, kind: str = "Event") -> models.InvokeRequest:
    request = models.InvokeRequest()
    request.FunctionName, request.InvocationType, request.Namespace = function, kind, "default"
    request.ClientContext = json.dumps(event)
    return request


@pytest.fixture
def echo_api() -> Iterator[tuple[ScfApi, list[tuple[dict[str, Any], dict[str, Any]]]]]:
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def handler(event: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        seen.append((event, context))
        return {"echo": event}

    with ScfApi(handler, {SECRET_ID: SECRET_KEY}) as api:
        yield api, seen


def test_a_signed_async_invoke_runs_the_handler_with_the_event(echo_api: Any) -> None:
    api, seen = echo_api
    response = sdk_client(api).Invoke(invoke_request({"hello": "world"}))
    assert response.Result.InvokeResult == 0 and response.Result.FunctionRequestId
    api.wait_idle(10)
    ((event, context),) = seen
    assert event == {"hello": "world"}
    assert context["request_id"] == response.Result.FunctionRequestId
    assert context["function_name"] == FUNCTION and context["tencentcloud_region"] == REGION
    (call,) = api.calls
    assert (call.action, call.error_code, call.secret_id, call.invocation_type) == ("Invoke", "", SECRET_ID, "Event")


def test_a_synchronous_invoke_returns_the_handlers_result(echo_api: Any) -> None:
    api, _ = echo_api
    response = sdk_client(api).Invoke(invoke_request({"n": 1}, kind="RequestResponse"))
    assert json.loads(response.Result.RetMsg) == {"echo": {"n": 1}}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret_key": "not-the-key"}, "AuthFailure.SignatureFailure"),
        ({"function": "no-such-function"}, "ResourceNotFound.Function"),
    ],
)
def test_the_api_refuses_with_api_3_errors(echo_api: Any, change: dict[str, str], code: str) -> None:
    api, seen = echo_api
    client = sdk_client(api, secret_key=change.get("secret_key", SECRET_KEY))
    with pytest.raises(TencentCloudSDKException) as error:
        client.Invoke(invoke_request({"x": 1}, function=change.get("function", FUNCTION)))
    assert error.value.code == code
    assert error.value.requestId  # every answer carries a RequestId
    api.wait_idle(5)
    assert seen == []


def test_an_unknown_secret_id_and_a_wrong_token_are_refused() -> None:
    with ScfApi(lambda e, c: None, {"AKIDother": "k"}) as api:
        with pytest.raises(TencentCloudSDKException) as error:
            sdk_client(api).Invoke(invoke_request({}))
        assert error.value.code == "AuthFailure.SecretIdNotFound"
    with ScfApi(lambda e, c: None, {SECRET_ID: SECRET_KEY}, token="the-token") as api:
        with pytest.raises(TencentCloudSDKException) as error:
            sdk_client(api, token="another-token").Invoke(invoke_request({}))
        assert error.value.code == "AuthFailure.TokenFailure"
        assert sdk_client(api, token="the-token").Invoke(invoke_request({})).Result.InvokeResult == 0


def test_a_request_signed_too_long_ago_has_expired() -> None:
    # The stand-in's clock is ten minutes ahead of the client's.
    with ScfApi(lambda e, c: None, {SECRET_ID: SECRET_KEY}, clock=lambda: time.time() + 600) as api:
        with pytest.raises(TencentCloudSDKException) as error:
            sdk_client(api).Invoke(invoke_request({}))
        assert error.value.code == "AuthFailure.SignatureExpire"


def test_an_event_over_the_async_limit_is_refused(echo_api: Any) -> None:
    api, seen = echo_api
    big = {"pad": "x" * cos_facts.SCF_ASYNC_EVENT_MAX_BYTES}
    with pytest.raises(TencentCloudSDKException) as error:
        sdk_client(api).Invoke(invoke_request(big))
    assert error.value.code == "InvalidParameterValue.ClientContext"
    api.wait_idle(5)
    assert seen == []


def _signed_post(api: ScfApi, body: bytes, signed_body: bytes, **header_changes: str) -> dict[str, Any]:
    """A request signed by hand as the API 3.0 docs describe, with the SDK's own HMAC chain."""
    timestamp = int(time.time())
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    host = f"127.0.0.1:{api.port}"
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:application/json\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(signed_body).hexdigest(),
        ]
    )
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), f"{date}/scf/tc3_request", hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signature = Sign.sign_tc3(SECRET_KEY, date, "scf", to_sign)
    headers = {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": "Invoke",
        "X-TC-Version": "2018-04-16",
        "X-TC-Region": REGION,
        "X-TC-Timestamp": str(timestamp),
        "Authorization": f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/scf/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}",
    }
    headers.update({name.replace("_", "-"): value for name, value in header_changes.items()})
    answer: dict[str, Any] = requests.post(api.endpoint + "/", data=body, headers=headers, timeout=10).json()
    return answer


def test_the_signature_covers_the_body(echo_api: Any) -> None:
    api, seen = echo_api
    body = json.dumps({"FunctionName": FUNCTION, "InvocationType": "Event", "ClientContext": '{"a": 1}'}).encode()
    assert "Result" in _signed_post(api, body, body)["Response"]
    tampered = body.replace(b'{\\"a\\": 1}', b'{\\"a\\": 2}')
    assert tampered != body
    answer = _signed_post(api, tampered, body)
    assert answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    api.wait_idle(5)
    assert [event for event, _ in seen] == [{"a": 1}]


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("X-TC-Version", "2017-03-12", "NoSuchVersion"),
        ("X-TC-Action", "DeleteFunction", "InvalidAction"),
        ("X-TC-Region", "", "MissingParameter"),
    ],
)
def test_only_invoke_of_this_api_version_is_served(echo_api: Any, header: str, value: str, code: str) -> None:
    api, seen = echo_api
    body = json.dumps({"FunctionName": FUNCTION, "InvocationType": "Event", "ClientContext": "{}"}).encode()
    answer = _signed_post(api, body, body, **{header.replace("-", "_"): value})
    assert answer["Response"]["Error"]["Code"] == code
    api.wait_idle(5)
    assert seen == []


@pytest.mark.parametrize(("failures", "runs", "final"), [(1, 2, "ok"), (5, 3, "error")])
def test_an_async_handler_that_raises_is_retried_up_to_twice(failures: int, runs: int, final: str) -> None:
    left = {"n": failures}

    def flaky(event: dict[str, Any], context: dict[str, Any]) -> str:
        if left["n"] > 0:
            left["n"] -= 1
            raise RuntimeError("temporary")
        return "done"

    with ScfApi(flaky, {SECRET_ID: SECRET_KEY}) as api:
        sdk_client(api).Invoke(invoke_request({"k": 1}))
        api.wait_idle(10)
        invocations = api.invocations
    assert [i.attempt for i in invocations] == list(range(1, runs + 1))
    assert len({i.request_id for i in invocations}) == 1  # a retry is the same invocation
    assert invocations[-1].outcome == final
    assert runs - 1 <= cos_facts.SCF_DEFAULT_RETRY_NUM


# --- the fan-out end to end ----------------------------------------------------------------------------


class Fleet:
    """The emulator, and the function deployed behind the local Invoke API."""

    def __init__(self, emu: Emulator, api: ScfApi) -> None:
        self.emu, self.api = emu, api

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "TENCENTCLOUD_SECRETID": SECRET_ID,
            "TENCENTCLOUD_SECRETKEY": SECRET_KEY,
            "AUTOTAG_COS_ENDPOINT": f"http://127.0.0.1:{self.emu.port}",
            "AUTOTAG_SCF_ENDPOINT": self.api.endpoint,
            **extra,
        }

    def backfill(self, *extra: str, report: Path) -> tuple[int, dict[str, Any]]:
        argv = ["--bucket", BUCKET, "--region", REGION, "--via-scf", FUNCTION, "--no-progress", "--quiet"]
        code = run_backfill([*argv, "--report", str(report), *extra], env=self.env())
        self.api.wait_idle(60)
        return code, json.loads(report.read_text())

    def per_key(self, op: str) -> Counter[str]:
        return Counter(r.key for r in self.emu.requests if r.op == op and r.status == 200)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    emu = Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID, label_engine=DigestLabelEngine())
    emu.start()
    try:
        emu.create_bucket(BUCKET, REGION)
        for i, key in enumerate(IMAGES):
            emu.seed_object(BUCKET, key, image_bytes(seed=i), content_type="image/jpeg")
        emu.seed_object(BUCKET, "f/notes.txt", b"not an image")
        env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
        app = App(Settings(cos_endpoint=("http", "127.0.0.1", emu.port)), env=env)
        with ScfApi(app.handle, {SECRET_ID: SECRET_KEY}, functions=(FUNCTION,)) as api:
            yield Fleet(emu, api)
    finally:
        emu.stop()


def test_fan_out_labels_every_image_once_through_the_function(fleet: Fleet, tmp_path: Path) -> None:
    code, report = fleet.backfill("--batch", "5", report=tmp_path / "r.json")
    assert code == 0, report
    assert report["sent"] == len(IMAGES) and report["skipped"] == {"not a JPEG or PNG": 1}
    events = math.ceil(len(IMAGES) / 5)
    assert report["events_sent"] == events and report["calls"]["Invoke"] == events
    runs = fleet.api.invocations
    assert sorted(len(r.keys) for r in runs) == [2, 5, 5]  # --batch 5, finishing in any order
    assert sorted(k for r in runs for k in r.keys) == IMAGES  # the text file was never sent
    assert all(r.outcome == "ok" and r.attempt == 1 for r in runs)
    assert sum(r.result["labeled"] for r in runs) == len(IMAGES)
    assert fleet.per_key("DetectLabel") == Counter(IMAGES)
    assert fleet.per_key("PutObjectTagging") == Counter(IMAGES)
    assert {c.secret_id for c in fleet.api.calls} == {SECRET_ID}
    assert report["cost"]["detect_label_calls"] == len(IMAGES)


def test_fanning_out_again_costs_one_read_per_object_in_the_function(fleet: Fleet, tmp_path: Path) -> None:
    fleet.backfill(report=tmp_path / "first.json")
    detects = fleet.emu.count(op="DetectLabel")
    first_runs = len(fleet.api.invocations)
    code, _ = fleet.backfill(report=tmp_path / "second.json")
    assert code == 0
    second = fleet.api.invocations[first_runs:]
    assert sum(r.result["duplicates"] for r in second) == len(IMAGES)
    assert fleet.emu.count(op="DetectLabel") == detects


def test_throttled_invokes_back_off_and_are_retried(fleet: Fleet, tmp_path: Path) -> None:
    fleet.api.reject_next(3, "RequestLimitExceeded", "too many requests")
    code, report = fleet.backfill("--batch", "4", report=tmp_path / "r.json")
    assert code == 0 and report["failed"] == []
    assert report["events_sent"] == 3 and report["calls"]["Invoke"] == 3 + 3
    assert report["rate"]["throttles"] == 3 and report["rate"]["cuts"] >= 1
    assert fleet.per_key("PutObjectTagging") == Counter(IMAGES)


def test_refused_invokes_are_reported_per_object_and_nothing_runs(fleet: Fleet, tmp_path: Path) -> None:
    fleet.api.credentials[SECRET_ID] = "a-different-key"  # the function's API now refuses our signature
    code, report = fleet.backfill("--batch", "5", report=tmp_path / "r.json")
    assert code == 1
    assert sorted(f["key"] for f in report["failed"]) == IMAGES
    assert {f["error_code"] for f in report["failed"]} == {"AuthFailure.SignatureFailure"}
    assert report["sent"] == 0 and fleet.api.invocations == []
    assert fleet.emu.count(op="DetectLabel") == 0


def test_fan_out_resumes_without_sending_an_object_twice(fleet: Fleet, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.jsonl"
    fleet.api.credentials[SECRET_ID] = "a-different-key"
    code, _ = fleet.backfill("--resume", str(checkpoint), "--batch", "5", report=tmp_path / "a.json")
    assert code == 1
    fleet.api.credentials[SECRET_ID] = SECRET_KEY
    code, report = fleet.backfill("--resume", str(checkpoint), "--batch", "5", report=tmp_path / "b.json")
    assert code == 0 and report["retried"] == len(IMAGES) and report["sent"] == len(IMAGES)
    code, report = fleet.backfill("--resume", str(checkpoint), report=tmp_path / "c.json")
    assert code == 0 and report["sent"] == 0 and report["calls"].get("Invoke", 0) == 0
    assert sorted(k for r in fleet.api.invocations for k in r.keys) == IMAGES


def test_a_dry_run_with_via_scf_invokes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    code, report = fleet.backfill("--dry-run", report=tmp_path / "r.json")
    assert code == 0 and report["run"] == "dry-run" and report["would_label"] == len(IMAGES)
    assert fleet.api.calls == [] and fleet.emu.count(op="DetectLabel") == 0
