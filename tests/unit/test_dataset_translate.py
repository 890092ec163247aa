"""`dataset_query.translate` narrows and never loses a match.

For generated queries and objects labeled as the function writes them (tags mode, readable and
encoded; metadata mode; the user's own tags and metadata beside; unlabeled), every object that
listing finds (`query.matches` on its labels) satisfies the translated `Query` under the
emulator's evaluator of the documented operators, and the translated query is one the
emulator accepts (depth and sub-query limits).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cos_autotag.label import Label as FunctionLabel
from cos_autotag.writeback import LABELS_META, MARKER_META, encode_labels_meta, plan_tags
from cos_autotag_tools import cos_facts
from cos_autotag_tools.dataset_query import labels_of, translate
from cos_autotag_tools.emulator.dataset import _check, _matches
from cos_autotag_tools.object_labels import label_key
from cos_autotag_tools.query import Everything, Label, Query, matches
from tests.support.query_trees import query_trees

BUCKET = "photos-1250000000"
# Few names, so generated queries often name what the objects carry, in another spelling or language.
NAMES = ["猫", "虎纹猫", "虎斑猫", "tabby cat", "Tabby Cat", "狗", "a b", "x:y", "ß"]
words = st.one_of(st.sampled_from(["猫", "cat", "CAT", "tabby", "虎", "b", "ss", "x:y"]),
                  st.sampled_from(NAMES)).filter(lambda t: bool(label_key(t)))  # fmt: skip
trees = query_trees(words, ["", "a", "a/", "b/", "z"], max_leaves=5)
labelings = st.tuples(
    st.sampled_from(["tags", "encoded", "metadata", "none"]),
    st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 100)), max_size=4, unique_by=lambda x: x[0]),
    st.booleans(),  # the user's own tags and metadata beside
)


def document(key: str, how: str, labels: list[tuple[str, int]], user: bool) -> dict[str, object]:
    """The object as MetaInsight indexes it (the emulator's document: 460/106154's fields)."""
    tags = [("owner", "alice"), ("猫", "not a label")] if user else []
    meta = {"album": "summer"} if user else {}
    found = [FunctionLabel(n, c) for n, c in labels]
    if how in ("tags", "encoded"):
        tags = plan_tags(tags, found, "token", encode=how == "encoded").tags
    elif how == "metadata":
        meta[MARKER_META[len(cos_facts.USER_META_PREFIX) :]] = "v1:token"
        meta[LABELS_META[len(cos_facts.USER_META_PREFIX) :]] = encode_labels_meta(found)
    return {"URI": f"cos://{BUCKET}/{key}", "Filename": key, "COSTagging": dict(tags),
            "COSTaggingCount": len(tags), "COSUserMeta": meta}  # fmt: skip


@settings(max_examples=400, deadline=None)
@example(Label("Tabby Cat", True), [("tags", [("tabby cat", 50)], False)], "tags", "")  # spelled otherwise
@example(Label("tabby cat", True), [("encoded", [("虎斑猫", 50)], True)], "auto", "")  # the other language
@given(
    query=st.one_of(trees, st.just(Everything())),
    objects=st.lists(labelings, min_size=1, max_size=5),
    mode=st.sampled_from(["auto", "tags", "metadata"]),
    prefix=st.sampled_from(["", "a/", "b"]),
)
def test_the_dataset_answer_holds_every_listing_match(
    query: Query, objects: list[tuple[str, list[tuple[str, int]], bool]], mode: str, prefix: str
) -> None:
    server = translate(query, mode, BUCKET, prefix)
    if server is not None:
        _check(server)  # the emulator's limits: a query the service refuses would lose everything
    for i, (how, labels, user) in enumerate(objects):
        key = f"{'ab'[i % 2]}/{i}.jpg"
        doc = document(key, how, labels, user)
        found = labels_of(doc, key, mode)
        if key.startswith(prefix) and matches(query, key, found.labels):
            assert server is None or _matches(server, doc), (key, doc, server)
