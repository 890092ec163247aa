"""The query language (`query.py`) as SQL over the label index (`gallery/index.py`).

`query.matches` is the meaning; this is the same meaning said to SQLite, so a page or a `find`
over 300k indexed objects is answered by the database's indexes instead of a Python loop over
every row (tests/unit/test_query_sql.py checks the two agree on generated queries and labels).

The index keeps, per object, one `labels` row per name each label answers to (its own folded
name and, where the offline engine knows it, its other language's: `query.names_of`), pointing
at a `names` row holding that folded name as UTF-8 bytes. Matching on bytes keeps Python's
meaning exactly: `=` is byte equality, and a substring of valid UTF-8 is a substring of the
text (UTF-8 is self-synchronizing), with no SQL case or width folding of its own and no
trouble with NUL. A word scans the small `names` table only, then follows the index on
(name_id, confidence) to the objects.
"""

from __future__ import annotations

from .object_labels import label_key
from .query import And, Everything, KeyPrefix, Label, Not, Query

# Older SQLite builds allow 999 bound values: beyond, the caller evaluates in Python instead.
MAX_PARAMETERS = 900
SQL_OPERATORS = {">=": ">=", ">": ">", "<=": "<=", "<": "<", "=": "="}


def name_bytes(folded: str) -> bytes:
    """A folded name as the index stores and compares it (lone surrogates kept, as Python's `in` does)."""
    return folded.encode("utf-8", "surrogatepass")


def where(query: Query, key_column: str = "o.key") -> tuple[str, list[object]] | None:
    """A WHERE expression over the objects table (aliased by `key_column`'s table) and its
    parameters, or None when it would bind too many values (evaluate with `query.matches`)."""
    params: list[object] = []
    sql = _node(query, key_column, params)
    return (sql, params) if len(params) <= MAX_PARAMETERS else None


def _node(node: Query, key: str, params: list[object]) -> str:
    if isinstance(node, Everything):
        return "1"
    if isinstance(node, Label):
        wanted = name_bytes(label_key(node.text))
        params.append(wanted)
        names = "alias = ?" if node.exact else "instr(alias, ?) > 0"
        bound = ""
        if node.op is not None:
            bound = f" AND confidence {SQL_OPERATORS[node.op]} ?"
            params.append(node.bound)
        return f"{key} IN (SELECT key FROM labels WHERE name_id IN (SELECT id FROM names WHERE {names}){bound})"
    if isinstance(node, KeyPrefix):
        if not node.prefix:
            return "1"
        params.extend((len(node.prefix), node.prefix))
        return f"substr({key}, 1, ?) = ?"
    if isinstance(node, Not):
        return f"NOT ({_node(node.item, key, params)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(_node(item, key, params) for item in node.items) + ")"
