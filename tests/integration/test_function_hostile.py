"""One bad record never sinks the batch: hostile event fields and hostile detect-label replies,
through the real handler, the real SDK and the emulator (which serves the hostile replies).

Each bad record ends as failed with a reason and its key in the log; the good record beside it
in the same event is labeled as if the bad one were not there; the handler raises only its own
retry signal, and never for malformed data.
"""

from __future__ import annotations

import copy
import json

import pytest

from cos_autotag_tools.emulator import Faults
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.scf import context

pytestmark = pytest.mark.integration

MODES = ("tags", "metadata")


@pytest.fixture(scope="module")
def stack():
    with running_stack() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_faults(stack):
    stack.emulator.set_faults(Faults())
    yield
    stack.emulator.set_faults(Faults())


_seed = iter(range(1000, 100000))


def _upload(stack, key):
    body = jpeg(next(_seed))
    stack.engine.register(
        body, {"camera": [{"Name": "cat", "Confidence": 91, "FirstCategory": "Animal", "SecondCategory": "Pet"}]}
    )
    return stack.event(key, stack.put(key, body))


def _two_records(bad_record, good_event):
    return {"Records": [bad_record, good_event["Records"][0]]}


def _run(stack, event, mode="tags"):
    with captured_logs() as lines:
        summary = stack.app(mode=mode).handle(event, context())
    return summary, lines


def _good_labeled(stack, summary, key, mode="tags"):
    assert summary["labeled"] == 1, summary
    if mode == "tags":
        assert stack.tags(key)["autotag:cat"] == "91"


# --- hostile event fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("size", "²"),  # isdigit() is true, int() fails
        ("size", "9" * 5000),  # more digits than int() takes on 3.11
        ("size", 10**5000 - 1),  # a number too long to print on 3.11
        ("url", "http://[photos-1250000000.cos.ap-guangzhou.myqcloud.com/a.jpg"),  # unclosed [
        ("key", "/1250000000/photos/\ud800.jpg"),  # a lone surrogate: no UTF-8 for it
    ],
    ids=["superscript-two", "5000-digit-text", "5000-digit-number", "unclosed-bracket-url", "lone-surrogate"],
)
def test_a_hostile_event_field_fails_its_record_only(stack, field, value):
    bad = _upload(stack, f"hostile/{field}-bad.jpg")["Records"][0]
    bad["cos"]["cosObject"][field] = value
    if field == "url":
        bad["cos"]["cosObject"].pop("key")
    good = _upload(stack, f"hostile/{field}-good.jpg")
    summary, lines = _run(stack, _two_records(bad, good))
    _good_labeled(stack, summary, f"hostile/{field}-good.jpg")
    assert summary["malformed"] == 1, summary
    bad_lines = [line for line in lines if line["message"].startswith("malformed record")]
    assert len(bad_lines) == 1 and bad_lines[0]["level"] == "error" and bad_lines[0]["problem"], lines


def test_a_hostile_event_logged_whole_does_not_break_the_log(stack):
    bad = _upload(stack, "hostile/logged-bad.jpg")["Records"][0]
    bad["cos"]["cosObject"]["size"] = 10**5000
    bad["cos"]["cosObject"]["meta"]["x-cos-request-id"] = 7 * 10**5000
    good = _upload(stack, "hostile/logged-good.jpg")
    with captured_logs() as lines:
        summary = stack.app(log_event=True).handle(_two_records(bad, good), context())
    _good_labeled(stack, summary, "hostile/logged-good.jpg")
    assert any(line["message"] == "event received" for line in lines)


# --- hostile detect-label replies ------------------------------------------------------------

XML = "application/xml"
GOOD_LABEL = "<Labels><Name>dog</Name><Confidence>80</Confidence></Labels>"


def _wrap(inner: str) -> bytes:
    return f"<RecognitionResult><CameraLabels>{inner}</CameraLabels></RecognitionResult>".encode()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
    )
    + b"]><RecognitionResult><CameraLabels><Labels><Name>&lol9;</Name><Confidence>80</Confidence>"
    b"</Labels></CameraLabels></RecognitionResult>"
)

UNREADABLE = {
    "truncated xml": (XML, _wrap(GOOD_LABEL)[:-20]),
    "a &#1; character": (XML, _wrap("<Labels><Name>a&#1;b</Name><Confidence>80</Confidence></Labels>")),
    "nested 2000 deep": (XML, _wrap("<Labels>" * 2000 + "x" + "</Labels>" * 2000)),
    "billion laughs": (XML, BILLION_LAUGHS),
    "malformed json": ("application/json", b'{"RecognitionResult": {"CameraLabels": '),
    "an html page": ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "json not an object": ("application/json", b"[1, 2, 3]"),
    "xml of another shape": (XML, b"<Error><Code>none</Code></Error>"),
    "an empty body": (XML, b""),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_reply_fails_its_record_once_and_spares_the_other(stack, mode, name):
    bad_key, good_key = f"reply/{mode}/{name}-bad.jpg", f"reply/{mode}/{name}-good.jpg"
    bad, good = _upload(stack, bad_key), _upload(stack, good_key)
    before_tags = stack.tags(bad_key)
    before_meta = dict(stack.emulator.get_object_state("photos-1250000000", bad_key).metadata)
    stack.emulator.set_faults(Faults(detect_reply=UNREADABLE[name], detect_reply_keys={bad_key}))
    summary, lines = _run(stack, _two_records(bad["Records"][0], good), mode)  # never raises
    _good_labeled(stack, summary, good_key, mode)
    assert [f["key"] for f in summary["failed"]] == [bad_key], summary
    failed = summary["failed"][0]
    assert failed["reason"].startswith("unreadable reply") and failed["retryable"] is False, failed
    bad_result = next(r for r in summary["results"] if r["key"] == bad_key)
    assert bad_result["calls"]["DetectLabel"] == 1, bad_result  # not retried: a retry reads the same
    # Nothing written on the bad object: no marker, no label, the user's tags and metadata as they were.
    assert stack.tags(bad_key) == before_tags
    assert dict(stack.emulator.get_object_state("photos-1250000000", bad_key).metadata) == before_meta
    errors = [line for line in lines if line["level"] == "error"]
    # The one ERROR is the invocation's misconfiguration line: an unbound bucket can answer so,
    # so it names the key and points at `cos-autotag check`.
    assert len(errors) == 1 and errors[0]["keys"] == [bad_key], errors
    assert "cos-autotag check" in errors[0]["message"], errors


@pytest.mark.parametrize(
    "confidence",
    ["inf", "-inf", "nan", "9" * 5000, "1e400", "-5", "101", "", "eighty", "0x50"],
    ids=["inf", "-inf", "nan", "5000-digits", "1e400", "-5", "101", "empty", "eighty", "hex"],
)
def test_a_confidence_that_is_not_a_number_0_to_100_drops_that_label(stack, confidence):
    key = f"reply/confidence-{len(confidence)}-{confidence[:4]}.jpg"
    event = _upload(stack, key)
    reply = _wrap(f"<Labels><Name>odd</Name><Confidence>{confidence}</Confidence></Labels>" + GOOD_LABEL)
    stack.emulator.set_faults(Faults(detect_reply=(XML, reply)))
    summary, _ = _run(stack, event)
    assert summary["labeled"] == 1, summary
    tags = stack.tags(key)
    assert tags["autotag:dog"] == "80" and "autotag:odd" not in tags, tags


def test_a_json_reply_of_the_documented_shape_is_read(stack):
    key = "reply/json-good.jpg"
    event = _upload(stack, key)
    body = {"RecognitionResult": {"CameraLabels": {"Labels": [{"Name": "dog", "Confidence": "80"}]}}}
    stack.emulator.set_faults(Faults(detect_reply=("application/json", json.dumps(body).encode())))
    summary, _ = _run(stack, event)
    assert summary["labeled"] == 1 and stack.tags(key)["autotag:dog"] == "80", summary


def test_a_reply_with_no_label_at_all_is_still_a_labeled_marker(stack):
    """The documented shape with an empty label list is a real answer (nothing recognised)."""
    key = "reply/empty-labels.jpg"
    event = _upload(stack, key)
    stack.emulator.set_faults(Faults(detect_reply=(XML, _wrap(""))))
    summary, _ = _run(stack, event)
    assert summary["labeled"] == 1 and summary["failed"] == [], summary


def test_retries_of_one_record_are_bounded_to_three_detect_label_requests(stack):
    bad_key, good_key = "reply/5xx-bad.jpg", "reply/5xx-good.jpg"
    event = _two_records(_upload(stack, bad_key)["Records"][0], _upload(stack, good_key))
    stack.emulator.set_faults(Faults(error_5xx_rate=1.0, error_5xx_ops={"DetectLabel"}))
    with captured_logs(), pytest.raises(Exception) as raised:
        stack.app().handle(copy.deepcopy(event), context(time_limit_ms=60000))
    assert type(raised.value).__name__ == "RetryableFailure"
    assert stack.emulator.count(op="DetectLabel", key=bad_key) <= 3
    assert stack.emulator.count(op="DetectLabel", key=good_key) <= 3
