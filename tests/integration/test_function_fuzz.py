"""Property-based: generated hostile events and detect-label replies through the real handler.

Each example sends one invocation with three records: a good photo, a "victim" photo whose
detect-label reply is generated (truncated, nested, hostile names and numbers, wrong content
types), and a record whose event fields are generated (missing, wrong types, huge, odd text).
Whatever they hold:
- the invocation raises nothing but the function's retry signal;
- the good photo is labeled;
- no invalid tag or header reaches COS (the emulator refuses those with a 4xx: none in its log);
- where no label was written, the victim's tags and metadata are exactly as the user left them.

`make test` runs a bounded number of examples; set AUTOTAG_FUZZ_EXAMPLES for more.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cos_autotag.errors import RetryableFailure
from cos_autotag_tools.emulator import Faults
from tests.support.constants import BUCKET
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.scf import RECORD_FIELDS, context

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("AUTOTAG_FUZZ_EXAMPLES", "100"))
USER_TAGS = "owner=alice&autotagged=no"
USER_META = {"x-cos-meta-note": "keep me"}
WRITE_OPS = ("PutObjectTagging", "CopyObject", "DeleteObjectTagging")

_counter = itertools.count()


@pytest.fixture(scope="module")
def stack():
    with running_stack() as s:
        yield s


@pytest.fixture(scope="module")
def apps(stack):
    return {mode: stack.app(mode=mode) for mode in ("tags", "metadata")}


# --- generated values ----------------------------------------------------------------------------


def _too_long_to_print() -> int:
    return 10**5000  # more digits than str() takes on Python 3.11


odd_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\x00", "\x1b", "²", "&", "<", "%"]),
    max_size=40,
) | st.sampled_from(["", " ", "²", "9" * 5000, "%ZZ", "[", "http://[", "/1250000000/photos/", "\ud800"])
odd_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.builds(_too_long_to_print)
    | st.sampled_from([-1, 0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)
EVENT_FIELDS = [path for path in RECORD_FIELDS if path != ("cos",)]
MISSING = object()
event_changes = st.lists(
    st.tuples(st.sampled_from(EVENT_FIELDS), st.just(MISSING) | odd_value), min_size=1, max_size=4
) | st.just([((), MISSING)])  # () replaces the whole record

label_name = odd_text | st.sampled_from(["cat", "a,b", "x" * 300, "autotag", "=", "标签", "&amp;", "\x7f"])
confidence = (
    odd_text | st.sampled_from(["inf", "-inf", "nan", "1e400", "101", "-1", "80", "99.9"]) | st.integers().map(str)
)


@st.composite
def labels_xml(draw) -> str:
    items = draw(st.lists(st.tuples(label_name, confidence), max_size=4))
    return "".join(f"<Labels><Name>{escape(n)}</Name><Confidence>{escape(c)}</Confidence></Labels>" for n, c in items)


@st.composite
def replies(draw) -> tuple[str, bytes]:
    content_type = draw(
        st.sampled_from(
            ["application/xml", "application/json", "text/html", "text/plain", "application/xml; charset=utf-8", ""]
        )
    )
    kind = draw(st.sampled_from(["labels", "truncated", "nested", "json", "bytes", "scene-text"]))
    inner = draw(labels_xml())
    xml = f"<RecognitionResult><CameraLabels>{inner}</CameraLabels></RecognitionResult>"
    if kind == "labels":
        body = xml.encode("utf-8", "replace")
    elif kind == "truncated":
        raw = xml.encode("utf-8", "replace")
        body = raw[: draw(st.integers(0, len(raw)))]
    elif kind == "nested":
        depth = draw(st.integers(1, 3000))
        nested = "<Labels>" * depth + "x" + "</Labels>" * depth
        body = f"<RecognitionResult><CameraLabels>{nested}</CameraLabels></RecognitionResult>".encode()
    elif kind == "json":
        value = draw(odd_value)
        try:
            body = json.dumps({"RecognitionResult": {"CameraLabels": {"Labels": value}}}).encode("utf-8", "replace")
        except ValueError:  # an integer too long to print: the reply is then cut short
            body = b'{"RecognitionResult": {"CameraLabels": {"Labels": 1'
    elif kind == "scene-text":
        body = f"<RecognitionResult><CameraLabels>{escape(draw(odd_text))}</CameraLabels></RecognitionResult>".encode(
            "utf-8", "replace"
        )
    else:
        body = draw(st.binary(max_size=200))
    return content_type, body


def _apply(record: dict, changes) -> object:
    for path, value in changes:
        if not path:
            return value if value is not MISSING else "not a record"
        target = record
        for part in path[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value is MISSING:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    return record


# --- the property --------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mode=st.sampled_from(["tags", "metadata"]), reply=replies(), changes=event_changes)
def test_hostile_events_and_replies_never_sink_the_batch(stack, apps, mode, reply, changes):
    n = next(_counter)
    good_key, victim_key, hostile_key = f"fuzz/{n}/good.jpg", f"fuzz/{n}/victim.jpg", f"fuzz/{n}/hostile.jpg"
    good_body = jpeg(5000 + n)
    label = {"Name": "cat", "Confidence": 91, "FirstCategory": "Animal", "SecondCategory": "Pet"}
    stack.engine.register(good_body, {"camera": [label]})
    good = stack.event(good_key, stack.put(good_key, good_body))
    victim = stack.event(victim_key, stack.put(victim_key, jpeg(90000 + n), Tagging=USER_TAGS, Metadata=USER_META))
    hostile = stack.event(hostile_key, stack.put(hostile_key, jpeg(190000 + n)))
    before = stack.emulator.get_object_state(BUCKET, victim_key)
    hostile_record = _apply(hostile["Records"][0], changes)
    event = {"Records": [victim["Records"][0], hostile_record, good["Records"][0]]}
    stack.emulator.set_faults(Faults(detect_reply=reply, detect_reply_keys={victim_key}))
    since = time.time()
    try:
        with captured_logs():
            summary = apps[mode].handle(event, context())
    except RetryableFailure:
        summary = None  # allowed: the only exception the handler may raise
    finally:
        stack.emulator.set_faults(Faults())

    good_state = stack.emulator.get_object_state(BUCKET, good_key)
    if mode == "tags":
        assert good_state.tags.get("autotag:cat") == "91", summary
    else:
        assert "cat" in good_state.metadata.get("x-cos-meta-autotag-labels", ""), summary
    refused = [
        r for r in stack.emulator.requests if r.timestamp >= since and r.op in WRITE_OPS and 400 <= r.status < 500
    ]
    assert refused == [], refused
    after = stack.emulator.get_object_state(BUCKET, victim_key)
    victim_result = next((r for r in (summary or {}).get("results", []) if r["key"] == victim_key), None)
    if victim_result is not None:  # a reply, however hostile, is read once: a retry reads the same
        assert victim_result["calls"].get("DetectLabel", 0) <= 1, victim_result
    labeled = victim_result is not None and victim_result["outcome"] == "labeled"
    if not labeled:
        assert after.tags == before.tags and after.metadata == before.metadata, victim_result
    else:  # labels written: the user's own tags and metadata are still there
        assert {"owner": "alice", "autotagged": "no"}.items() <= after.tags.items()
        assert after.metadata.get("x-cos-meta-note") == "keep me"
