"""The function end to end in tags mode: real SDK, real HTTP, the emulator checking signatures."""

import base64
import contextlib
import threading
import time

import pytest

from cos_autotag.errors import RetryableFailure
from cos_autotag_tools.emulator import Faults
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.pauses import pause
from tests.support.profiles import PROFILE_PARAMS
from tests.support.scf import context

pytestmark = pytest.mark.integration


@pytest.fixture(params=PROFILE_PARAMS)
def stack(request):
    """The function against the emulator, once under each reading of the contested COS rules."""
    with running_stack(profile=request.param) as s:
        yield s


def strict(stack):
    return stack.emulator.profile.tag_rule == "strict"


def encoded(name):
    """The encoded form of a label's tag key, computed here from LAYOUT.md (not by the function)."""
    return "autotag:b64:" + base64.b64encode(name.encode("utf-8")).decode("ascii")


def label_key(stack, name):
    """The key a non-ASCII label is written under by default: readable, or encoded under `strict`."""
    return encoded(name) if strict(stack) else "autotag:" + name


def register(stack, body, *names_conf, scene="camera"):
    stack.engine.register(
        body,
        {
            scene: [
                {"Name": n, "Confidence": c, "FirstCategory": "Thing", "SecondCategory": "Sub"} for n, c in names_conf
            ]
        },
    )


def test_new_object_gets_labels_as_tags_in_four_calls(stack):
    body = jpeg(1)
    register(stack, body, ("cat", 91), ("sofa", 70), ("blurry thing", 5))
    rid = stack.put("pets/cat.jpg", body, Tagging="owner=alice&project=x")
    since = time.time()
    summary = stack.app().handle(stack.event("pets/cat.jpg", rid), context())
    assert summary["labeled"] == 1 and summary["calls_total"] == 4
    # Read the tag set (guard + merge), detect, read it again just before the write, write.
    assert stack.calls("pets/cat.jpg", since) == {"GetObjectTagging": 2, "DetectLabel": 1, "PutObjectTagging": 1}
    tags = stack.tags("pets/cat.jpg")
    assert tags["owner"] == "alice" and tags["project"] == "x"
    assert tags["autotag:cat"] == "91" and tags["autotag:sofa"] == "70"
    assert "autotag:blurry thing" not in tags  # under the minimum confidence
    assert tags["autotag"].startswith("v2:")


def test_duplicate_delivery_costs_one_read_and_changes_nothing(stack):
    body = jpeg(2)
    rid = stack.put("a.jpg", body)
    app = stack.app()
    event = stack.event("a.jpg", rid)
    app.handle(event, context())
    before = stack.tags("a.jpg")
    since = time.time()
    summary = app.handle(event, context())
    assert summary["duplicates"] == 1 and summary["calls_total"] == 1
    assert stack.calls("a.jpg", since) == {"GetObjectTagging": 1}
    assert stack.tags("a.jpg") == before


def test_a_new_upload_replaces_the_functions_own_labels_and_keeps_the_users(stack):
    first, second = jpeg(3), jpeg(4)
    register(stack, first, ("dog", 90), ("ball", 80))
    register(stack, second, ("cat", 88))
    app = stack.app()
    rid = stack.put("x.jpg", first, Tagging="owner=bob")
    app.handle(stack.event("x.jpg", rid), context())
    assert {"autotag:dog", "autotag:ball"} <= set(stack.tags("x.jpg"))
    rid2 = stack.put("x.jpg", second, Tagging="owner=bob")
    app.handle(stack.event("x.jpg", rid2), context())
    tags = stack.tags("x.jpg")
    assert tags["owner"] == "bob" and tags["autotag:cat"] == "88"
    assert "autotag:dog" not in tags and "autotag:ball" not in tags


def test_nine_user_tags_leave_no_room_and_cost_no_detect_call(stack):
    user = "&".join(f"k{i}=v{i}" for i in range(9))
    rid = stack.put("full.jpg", jpeg(5), Tagging=user)
    since = time.time()
    with captured_logs() as logs:
        summary = stack.app().handle(stack.event("full.jpg", rid), context())
    assert summary["skipped"] == {"no room for tags": 1}
    assert stack.calls("full.jpg", since) == {"GetObjectTagging": 1}
    assert stack.tags("full.jpg") == {f"k{i}": f"v{i}" for i in range(9)}
    assert any(line.get("outcome") == "skipped" for line in logs)


def test_short_room_writes_fewer_labels_never_drops_a_user_tag_and_says_so(stack):
    body = jpeg(6)
    register(stack, body, ("a", 90), ("b", 80), ("c", 70))
    user = {f"k{i}": f"v{i}" for i in range(7)}
    rid = stack.put("room.jpg", body, Tagging="&".join(f"{k}={v}" for k, v in user.items()))
    with captured_logs() as logs:
        stack.app().handle(stack.event("room.jpg", rid), context())
    tags = stack.tags("room.jpg")
    assert len(tags) == 10
    assert {k: v for k, v in tags.items() if k.startswith("k")} == user
    assert tags["autotag:a"] == "90" and tags["autotag:b"] == "80" and "autotag:c" not in tags
    assert any("fewer labels" in line["message"] and line.get("left_out") == ["c"] for line in logs)


def test_labels_cos_would_reject_are_cleaned(stack):
    body = jpeg(7)
    register(stack, body, ("T-shirt (red), cotton", 90), ("猫", 85), ("!!!", 80))
    rid = stack.put("odd-labels.jpg", body)
    summary = stack.app().handle(stack.event("odd-labels.jpg", rid), context())
    assert summary["labeled"] == 1
    tags = stack.tags("odd-labels.jpg")
    assert "autotag:T-shirt red cotton" in tags
    assert label_key(stack, "猫") in tags  # encoded under the strict tag rule, so it is still written
    assert not any("!" in k for k in tags)


def test_ineligible_objects_cost_nothing(stack):
    rid = stack.put("notes.txt", b"hello", content_type="text/plain")
    since = time.time()
    summary = stack.app().handle(stack.event("notes.txt", rid, content_type="text/plain"), context())
    assert summary["skipped"] == {"not a JPEG or PNG": 1} and summary["calls_total"] == 0
    assert stack.calls("notes.txt", since) == {}


def test_unknown_type_is_decided_from_the_first_bytes(stack):
    body = jpeg(8)
    rid = stack.put("testfile", body, content_type="application/octet-stream")
    since = time.time()
    summary = stack.app().handle(stack.event("testfile", rid, content_type=""), context())
    assert summary["labeled"] == 1
    assert stack.calls("testfile", since) == {
        "GetObjectTagging": 2,
        "GetObject": 1,
        "DetectLabel": 1,
        # Under the strict tag rule a new container's first non-ASCII set is refused once, then
        # written encoded at once (AUTOTAG_TAG_TEXT=auto): one more call, once per container.
        "PutObjectTagging": 2 if strict(stack) else 1,
    }
    rid2 = stack.put("blob", b"PK\x03\x04 not an image", content_type="application/octet-stream")
    summary = stack.app().handle(stack.event("blob", rid2, content_type=""), context())
    assert summary["skipped"] == {"not a JPEG or PNG": 1}
    assert stack.emulator.count("DetectLabel", key="blob") == 0


@pytest.mark.parametrize("key", ["my photos/summer day.jpg", "a+b/c+d.jpg", "100%/50%25.jpg", "相册/猫 咪.jpg"])
@pytest.mark.parametrize("encoding", ["raw", "url", "plus"])
def test_odd_keys_label_the_right_object(stack, key, encoding):
    from urllib.parse import quote, quote_plus

    rid = stack.put(key, jpeg(9))
    event = stack.event(key, rid)
    obj = event["Records"][0]["cos"]["cosObject"]
    if encoding == "url":
        obj["key"] = "/1250000000/photos/" + quote(key)
    elif encoding == "plus":
        obj["key"] = "/1250000000/photos/" + quote_plus(key, safe="/")
    summary = stack.app().handle(event, context())
    assert summary["labeled"] == 1, summary
    assert "autotag" in stack.tags(key)


def test_several_records_one_bad_one_removed(stack):
    rid = stack.put("one.jpg", jpeg(10))
    good = stack.event("one.jpg", rid)["Records"][0]
    removed = stack.event("one.jpg", rid, event_name="cos:ObjectRemove:Delete")["Records"][0]
    bad = {"cos": {"cosObject": {}}, "event": {"eventName": "cos:ObjectCreated:Put"}}
    with captured_logs() as logs:
        summary = stack.app().handle({"Records": [bad, good, removed]}, context())
    assert summary["malformed"] == 1 and summary["ignored"] == 1 and summary["labeled"] == 1
    malformed = [line for line in logs if line["message"].startswith("malformed record")]
    assert malformed and "cosObject" in malformed[0]["problem"] and malformed[0]["level"] == "error"


def test_object_gone_is_logged_with_code_and_request_id_and_does_not_raise(stack):
    event = stack.event("never-uploaded.jpg", "cmVxLWdvbmU=", size=1000)
    with captured_logs() as logs:
        summary = stack.app().handle(event, context())
    assert summary["skipped"] == {"object gone": 1}
    line = next(line for line in logs if line.get("outcome") == "skipped")
    assert line["error_code"] in ("NoSuchKey", "NoSuchResource") and line["request_id"]


def test_not_a_valid_image_is_not_retried(stack):
    rid = stack.put("fake.jpg", b"this is not a jpeg at all")
    summary = stack.app().handle(stack.event("fake.jpg", rid), context())
    assert summary["labeled"] == 0 and summary["failed"] == []
    assert next(iter(summary["skipped"])).startswith("rejected by detect-label")
    assert stack.emulator.count("DetectLabel", key="fake.jpg") == 1


def test_access_denied_is_logged_not_retried(stack):
    rid = stack.put("denied.jpg", jpeg(11))
    app = stack.app()
    app.gateway._env = {"TENCENTCLOUD_SECRETID": "AKIDunknown", "TENCENTCLOUD_SECRETKEY": "nope-nope-nope"}
    summary = app.handle(stack.event("denied.jpg", rid), context())
    (failed,) = summary["failed"]
    assert failed["retryable"] is False and "InvalidAccessKeyId" in failed["reason"]


def test_throttling_is_retried_within_the_invocation(stack):
    body = jpeg(12)
    rid = stack.put("busy.jpg", body)
    stack.emulator.set_faults(Faults(detect_throttle_rate=0.6, seed=1))
    with captured_logs() as logs:
        summary = stack.app().handle(stack.event("busy.jpg", rid), context())
    assert summary["labeled"] == 1
    retries = [line for line in logs if line["message"] == "retrying after a retryable error"]
    assert summary["calls"]["DetectLabel"] == len(retries) + 1
    assert all(line["error_code"] == "-164" for line in retries)


def test_persistent_failure_raises_naming_the_key_after_finishing_the_others(stack):
    app = stack.app()
    done_rid = stack.put("done.jpg", jpeg(13))
    app.handle(stack.event("done.jpg", done_rid), context())
    stuck_rid = stack.put("stuck.jpg", jpeg(14))
    event = {"Records": stack.event("stuck.jpg", stuck_rid)["Records"] + stack.event("done.jpg", done_rid)["Records"]}
    stack.emulator.set_faults(Faults(error_5xx_rate=1.0, error_5xx_ops=frozenset({"DetectLabel"})))
    with captured_logs() as logs, pytest.raises(RetryableFailure) as info:
        app.handle(event, context(time_limit_ms=4000))
    assert "stuck.jpg" in str(info.value) and "done.jpg" not in str(info.value)
    summary = next(line for line in logs if line["message"] == "invocation summary")
    assert summary["duplicates"] == 1 and [f["key"] for f in summary["failed"]] == ["stuck.jpg"]
    # SCF's retry, with the fault gone, labels it.
    stack.emulator.set_faults(Faults())
    assert app.handle(event, context())["labeled"] == 1


def test_5xx_burst_recovers(stack):
    rid = stack.put("burst.jpg", jpeg(15))
    stack.emulator.set_faults(Faults(error_5xx_rate=0.5, seed=0))
    summary = stack.app().handle(stack.event("burst.jpg", rid), context())
    assert summary["labeled"] == 1
    assert stack.emulator.count(status=503, key="burst.jpg") + stack.emulator.count(status=500, key="burst.jpg") > 0


def test_bucket_outside_the_allow_list_is_refused_with_no_call(stack):
    rid = stack.put("allowed.jpg", jpeg(16))
    since = time.time()
    app = stack.app(buckets=frozenset({"other-1250000000"}))
    with captured_logs() as logs:
        summary = app.handle(stack.event("allowed.jpg", rid), context())
    assert summary["ignored"] == 1 and summary["calls_total"] == 0
    assert stack.calls("allowed.jpg", since) == {}
    refusal = next(line for line in logs if "AUTOTAG_BUCKETS" in line["message"])
    assert refusal["level"] == "warning" and refusal["bucket"] == "photos-1250000000"
    allowed = stack.app(buckets=frozenset({"photos-1250000000"}))
    assert allowed.handle(stack.event("allowed.jpg", rid), context())["labeled"] == 1


def _during_detect(stack, key, action, handle):
    """Run `action` while the function's detect-label call for `key` is held; `handle()` runs the
    function (on another thread) and its answer is returned."""
    answer = {}
    with pause(stack.emulator, "DetectLabel", key=key) as gate:
        worker = threading.Thread(target=lambda: answer.update(summary=handle()))
        worker.start()
        gate.wait_arrived(timeout=30)
        action()
        gate.release()
        worker.join(60)
    return answer["summary"]


def test_tags_the_user_sets_during_detect_are_kept(stack):
    rid = stack.put("tagged-later.jpg", jpeg(17))
    app = stack.app()

    def user_tags():
        stack.client.put_object_tagging(
            Bucket="photos-1250000000",
            Key="tagged-later.jpg",
            Tagging={"TagSet": {"Tag": [{"Key": "reviewed", "Value": "yes"}]}},
        )

    summary = _during_detect(
        stack, "tagged-later.jpg", user_tags, lambda: app.handle(stack.event("tagged-later.jpg", rid), context())
    )
    assert summary["labeled"] == 1 and summary["calls"]["GetObjectTagging"] == 3
    tags = stack.tags("tagged-later.jpg")
    assert tags["reviewed"] == "yes" and "autotag" in tags


def test_an_overwrite_during_detect_keeps_the_new_uploads_tags_and_ends_with_its_labels(stack):
    old, new = jpeg(18), jpeg(19)
    register(stack, old, ("old", 90))
    register(stack, new, ("new", 90))
    rid = stack.put("swap.jpg", old, Tagging="version=old")
    app = stack.app()
    new_rid: list[str] = []
    _during_detect(
        stack,
        "swap.jpg",
        lambda: new_rid.append(stack.put("swap.jpg", new, Tagging="version=new")),
        lambda: app.handle(stack.event("swap.jpg", rid), context()),
    )
    assert stack.tags("swap.jpg")["version"] == "new"  # never the old upload's tags
    stack.emulator.set_faults(Faults())
    app.handle(stack.event("swap.jpg", new_rid[0]), context())  # the new upload's own event
    tags = stack.tags("swap.jpg")
    assert tags["version"] == "new" and tags["autotag:new"] == "90" and "autotag:old" not in tags


def test_a_newer_upload_labeled_first_still_ends_with_its_own_labels(stack):
    old, new = jpeg(20), jpeg(21)
    register(stack, old, ("old", 90))
    register(stack, new, ("new", 90))
    rid = stack.put("swap2.jpg", old)
    app = stack.app()

    def overwrite_and_label():
        new_rid = stack.put("swap2.jpg", new, Tagging="version=new")
        stack.emulator.set_faults(Faults())
        stack.app().handle(stack.event("swap2.jpg", new_rid), context())

    summary = _during_detect(
        stack, "swap2.jpg", overwrite_and_label, lambda: app.handle(stack.event("swap2.jpg", rid), context())
    )
    # The older delivery saw the tag set change under it and labeled the object as it is now.
    assert summary["labeled"] == 1 and summary["calls"]["DetectLabel"] == 2
    tags = stack.tags("swap2.jpg")
    assert tags["version"] == "new" and tags["autotag:new"] == "90" and "autotag:old" not in tags


def test_an_object_that_keeps_changing_is_left_for_scfs_retry(stack):
    rid = stack.put("busy-key.jpg", jpeg(22))
    stop = threading.Event()
    with contextlib.ExitStack() as gates_open:
        # Every detect-label call is held until the user has changed the tags once more.
        gates = [gates_open.enter_context(pause(stack.emulator, "DetectLabel", key="busy-key.jpg")) for _ in range(10)]

        def change_tags_during_each_detect():
            for n, gate in enumerate(gates):
                while not stop.is_set():
                    try:
                        gate.wait_arrived(timeout=0.05)
                        break
                    except TimeoutError:
                        continue
                else:
                    return
                stack.client.put_object_tagging(
                    Bucket="photos-1250000000",
                    Key="busy-key.jpg",
                    Tagging={"TagSet": {"Tag": [{"Key": "n", "Value": str(n)}]}},
                )
                gate.release()

        worker = threading.Thread(target=change_tags_during_each_detect)
        worker.start()
        try:
            with pytest.raises(RetryableFailure, match=r"busy-key\.jpg"):
                stack.app().handle(stack.event("busy-key.jpg", rid), context())
        finally:
            stop.set()
            worker.join()
    assert "autotag" not in stack.tags("busy-key.jpg")
