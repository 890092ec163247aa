"""The query language (`query.py`) as a MetaInsight `DatasetSimpleQuery` (Cloud Infinite 智能检索).

The server narrows, the client decides. `translate` gives a `Query` container that every object
the query matches also matches (a superset), and `find --dataset` / the gallery then run each
returned file's labels through the same `query.matches` as listing does, so both answer alike.
What the simple query cannot say exactly is left to that client-side pass:

- Substring words (`猫` finds 虎纹猫): a label is a tag *key* in tags mode, and the operators
  (eq, lt, lte, gt, gte, exist, prefix, match-phrase; 460/106375, fields 460/106154) test a
  field's *value*; in metadata mode every label shares one value
  (`x-cos-meta-autotag-labels = <pct-encoded name>:<conf>,...`) whose tokenization by
  `match-phrase` is not documented. Neither narrows but to "carries labels": any tag at all
  (`COSTaggingCount gt 0`; the function leaves its marker out when the user's tags fill the
  slots) or the labels' / marker's user metadata key.
- Confidence bounds (`猫>=60`): tag values are strings; whether `gte` on `COSTagging.*` compares
  them as numbers or as text ("9" > "60") is not documented. The bound is applied client-side.
- NOT: the negation of a superset is not a superset, so a NOT narrows nothing (`NOT 猫` also
  matches unlabeled objects, as it does when listing).
- Exact labels in tags mode (`="虎纹猫"`) do narrow: `exist COSTagging.autotag:<name>` for each
  spelling the label answers to (as typed, folded, and the engine's names in both languages).
  How a tag key holding `:` or Chinese is addressed as a field is not spelled out in the pages
  (436/107223 shows `COSTagging.<key>` with plain keys): this reading addresses it literally.
  `EXACT_TAG_FIELDS = False` turns it off (the other reading), which only costs more pages.
- User metadata: whether `COSUserMeta.<key>` names the key without `x-cos-meta-` or with it is
  not spelled out either: the test asks for both (`or`), and answers are read either way.
- Keys: `key:PREFIX` (and `--prefix`) is a `prefix` on `URI` (`cos://<bucket>/<key>`) or on
  `Filename` (the object path, in either reading of whether it is the key or the base name).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from cos_autotag import cos_facts
from cos_autotag.writeback import LABELS_META, MARKER_META, label_tag_key

from .backfill.listing import ListedObject, parse_size
from .object_labels import ObjectLabels, decode_labels, label_key
from .query import And, Everything, KeyPrefix, Label, Or, Query, names_of

MAX_RESULTS = 100  # files per page (460/106375)
MAX_SUB_QUERIES = 100
MAX_DEPTH = 4  # nesting <= 5, one level kept for the key prefix's `and`
EXACT_TAG_FIELDS = True

Clause = dict[str, Any]

# Both readings of a user metadata field's name: with and without `x-cos-meta-`.
_META_KEYS = tuple(name for key in (LABELS_META, MARKER_META) for name in (key[len(cos_facts.USER_META_PREFIX) :], key))


def _exist(field: str) -> Clause:
    return {"Operation": "exist", "Field": field}


def _any(clauses: list[Clause]) -> Clause:
    unique = {json.dumps(c, sort_keys=True, ensure_ascii=False): c for c in clauses}
    clauses = list(unique.values())
    return clauses[0] if len(clauses) == 1 else {"Operation": "or", "SubQueries": clauses}


def _all(clauses: list[Clause]) -> Clause:
    return clauses[0] if len(clauses) == 1 else {"Operation": "and", "SubQueries": clauses}


def labeled_clause(mode: str) -> Clause:
    """Objects that may carry labels, in the write-back mode(s) asked for. Tags mode: any tag at
    all (`COSTaggingCount`), as the function leaves the marker out when the user's tags fill the
    slots; metadata mode: the labels' or the marker's key, in both readings of its name."""
    tags = {"Operation": "gt", "Field": "COSTaggingCount", "Value": "0"}
    meta = [_exist(f"COSUserMeta.{key}") for key in _META_KEYS]
    if mode == "tags":
        return tags
    if mode == "metadata":
        return _any(meta)
    return _any([tags, *meta])


@functools.cache
def _engine_pairs() -> tuple[tuple[str, str], ...]:
    from .labels.classes import chinese_category_names, chinese_class_names, class_names

    pairs = list(zip(class_names(), chinese_class_names(), strict=True)) + list(chinese_category_names().items())
    return tuple(pairs)


def tag_keys(name: str) -> list[str]:
    """The tag keys a label may be written under: readable, and encoded where the strict rule refuses it."""
    return [key for key in (label_tag_key(name, False), label_tag_key(name, True)) if key]


def _spellings(text: str) -> list[str]:
    """The tag keys an exact label may be stored under: as typed, folded, and the engine's own names."""
    folded = names_of(text)
    out = {text, label_key(text), *folded}
    for english, chinese in _engine_pairs():
        if label_key(english) in folded or label_key(chinese) in folded:
            out.update((english, chinese))
    return sorted(out)


def _narrow(node: Query, mode: str, bucket: str) -> Clause | None:
    """A clause every match satisfies, or None when nothing narrows it server-side."""
    if isinstance(node, KeyPrefix):
        return key_clause(bucket, node.prefix) if node.prefix else None
    if isinstance(node, Label):
        if not (node.exact and EXACT_TAG_FIELDS) or mode == "metadata":
            return labeled_clause(mode)
        # Either form the function may have written the label in (readable, or encoded where
        # COS's strict tag rule refused the readable one).
        keys = {key for name in _spellings(node.text) for key in tag_keys(name)}
        exact = _any([_exist(f"COSTagging.{key}") for key in sorted(keys)])
        return exact if mode == "tags" else _any([exact, labeled_clause("metadata")])
    if isinstance(node, And):
        parts = [c for c in (_narrow(item, mode, bucket) for item in node.items) if c is not None]
        return _all(parts) if parts else None
    if isinstance(node, Or):
        branches = [_narrow(item, mode, bucket) for item in node.items]
        if any(b is None for b in branches):
            return None
        return _any([b for b in branches if b is not None])
    return None  # NOT narrows nothing (an unlabeled object matches `NOT 猫`), nor does the empty query


def key_clause(bucket: str, prefix: str) -> Clause:
    return _any(
        [
            {"Operation": "prefix", "Field": "URI", "Value": f"cos://{bucket}/{prefix}"},
            {"Operation": "prefix", "Field": "Filename", "Value": prefix},
        ]
    )


def translate(query: Query, mode: str, bucket: str, prefix: str = "") -> Clause | None:
    """The `Query` container of a DatasetSimpleQuery for this query (see the module's doc), or
    None when nothing narrows it (every file of the dataset is read and filtered)."""
    clauses = [key_clause(bucket, prefix)] if prefix else []
    narrowed = _narrow(query, mode, bucket) if not isinstance(query, Everything) else None
    if narrowed is not None and _count(narrowed) + 1 <= MAX_SUB_QUERIES and _depth(narrowed) < MAX_DEPTH:
        clauses.append(narrowed)
    # else: too big to send (a long OR of spellings); the client-side pass still decides.
    return _all(clauses) if clauses else None


def _depth(clause: Clause) -> int:
    return 1 + max((_depth(sub) for sub in clause.get("SubQueries") or []), default=0)


def _count(clause: Clause) -> int:
    subs = clause.get("SubQueries") or []
    return len(subs) + sum(_count(sub) for sub in subs)


def listed_of(file: Mapping[str, Any], bucket: str) -> ListedObject:
    """A dataset file as a listing would have given it."""
    return ListedObject(
        key_of(file, bucket),
        parse_size(file.get("Size")),
        str(file.get("COSStorageClass") or ""),
        str(file.get("ETag") or ""),
    )


def key_of(file: Mapping[str, Any], bucket: str) -> str:
    """An answer's object key, from its URI (`cos://<bucket>/<key>`), else its Filename."""
    uri = str(file.get("URI") or "")
    head = f"cos://{bucket}/"
    if uri.startswith(head):
        return uri[len(head) :]
    return str(file.get("Filename") or "")


def labels_of(file: Mapping[str, Any], key: str, mode: str) -> ObjectLabels:
    """An answer's labels through the one decoder, from its COSTagging or COSUserMeta map."""
    tags = _as_map(file.get("COSTagging"))
    if mode in ("auto", "tags"):
        found = decode_labels(key, tags=tags.items())
        if found.labeled or mode == "tags":
            return found
    meta = _as_map(file.get("COSUserMeta"))
    head = {}
    for name, value in meta.items():
        lowered = name.lower()
        full = lowered if lowered.startswith(cos_facts.USER_META_PREFIX) else cos_facts.USER_META_PREFIX + lowered
        if full in (MARKER_META, LABELS_META):
            head[full] = value
    return decode_labels(key, head=head)


def _as_map(value: Any) -> dict[str, str]:
    """A key -> value map from JSON (an object) or from the XML reading (a dict, or Key/Value items)."""
    if isinstance(value, Mapping):
        if "Key" in value and "Value" in value and len(value) == 2:
            return {str(value["Key"]): str(value["Value"] or "")}
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            out.update(_as_map(item))
        return out
    return {}
