"""The query language: the parser never fails but with QueryError, and every tree round-trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cos_autotag_tools.query import (
    And,
    Everything,
    KeyPrefix,
    Label,
    Not,
    Or,
    QueryError,
    best_confidence,
    key_prefix,
    matches,
    parse,
)

LABELS = [("虎纹猫", 88), ("埃及猫", 61), ("建筑", 40)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("猫", True),
        ('="虎纹猫"', True),
        ("=猫", False),
        ("猫>=60", True),
        ("猫>90", False),
        ("建筑<=40", True),
        ("猫 AND NOT 狗", True),
        ("猫 NOT 建筑", False),
        ("狗 OR 建筑", True),
        ("(狗 OR 鸟) 猫", False),
        ("key:photos/", True),
        ("key:other/ OR 猫>=88", True),
        ('="tiger cat"', True),  # 虎纹猫 in English, from the offline engine's tables
        ("Egyptian", True),
        ("", True),
    ],
)
def test_queries_over_one_object(query: str, expected: bool) -> None:
    assert matches(parse(query), "photos/a.jpg", LABELS) is expected


@pytest.mark.parametrize(
    ("query", "hint"),
    [
        ('"猫', "unclosed quote"),
        ("(猫", "missing )"),
        ("猫)", "unexpected )"),
        ("猫 AND", "ends where a label was expected"),
        ("OR 猫", "needs a label before and after"),
        ("猫>=abc", "confidence 0 to 100"),
        ("猫>=101", "confidence 0 to 100"),
        (">=5", "needs a label before it"),
    ],
)
def test_parse_errors_say_what_to_do(query: str, hint: str) -> None:
    with pytest.raises(QueryError, match=re.escape(hint)):
        parse(query)


def test_find_helpers() -> None:
    assert best_confidence(parse("猫 NOT 建筑"), LABELS) == 88
    assert best_confidence(parse("key:a"), LABELS) is None
    assert key_prefix(parse("key:a/ key:a/b/ 猫")) == "a/b/"
    assert key_prefix(parse("key:a/ OR 猫")) == ""
    assert parse("  ") == Everything()


@settings(max_examples=1000)
@given(st.lists(st.sampled_from([*'猫狗 ()"=<>:ke\\N019-', " AND ", " OR ", "NOT ", "key:"]), max_size=20).map("".join))
def test_the_parser_never_fails_but_with_query_error(query: str) -> None:
    try:
        tree = parse(query)
    except QueryError as error:
        assert str(error)
        return
    assert parse(str(tree)) == tree


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_text_parses_or_says_why(query: str) -> None:
    try:
        tree = parse(query)
    except QueryError:
        return
    assert parse(str(tree)) == tree
    matches(tree, "k", LABELS)


texts = st.text(min_size=1, max_size=8).filter(lambda t: t.strip())
leaves = st.one_of(
    st.builds(Label, texts, st.booleans()),
    st.builds(
        lambda t, e, op, b: Label(t, e, op, b),
        texts,
        st.booleans(),
        st.sampled_from([">=", ">", "<=", "<", "="]),
        st.integers(0, 100),
    ),
    st.builds(KeyPrefix, st.text(max_size=8)),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(
            lambda xs: And(tuple(xs)),
            st.lists(children.filter(lambda c: not isinstance(c, And)), min_size=2, max_size=3),
        ),
        st.builds(lambda xs: Or(tuple(xs)), st.lists(children, min_size=2, max_size=3)),
    ),
    max_leaves=8,
)


@settings(max_examples=500)
@given(trees)
def test_every_tree_round_trips(tree: object) -> None:
    assert parse(str(tree)) == tree
