import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cos_autotag.label import Label
from cos_autotag.writeback import (
    LABELS_META,
    MARKER_META,
    Marker,
    clean_tag_text,
    decode_label_tag,
    decode_labels_meta,
    encoded_label_key,
    label_room_in_tags,
    marker_in_tags,
    marker_token,
    parse_marker,
    plan_metadata,
    plan_tags,
    read_tags,
    tag_marker_value,
)
from cos_autotag_tools import cos_facts

LABELS = [Label("cat", 90), Label("sofa", 70), Label("T-shirt (red), cotton", 65), Label("猫", 60)]


def valid_tags(tags):
    return len(tags) <= cos_facts.TAGS_MAX_PER_OBJECT and all(
        cos_facts.tag_text_is_valid(k, cos_facts.TAG_KEY_MAX_CHARS)
        and cos_facts.tag_text_is_valid(v, cos_facts.TAG_VALUE_MAX_CHARS)
        for k, v in tags
    )


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()[:4]


def test_user_tags_kept_own_labels_replaced():
    existing = [("owner", "alice"), ("autotag", "v1:old"), ("autotag:dog", "80")]
    plan = plan_tags(existing, LABELS[:2], "abc")
    # The marker is v2 now: it lists the label tags this write put on (LAYOUT: tags mode).
    marker = f"v2:abc:{digest('autotag:cat')}.{digest('autotag:sofa')}"
    assert plan.tags == [("owner", "alice"), ("autotag", marker), ("autotag:cat", "90"), ("autotag:sofa", "70")]
    assert valid_tags(plan.tags)


def test_label_names_are_cleaned_to_cos_rules():
    plan = plan_tags([], LABELS, "abc")
    keys = [k for k, _ in plan.tags]
    assert "autotag:T-shirt red cotton" in keys
    assert valid_tags(plan.tags)
    assert clean_tag_text("(),,,", 100) == ""
    assert len(clean_tag_text("x" * 500, 127)) == 127


def test_the_encoded_form_keeps_non_ascii_names_in_strict_safe_keys():
    # Was: an ASCII-only fallback that dropped "猫" (issue 15's bug); now it is written encoded.
    plan = plan_tags([], LABELS, "abc", encode=True)
    assert all(strict_problem(k, is_key=True) is None and strict_problem(v, is_key=False) is None for k, v in plan.tags)
    assert plan.left_out_invalid == [] and [lb.name for lb in plan.written] == [lb.name for lb in LABELS]
    assert ("autotag:b64:" + base64.b64encode("猫".encode()).decode(), "60") in plan.tags
    assert ("autotag:cat", "90") in plan.tags  # strict-safe labels stay readable in every mode
    assert not plan.strict_unsafe and plan_tags([], LABELS, "abc").strict_unsafe


def test_never_more_than_ten_tags_and_never_a_users_tag_dropped():
    existing = [(f"user{i}", "v") for i in range(7)]
    plan = plan_tags(existing, LABELS, "abc")
    assert len(plan.tags) == 10
    assert plan.tags[:7] == existing
    assert [lb.name for lb in plan.written] == ["cat", "sofa"]
    assert len(plan.left_out_for_room) == 2


def test_room_and_marker():
    assert label_room_in_tags([(f"u{i}", "v") for i in range(9)]) == 0
    assert label_room_in_tags([("autotag", "v1"), ("autotag:cat", "9")]) == 9
    assert marker_in_tags([("autotag", "v1:zz")]) == "v1:zz"
    assert marker_in_tags([("autotag", "off")]) is None  # the user's tag, not a marker
    assert marker_in_tags([("autotagx", "v1:zz")]) is None


def test_metadata_plan_keeps_everything_and_encodes_labels():
    head = {
        "Content-Type": "image/jpeg",
        "Cache-Control": "max-age=60",
        "Content-Disposition": "inline",
        "Expires": "Wed, 21 Oct 2030 07:28:00 GMT",
        "x-cos-storage-class": "STANDARD_IA",
        "x-cos-meta-camera": "pixel",
        "X-Cos-Meta-Owner": "bob",
        "x-cos-meta-autotag": "v1:old",
        "ETag": '"abc"',
    }
    plan = plan_metadata(head, LABELS, "tok")
    assert plan.metadata["x-cos-meta-camera"] == "pixel" and plan.metadata["x-cos-meta-owner"] == "bob"
    assert plan.metadata[MARKER_META] == "v1:tok"
    assert plan.headers == {
        "ContentType": "image/jpeg",
        "CacheControl": "max-age=60",
        "ContentDisposition": "inline",
        "Expires": "Wed, 21 Oct 2030 07:28:00 GMT",
    }
    assert plan.storage_class == "STANDARD_IA"
    assert plan.metadata[LABELS_META].isascii()
    assert decode_labels_meta(plan.metadata[LABELS_META]) == [(lb.name, lb.confidence) for lb in LABELS]


def test_metadata_plan_stays_within_two_kilobytes():
    head = {"Content-Type": "image/png", "x-cos-meta-big": "x" * 1950}
    many = [Label(f"label number {i}", 90 - i) for i in range(9)]
    plan = plan_metadata(head, many, "tok")
    size = sum(len(k) + len(v) for k, v in plan.metadata.items())
    assert size <= cos_facts.USER_META_MAX_BYTES
    assert plan.metadata["x-cos-meta-big"] == "x" * 1950
    assert plan.left_out_for_room


# --- the tag layout (LAYOUT.md, tags mode) ----------------------------------------------------

_STRICT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-_=.:/")


def strict_problem(text, *, is_key):
    """The API page's tag rule, implemented here (not the function's): ASCII letters, digits,
    space and + - _ = . : /; a key 1-127 bytes, a value under 256 bytes."""
    size = len(text.encode("utf-8"))
    if (is_key and size == 0) or size > (127 if is_key else 255):
        return "length"
    return None if set(text) <= _STRICT else "characters"


def utf8_problem(text, *, is_key):
    """The overview's reading, implemented here: letters, digits, space and + - = . _ : / @."""
    if not 1 <= len(text) <= (127 if is_key else 255):
        return "length"
    return None if all(ch.isalnum() or ch in " +-=._:/@" for ch in text) else "characters"


def test_users_tags_under_the_prefix_survive_labeling_and_relabeling():
    user = [("autotag:note", "keep me"), ("autotag:reviewed-by", "alice"), ("owner", "bob")]
    first = plan_tags(user, LABELS[:2], "t1")
    assert first.tags[:3] == user
    reading = read_tags(first.tags)
    assert reading.user == user and [n for n, _ in reading.labels] == ["cat", "sofa"]
    again = plan_tags(first.tags, [Label("dog", 77)], "")  # a relabel: the old labels go, the user's stay
    assert again.tags == [*user, ("autotag", f"v2::{digest('autotag:dog')}"), ("autotag:dog", "77")]


def test_a_users_numeric_tag_under_the_prefix_is_kept_once_a_v2_marker_says_what_is_ours():
    tags = [("autotag", "v2:t:" + digest("autotag:cat")), ("autotag:cat", "90"), ("autotag:year", "42")]
    reading = read_tags(tags)
    assert reading.user == [("autotag:year", "42")] and reading.labels == [("cat", 90)]


def test_legacy_v1_markers_own_the_prefix_tags_holding_a_whole_number_0_to_100():
    tags = [("autotag", "v1:tok"), ("autotag:猫", "93"), ("autotag:note", "keep me"), ("autotag:big", "101")]
    reading = read_tags(tags)
    assert reading.marker == Marker("v1", "tok")
    assert reading.ours == [("autotag", "v1:tok"), ("autotag:猫", "93")]
    assert reading.user == [("autotag:note", "keep me"), ("autotag:big", "101")]


def test_a_users_autotag_tag_that_is_not_a_marker_is_never_ours():
    for value in ("off", "v1:x:y", "v2:tok", "v2:tok:zzzz", "V1", "v1 ", ""):
        reading = read_tags([("autotag", value), ("autotag:cat", "90")])
        assert reading.marker is None and reading.marker_taken and reading.ours == [], value
    with pytest.raises(ValueError):
        plan_tags([("autotag", "off")], LABELS, "t")


def test_markers_parse_strictly():
    assert parse_marker("v1") == Marker("v1", "")
    assert parse_marker("v1:abc") == Marker("v1", "abc")
    assert parse_marker("v2::") == Marker("v2", "", frozenset())
    owned = frozenset({"a1b2", "c3d4"})
    assert parse_marker("v2:4ca403b7808be419:a1b2.c3d4") == Marker("v2", "4ca403b7808be419", owned)
    for bad in ("v2:t:a1b2.", "v2:t:A1B2", "v2:t:a1b", "v3:t:", "v2", "v1:a:b", "v1:a b", "v2:t:a1b2\n"):
        assert parse_marker(bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_marker_parsing_is_total_and_round_trips(text):
    parsed = parse_marker(text)
    assert parsed is None or isinstance(parsed, Marker)
    if parsed is not None and parsed.version == "v2":
        assert parse_marker(f"v2:{parsed.token}:{'.'.join(sorted(parsed.owned))}") == parsed
    assert isinstance(marker_token(text), str)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1), st.text(max_size=30))
def test_any_label_name_encodes_to_a_key_both_readings_accept_and_decodes_back(name, token):
    key = encoded_label_key(name)
    if not name.strip():
        assert key is None
        return
    assert key is not None
    assert strict_problem(key, is_key=True) is None and utf8_problem(key, is_key=True) is None
    decoded = decode_label_tag(key)
    assert decoded is not None and name.strip().startswith(decoded) and decoded
    assert len(decoded.encode()) <= 84 and (decoded == name.strip() or len(name.strip().encode()) > 84)
    # The marker of any write is valid under both readings too.
    value = tag_marker_value("4ca403b7808be419", [key] * 9)
    assert strict_problem(value, is_key=False) is None and utf8_problem(value, is_key=False) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.integers(0, 100)), max_size=9))
def test_encoded_plans_are_valid_under_the_strict_rule_and_read_back_as_written(labels):
    chosen = [Label(n, c) for n, c in labels]
    plan = plan_tags([("owner", "alice")], chosen, "4ca403b7808be419", encode=True)
    assert all(strict_problem(k, is_key=True) is None and strict_problem(v, is_key=False) is None for k, v in plan.tags)
    reading = read_tags(plan.tags)
    assert reading.user == [("owner", "alice")]
    assert [c for _, c in reading.labels] == [lb.confidence for lb in plan.written]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=12))
def test_reading_any_tag_set_is_total_and_splits_it(tags):
    reading = read_tags(tags)
    assert sorted(reading.ours + reading.user) == sorted(tags)
    for key in (k for k, _ in tags):
        decode_label_tag(key)


def test_the_refused_character_rule_is_isalnum_and_the_punctuation_for_every_code_point():
    """`TAG_REFUSED_CHARACTER` stands for "neither str.isalnum nor allowed punctuation", everywhere."""
    pattern = cos_facts.TAG_REFUSED_CHARACTER
    differ = [
        hex(cp)
        for cp in range(0x110000)
        if (pattern.search(chr(cp)) is None) != (chr(cp).isalnum() or chr(cp) in cos_facts.TAG_ALLOWED_PUNCTUATION)
    ]
    assert differ == []
