"""The emulated SCF COS trigger: event shape, filters, asynchronous delivery, SCF's retries."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
import requests
from qcloud_cos import CosS3Client

from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import Emulator, auth
from tests.support.constants import APPID, BUCKET, REGION, SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.integration


class Recorder:
    """A handler that records (event, context) and can be told to fail or stall."""

    def __init__(self, fail_times: int = 0, block: threading.Event | None = None) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.fail_times = fail_times
        self.block = block  # when given, each call waits until it is set
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: dict[str, Any]) -> dict[str, str]:
        with self._lock:
            self.calls.append((event, context))
            attempt = len(self.calls)
        if self.block is not None:
            self.block.wait(10)
        if attempt <= self.fail_times:
            raise RuntimeError(f"boom {attempt}")
        return {"status": "done"}

    def keys(self) -> list[str]:
        prefix = f"/{APPID}/photos/"
        return [r["cos"]["cosObject"]["key"].removeprefix(prefix) for e, _ in self.calls for r in e["Records"]]


def test_put_event_has_the_documented_shape(emulator: Emulator, cos_client: CosS3Client) -> None:
    handler = Recorder()
    emulator.add_trigger(BUCKET, handler, function_name="autotag")
    put = cos_client.put_object(
        Bucket=BUCKET,
        Key="in/cat 1.jpg",
        Body=b"12345",
        ContentType="image/jpeg",
        Metadata={"x-cos-meta-source": "phone"},
    )
    emulator.wait_idle(10)
    ((event, context),) = handler.calls
    (record,) = event["Records"]
    cos, ev = record["cos"], record["event"]
    assert cos["cosSchemaVersion"] == "1.0"
    assert cos["cosObject"] == {
        "url": f"http://{BUCKET}.cos.{REGION}.myqcloud.com/in/cat%201.jpg",
        "meta": {
            "x-cos-request-id": put["x-cos-request-id"],
            "Content-Type": "image/jpeg",
            "x-cos-meta-source": "phone",
        },
        "vid": "",
        "key": f"/{APPID}/photos/in/cat 1.jpg",
        "size": 5,
    }
    assert cos["cosBucket"] == {"region": "gz", "name": "photos", "appid": APPID, "s3Region": REGION}
    assert cos["cosNotificationId"] == "unkown"
    assert ev["eventName"] == "cos:ObjectCreated:Put"
    assert (ev["eventVersion"], ev["eventSource"], ev["reservedInfo"]) == ("1.0", "qcs::cos", "")
    assert abs(ev["eventTime"] - time.time()) < 10 and isinstance(ev["reqid"], int)
    assert ev["requestParameters"]["requestSourceIP"] == "127.0.0.1"
    authorization = ev["requestParameters"]["requestHeaders"]["Authorization"]
    assert authorization.startswith("q-sign-algorithm=sha1&q-ak=" + SECRET_ID)
    assert ev["eventQueue"] == f"qcs:0:scf:gz:appid/{APPID}:default.autotag.$LATEST"
    json.dumps(event)  # SCF events are JSON
    assert context["function_name"] == "autotag" and context["function_version"] == "$LATEST"
    assert context["namespace"] == "default" and context["memory_limit_in_mb"] == 128
    assert context["time_limit_in_ms"] == 30000 and context["tencentcloud_region"] == REGION
    assert context["tencentcloud_appid"] == APPID and context["tencentcloud_uin"]
    assert "SCF_FUNCTIONNAME=autotag" in context["environ"] and "SCF_NAMESPACE=default" in context["environ"]
    (invocation,) = emulator.invocations
    assert (invocation.outcome, invocation.attempt, invocation.result) == ("ok", 1, {"status": "done"})
    assert invocation.keys == ["in/cat 1.jpg"]


def test_every_created_operation_fires_with_its_event_name(emulator: Emulator, cos_client: CosS3Client) -> None:
    handler = Recorder()
    emulator.add_trigger(BUCKET, handler)
    cos_client.put_object(Bucket=BUCKET, Key="put", Body=b"x")
    cos_client.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": "put", "Region": REGION})
    upload_id = cos_client.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    etag = cos_client.upload_part(Bucket=BUCKET, Key="mp", Body=b"p", PartNumber=1, UploadId=upload_id)["ETag"]
    cos_client.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=upload_id, MultipartUpload={"Part": [{"PartNumber": 1, "ETag": etag}]}
    )
    post_upload(emulator, "post")
    # Tagging, reads and deletes are not object-created operations.
    cos_client.put_object_tagging(Bucket=BUCKET, Key="put", Tagging={"TagSet": {"Tag": [{"Key": "a", "Value": "b"}]}})
    cos_client.get_object(Bucket=BUCKET, Key="put")["Body"].get_raw_stream().read()
    cos_client.delete_object(Bucket=BUCKET, Key="put")
    emulator.wait_idle(10)
    names = {
        e["Records"][0]["cos"]["cosObject"]["key"].split("/")[-1]: e["Records"][0]["event"]["eventName"]
        for e, _ in handler.calls
    }
    assert names == {
        "put": cos_facts.EVENT_PUT,
        "copy": cos_facts.EVENT_COPY,
        "mp": cos_facts.EVENT_COMPLETE_MULTIPART,
        "post": cos_facts.EVENT_POST,
    }


def post_upload(emulator: Emulator, key: str) -> None:
    key_time = f"{int(time.time()) - 60};{int(time.time()) + 600}"
    policy = json.dumps({"expiration": "2099-01-01T00:00:00.000Z", "conditions": [{"bucket": BUCKET}]})
    form = {
        "key": key,
        "policy": base64.b64encode(policy.encode()).decode(),
        "q-sign-algorithm": "sha1",
        "q-ak": SECRET_ID,
        "q-key-time": key_time,
        "q-signature": auth.post_signature(SECRET_KEY, key_time, policy),
    }
    resp = requests.post(
        f"{emulator.endpoint}/",
        data=form,
        files={"file": ("f", b"data")},
        headers={"Host": cos_facts.cos_host(BUCKET, REGION)},
        timeout=5,
    )
    assert resp.status_code == 204, resp.content


def test_remove_events_only_when_subscribed(emulator: Emulator, cos_client: CosS3Client) -> None:
    removed = Recorder()
    emulator.add_trigger(BUCKET, removed, events=["cos:ObjectRemove:*"])
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    cos_client.delete_object(Bucket=BUCKET, Key="k")
    cos_client.delete_object(Bucket=BUCKET, Key="never-existed")
    emulator.wait_idle(10)
    assert [e["Records"][0]["event"]["eventName"] for e, _ in removed.calls] == ["cos:ObjectRemove:Delete"]


def test_filters_on_event_name_prefix_and_suffix(emulator: Emulator, cos_client: CosS3Client) -> None:
    only_puts = Recorder()
    jpgs_under_in = Recorder()
    emulator.add_trigger(BUCKET, only_puts, events=[cos_facts.EVENT_PUT])
    emulator.add_trigger(BUCKET, jpgs_under_in, prefix="in/", suffix=".jpg")
    for key in ["in/a.jpg", "in/b.png", "out/c.jpg", "in/d.jpg"]:
        cos_client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    cos_client.copy_object(
        Bucket=BUCKET, Key="in/e.jpg", CopySource={"Bucket": BUCKET, "Key": "in/a.jpg", "Region": REGION}
    )
    emulator.wait_idle(10)
    assert sorted(only_puts.keys()) == ["in/a.jpg", "in/b.png", "in/d.jpg", "out/c.jpg"]
    assert sorted(jpgs_under_in.keys()) == ["in/a.jpg", "in/d.jpg", "in/e.jpg"]


def test_handler_that_raises_is_retried_then_succeeds(emulator: Emulator, cos_client: CosS3Client) -> None:
    handler = Recorder(fail_times=2)
    emulator.add_trigger(BUCKET, handler, retry_num=2, retry_delay_s=0.05)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    outcomes = [(i.attempt, i.outcome) for i in emulator.invocations]
    assert outcomes == [(1, "error"), (2, "error"), (3, "ok")]
    assert "RuntimeError: boom 1" in (emulator.invocations[0].error or "")
    ids = {ctx["request_id"] for _, ctx in handler.calls}
    assert len(ids) == 3  # a new request id per attempt
    assert len({i.delivery_id for i in emulator.invocations}) == 1
    starts = [i.started_at for i in emulator.invocations]
    assert starts[1] - starts[0] >= 0.04 and starts[2] - starts[1] >= 0.04


def test_retries_stop_after_retry_num(emulator: Emulator, cos_client: CosS3Client) -> None:
    handler = Recorder(fail_times=99)
    emulator.add_trigger(BUCKET, handler, retry_num=1, retry_delay_s=0)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    assert [(i.attempt, i.outcome) for i in emulator.invocations] == [(1, "error"), (2, "error")]


def test_timeout_counts_as_failure_and_is_retried(emulator: Emulator, cos_client: CosS3Client) -> None:
    slow_once = Recorder()
    unblock = threading.Event()

    def handler(event: dict[str, Any], context: dict[str, Any]) -> str:
        slow_once(event, context)
        if len(slow_once.calls) == 1:
            unblock.wait(10)  # stuck past the 100 ms limit, until the retry runs
        else:
            unblock.set()  # the retry started, so the first attempt has timed out
        return "ok"

    emulator.add_trigger(BUCKET, handler, time_limit_ms=100, retry_num=2, retry_delay_s=0)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    invocations = sorted(emulator.invocations, key=lambda i: i.attempt)
    assert [(i.attempt, i.outcome) for i in invocations] == [(1, "timeout"), (2, "ok")]
    assert invocations[0].duration_s < 5 and "timed out" in (invocations[0].error or "")


def test_unserialisable_return_is_an_error(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.add_trigger(BUCKET, lambda e, c: object(), retry_num=0)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    assert [i.outcome for i in emulator.invocations] == ["error"]


def test_each_attempt_gets_a_fresh_event(emulator: Emulator, cos_client: CosS3Client) -> None:
    seen: list[str] = []

    def mutating(event: dict[str, Any], context: dict[str, Any]) -> None:
        record = event["Records"][0]
        seen.append(record["cos"]["cosObject"]["key"])
        record["cos"]["cosObject"]["key"] = "mutated"
        raise ValueError("again")

    emulator.add_trigger(BUCKET, mutating, retry_num=1, retry_delay_s=0)
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    emulator.wait_idle(10)
    assert seen == [f"/{APPID}/photos/k"] * 2


@pytest.mark.parametrize(("encoding", "expected"), [("raw", "a b+%中.jpg"), ("url", "a%20b%2B%25%E4%B8%AD.jpg")])
def test_event_key_encoding_knob(emulator: Emulator, cos_client: CosS3Client, encoding: str, expected: str) -> None:
    emulator.event_key_encoding = encoding
    handler = Recorder()
    emulator.add_trigger(BUCKET, handler)
    cos_client.put_object(Bucket=BUCKET, Key="a b+%中.jpg", Body=b"x")
    emulator.wait_idle(10)
    ((event, _),) = handler.calls
    cos_object = event["Records"][0]["cos"]["cosObject"]
    assert cos_object["key"] == f"/{APPID}/photos/{expected}"
    assert cos_object["url"].endswith("/a%20b%2B%25%E4%B8%AD.jpg")  # the url is always encoded


def test_wait_idle_times_out_with_a_clear_error(emulator: Emulator, cos_client: CosS3Client) -> None:
    block = threading.Event()
    emulator.add_trigger(BUCKET, Recorder(block=block))
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    with pytest.raises(TimeoutError, match="still busy"):
        emulator.wait_idle(0.2)
    block.set()
    emulator.wait_idle(5)


def test_add_trigger_validates(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        emulator.add_trigger("other-1250000000", Recorder())
    with pytest.raises(ValueError, match="not a COS trigger event"):
        emulator.add_trigger(BUCKET, Recorder(), events=["cos:ObjectCreated:Tag"])
    with pytest.raises(TypeError):
        emulator.add_trigger(BUCKET, "not callable")  # type: ignore[arg-type]


def test_removed_trigger_stops_firing(emulator: Emulator, cos_client: CosS3Client) -> None:
    handler = Recorder()
    trigger = emulator.add_trigger(BUCKET, handler)
    cos_client.put_object(Bucket=BUCKET, Key="a", Body=b"x")
    emulator.wait_idle(10)
    emulator.remove_trigger(trigger)
    cos_client.put_object(Bucket=BUCKET, Key="b", Body=b"x")
    emulator.wait_idle(10)
    assert handler.keys() == ["a"]
