"""The one label decoder never raises and never lets a value it cannot read pass for a label;
what the tools print carries no control character or escape sequence."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cos_autotag.writeback import LABELS_META, MARKER_META
from cos_autotag_tools.object_labels import clean, decode_labels, json_text, label_lines

HOSTILE_VALUES = ["²", "٣", "9.5", "-1", "101", "1e400", "inf", "NaN", "9" * 5000, " 42 ", "", "\x1b[2J"]
values = st.sampled_from(HOSTILE_VALUES) | st.text(max_size=60)
names = st.text(max_size=40)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.one_of(names, names.map(lambda n: "autotag:" + n)), values), max_size=12))
def test_tags_never_raise_and_every_label_is_a_whole_number_0_to_100(tags: list[tuple[str, str]]) -> None:
    found = decode_labels("k", tags=tags)
    for _, confidence in found.labels:
        assert isinstance(confidence, int) and 0 <= confidence <= 100
    label_entries = [t for t in tags if t[0].startswith("autotag:") and len(t[0]) > len("autotag:")]
    assert len(found.labels) + len(found.unreadable) == len(label_entries)
    json.loads(json_text(found.as_dict()))


@settings(max_examples=300)
@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=20)))
def test_metadata_never_raises(labels_value: str, marker: str | None) -> None:
    head = {LABELS_META: labels_value}
    if marker is not None:
        head[MARKER_META] = marker
    found = decode_labels("k", head=head)
    assert all(0 <= c <= 100 for _, c in found.labels)


def test_values_that_look_numeric_but_are_not_a_confidence_are_unreadable() -> None:
    tags = [("autotag", "v1:x")] + [(f"autotag:n{i}", v) for i, v in enumerate(HOSTILE_VALUES)]
    found = decode_labels("k", tags=tags)
    assert found.labels == (("n9", 42),)
    assert [n for n, _ in found.unreadable] == [f"n{i}" for i in range(len(HOSTILE_VALUES)) if i != 9]


def test_percent_encoded_escape_sequences_decode_but_never_print_raw() -> None:
    found = decode_labels("k", head={MARKER_META: "v1:t", LABELS_META: "%1B%5D0%3Bpwned%07%1B%5B2J:90,ok:80"})
    assert found.labels[0] == ("\x1b]0;pwned\x07\x1b[2J", 90)
    printed = "\n".join(label_lines(found.labels))
    assert "\x1b" not in printed and "\x07" not in printed and "ok" in printed


@settings(max_examples=500)
@given(st.text())
def test_clean_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    out = clean(text)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in out)
    assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    document = json_text({"v": text})
    assert json.loads(document) == {"v": text}
    assert not any((ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F for ch in document)
