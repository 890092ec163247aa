"""Every field of the event is untrusted: the parser fails only with its own typed error."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cos_autotag.errors import EventError
from cos_autotag.events import CosRecord, MalformedRecord, parse_event
from tests.support.scf import RECORD_FIELDS, load_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
BASE = load_event("put.json")
PATHS = RECORD_FIELDS


def check(event):
    try:
        records = parse_event(event)
    except EventError:
        return
    for record in records:
        assert isinstance(record, (CosRecord, MalformedRecord))
        if isinstance(record, CosRecord):
            assert record.key and len(record.key.encode("utf-8", "surrogatepass")) <= 850
            assert record.bucket and record.region


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value(value):
    check(value)
    check({"Records": value})
    check({"Records": [value]})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), json_values)
def test_any_field_of_a_real_event_replaced(path, value):
    event = copy.deepcopy(BASE)
    target = event["Records"][0]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    check(event)


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=300))
def test_any_key_text(key):
    event = copy.deepcopy(BASE)
    obj = event["Records"][0]["cos"]["cosObject"]
    obj["key"] = "/1250000000/photos/" + key
    obj["url"] = "http://photos-1250000000.cos.ap-guangzhou.myqcloud.com/" + key
    check(event)


def test_oversized_event_is_refused_cleanly():
    event = {"Records": [copy.deepcopy(BASE["Records"][0]) for _ in range(5000)]}
    try:
        parse_event(event)
    except EventError as error:
        assert "5000 records" in str(error)
    else:
        raise AssertionError("an event with 5000 records was accepted")
