"""Hypothesis strategies for query trees, shared by the tests that check a query's translations."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from cos_autotag_tools.query import And, KeyPrefix, Label, Not, Or, Query

COMPARISONS = [">=", ">", "<=", "<", "="]


def query_trees(words: st.SearchStrategy[str], prefixes: Sequence[str], max_leaves: int) -> st.SearchStrategy[Query]:
    """Trees of NOT/AND/OR over labels named from `words` (bare or compared) and key prefixes from `prefixes`."""
    leaves = st.one_of(
        st.builds(Label, words, st.booleans()),
        st.builds(Label, words, st.booleans(), st.sampled_from(COMPARISONS), st.integers(0, 100)),
        st.builds(KeyPrefix, st.sampled_from(list(prefixes))),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(Not, children),
            st.builds(lambda xs: And(tuple(xs)), st.lists(children, min_size=2, max_size=3)),
            st.builds(lambda xs: Or(tuple(xs)), st.lists(children, min_size=2, max_size=3)),
        ),
        max_leaves=max_leaves,
    )
