"""The label index answers a query in SQL (`query_sql.py`) exactly as `query.matches` does.

`query.matches` is the one meaning of the query language; hypothesis generates label sets
(Chinese, English names the offline engine knows in both languages, case and width variants,
NUL and other odd characters) and query trees, and the SQL answer must be the Python answer.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cos_autotag_tools.backfill.listing import ListedObject
from cos_autotag_tools.gallery.index import LabelIndex
from cos_autotag_tools.object_labels import ObjectLabels, label_key
from cos_autotag_tools.query import Everything, Query, matches, parse
from cos_autotag_tools.query_sql import where
from tests.support.query_trees import query_trees

# Names that share substrings, an engine pair in either language (tabby cat / 虎斑猫), folding.
NAMES = ["猫", "虎纹猫", "埃及猫", "虎斑猫", "tabby cat", "Tabby Cat", "ＣＡＴ", "狗", "dog", "猫\x00狗", "a%_b",
         "ß", "ss"]  # fmt: skip
name_texts = st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=4))
label_sets = st.lists(st.tuples(name_texts, st.integers(0, 100)), max_size=4)
KEYS = ["a/1.jpg", "a/2.png", "b/1.jpg", "b/猫.txt", "a%/x", "a_/y", "ab"]

words = st.one_of(st.sampled_from(["猫", "cat", "CAT", "tabby", "虎", "狗", "\x00", "%", "_", "s", "ß"]),
                  st.text(min_size=1, max_size=3)).filter(lambda t: bool(label_key(t)))  # fmt: skip
trees = query_trees(words, ["", "a", "a/", "a%", "a_", "b/猫", "z"], max_leaves=6)


def fill(index: LabelIndex, objects: list[list[tuple[str, int]]]) -> dict[str, tuple[tuple[str, int], ...]]:
    index.remove([row.key for row in index.select(Everything())])
    labels = {}
    for key, found in zip(KEYS, objects, strict=False):
        index.put(ListedObject(key, 1, "", '"e"'), ObjectLabels(key, "tags", "v1", tuple(found)))
        labels[key] = tuple(found)
    index.commit()
    return labels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(label_sets, min_size=1, max_size=len(KEYS)), query=st.one_of(trees, st.just(Everything())))
def test_sql_and_python_give_the_same_answer(
    tmp_path: Path, objects: list[list[tuple[str, int]]], query: Query
) -> None:
    index = LabelIndex(tmp_path / "index.sqlite", "b-1250000000", "ap-guangzhou")
    try:
        labels = fill(index, objects)
        assert where(query) is not None
        expected = [key for key in sorted(labels) if matches(query, key, labels[key])]
        assert [row.key for row in index.select(query)] == expected
        assert index.count(query, "", shown_only=False) == len(expected)
        for prefix in ("a", "b/"):
            assert [row.key for row in index.select(query, prefix)] == [k for k in expected if k.startswith(prefix)]
    finally:
        index.close()


def test_a_query_too_big_for_sql_is_answered_by_python(tmp_path: Path) -> None:
    index = LabelIndex(tmp_path / "index.sqlite", "b-1250000000", "ap-guangzhou")
    try:
        labels = fill(index, [[("虎纹猫", 90)], [("狗", 50)], [("tabby cat", 70)]])
        # 1,000 words joined by juxtaposition fit in the parser's 2,000 characters.
        query = parse("NOT 狗 " + "x " * 950 + "猫>=80 OR tabby")
        assert where(query) is None
        assert [row.key for row in index.select(query)] == [k for k in sorted(labels) if matches(query, k, labels[k])]
        assert [row.key for row in index.select(query)] == ["b/1.jpg"]  # tabby cat; no object carries x
    finally:
        index.close()
