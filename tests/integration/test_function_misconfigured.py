"""First-deploy mistakes and tiny images, through the handler against the emulator, under each
profile of the contested COS rules (tests/support/profiles.py): among them what detect-label
answers on a bucket not bound to Cloud Infinite (403, 404, or 200 with an HTML page).

A misconfigured deployment fails every upload alike: each record is counted as failed (never
"object gone" or "rejected by detect-label"), and the invocation logs one ERROR per problem
saying what to fix.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from PIL import Image

from tests.support.constants import BUCKET
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.pauses import pause
from tests.support.profiles import PROFILE_PARAMS
from tests.support.scf import context

pytestmark = pytest.mark.integration


@pytest.fixture(params=PROFILE_PARAMS)
def stack(request):
    with running_stack(profile=request.param) as s:
        yield s


def merged(*events: dict[str, Any]) -> dict[str, Any]:
    return {"Records": [record for event in events for record in event["Records"]]}


def errors_about_the_deployment(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["level"] == "error" and "misconfigured" in line["message"]]


def test_refused_credentials_fail_every_record_and_say_the_fix_once(stack):
    keys = ["a.jpg", "b.jpg", "c.jpg"]
    event = merged(*(stack.event(key, stack.put(key, jpeg(i))) for i, key in enumerate(keys)))
    app = stack.app()
    app.gateway._env = {"TENCENTCLOUD_SECRETID": "AKIDunknown", "TENCENTCLOUD_SECRETKEY": "nope-nope-nope"}
    with captured_logs() as logs:
        summary = app.handle(event, context())
    assert [f["key"] for f in summary["failed"]] == keys
    assert all(f["retryable"] is False and "InvalidAccessKeyId" in f["reason"] for f in summary["failed"])
    (line,) = errors_about_the_deployment(logs)
    assert "bind an execution role" in line["message"] and line["records"] == 3
    assert stack.emulator.count("DetectLabel") == 0


def test_a_bucket_that_does_not_exist_is_never_object_gone(stack):
    event = stack.event("x.jpg", "cmVxLW5vYnVja2V0", size=1000)
    cos = event["Records"][0]["cos"]
    cos["cosBucket"]["name"] = "missing"
    cos["cosObject"]["url"] = cos["cosObject"]["url"].replace("photos-", "missing-")
    cos["cosObject"]["key"] = "/1250000000/missing/x.jpg"
    with captured_logs() as logs:
        summary = stack.app().handle(event, context())
    assert summary["skipped"] == {} and len(summary["failed"]) == 1
    assert "NoSuchBucket" in summary["failed"][0]["reason"]
    assert not any(line.get("reason") == "object gone" for line in logs)
    (line,) = errors_about_the_deployment(logs)
    assert "check the bucket name" in line["message"]


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(out, "PNG")
    return out.getvalue()


def test_a_declared_png_under_50_pixels_is_refused_by_detect_label_and_skipped(stack):
    # As the README says: a declared image is not read before detect-label, which refuses it.
    rid = stack.put("icons/tiny.png", _png((20, 20)), content_type="image/png")
    summary = stack.app().handle(stack.event("icons/tiny.png", rid, content_type="image/png"), context())
    assert summary["skipped"] == {"rejected by detect-label (InvalidArgument)": 1} and summary["failed"] == []
    assert stack.emulator.count("DetectLabel", key="icons/tiny.png") == 1


def test_an_undeclared_image_under_50_pixels_costs_no_detect_label(stack):
    rid = stack.put("icons/tiny", _png((20, 20)), content_type="")
    summary = stack.app().handle(stack.event("icons/tiny", rid, content_type=""), context())
    assert summary["skipped"] == {"too small": 1}
    assert stack.emulator.count("DetectLabel") == 0


def test_a_misspelt_setting_is_named_at_cold_start_with_the_closest_known_one(stack):
    from cos_autotag.handler import App

    with captured_logs() as logs:
        App(stack.settings(), env={"AUTOTAG_MIN_CONFIDANCE": "30", "AUTOTAG_MODE": "tags"})
    (line,) = [line for line in logs if line["message"] == "unknown setting ignored"]
    assert line["variable"] == "AUTOTAG_MIN_CONFIDANCE" and line["did_you_mean"] == "AUTOTAG_MIN_CONFIDENCE"


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_a_bucket_not_bound_to_cloud_infinite_says_so_once_and_is_not_a_rejected_image(stack, mode):
    """Whatever the profile's unbound answer (403, 404 other than NoSuchKey, 200 with a page):
    every record failed, not retried, nothing written, one ERROR with the fix."""
    stack.emulator.set_ci_bound(BUCKET, False)
    keys = ["a.jpg", "b.jpg"]
    event = merged(
        *(stack.event(key, stack.put(key, jpeg(i), Metadata={"x-cos-meta-o": "u"})) for i, key in enumerate(keys))
    )
    with captured_logs() as logs:
        summary = stack.app(mode=mode).handle(event, context())
    assert summary["skipped"] == {} and summary["labeled"] == 0
    assert [f["key"] for f in summary["failed"]] == keys and not any(f["retryable"] for f in summary["failed"])
    (line,) = errors_about_the_deployment(logs)
    assert "bind the bucket to Cloud Infinite" in line["message"] and line["records"] == 2
    assert [line for line in logs if line["level"] == "error"] == [line]
    assert not any("rejected by detect-label" in str(line.get("reason", "")) for line in logs)
    assert not any(line.get("reason") == "object gone" for line in logs)
    for key in keys:  # no marker, no label: a redelivery once the bucket is bound labels it
        state = stack.emulator.get_object_state(BUCKET, key)
        assert state.tags == {} and state.metadata == {"x-cos-meta-o": "u"}


def test_an_object_gone_before_detect_label_is_still_object_gone(stack):
    """A 404 NoSuchKey from detect-label is the object's own absence, never a deployment error."""
    rid = stack.put("gone.jpg", jpeg(7))
    event = stack.event("gone.jpg", rid)
    with pause(stack.emulator, "DetectLabel", key="gone.jpg") as gate:
        out: list[dict[str, Any]] = []
        worker = threading.Thread(target=lambda: out.append(stack.app().handle(event, context())))
        worker.start()
        gate.wait_arrived(timeout=10)
        stack.client.delete_object(Bucket=BUCKET, Key="gone.jpg")
        gate.release()
        worker.join(10)
    assert out and out[0]["skipped"] == {"object gone": 1} and out[0]["failed"] == []


@pytest.mark.parametrize("mode, denied", [("tags", "PutObjectTagging"), ("metadata", "CopyObject")])
def test_a_role_missing_a_permission_names_the_call_and_the_policy_command(stack, mode, denied):
    stack.emulator.set_faults(denied_ops=frozenset({denied}))
    rid = stack.put("a.jpg", jpeg(3))
    with captured_logs() as logs:
        summary = stack.app(mode=mode).handle(stack.event("a.jpg", rid), context())
    (failed,) = summary["failed"]
    assert failed["retryable"] is False and f"AccessDenied on {denied}" in failed["reason"]
    (line,) = errors_about_the_deployment(logs)
    assert denied in line["message"] and "cos-autotag policy" in line["message"]
