"""The whole-line check that lets a normal log line skip the field-by-field redaction pass.

It may send a clean line through the pass (only slower), but it must never let through a line
the pass would have changed: fuzzed here with secrets, their encodings, secret-named fields,
long integers, deep nesting and odd types mixed into ordinary fields.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from cos_autotag import observability

TOKEN = "Ux7pQ+wErT9/yUi0oPaS+dFgH/jK==lZ"
ODD_SECRET = 'a"b\\c\nd'  # no long plain run: every form of it is looked for, JSON escapes included
SECRETS = (TOKEN, "AKIDlinecheck0001", ODD_SECRET)

SUSPECT = [
    *SECRETS,
    quote(TOKEN, safe=""),
    quote_plus(quote_plus(TOKEN)),
    b64encode(TOKEN.encode()).decode(),
    json.dumps(ODD_SECRET)[1:-1],
    repr(ODD_SECRET)[1:-1],
    "q-signature=" + "ab" * 20,
    "Q-Sign-Time",
    "sign_key: " + "0" * 40,
    "redis://:pw0rd123@h:6379",
    "rediss%3A%2F%2F%3Apw%40h",
    "Authorization",
    "x-cos-security-token",
    "ſecret",  # re.IGNORECASE reads it as `secret`
    "tokEn",
]
NAMES = st.one_of(
    st.sampled_from(["bucket", "key", "labels", "calls", "outcome", "password", "Token", "ſecret", "event", "message"]),
    st.text(max_size=12),
)
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SUSPECT),
    st.tuples(st.text(max_size=8), st.sampled_from(SUSPECT), st.text(max_size=8)).map("".join),
)
SCALARS = st.one_of(
    TEXT,
    st.integers(),
    st.integers(min_value=2**250, max_value=2**300),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
    st.sets(st.integers(), max_size=3),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(NAMES, st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def field_by_field(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: observability.redact(v, "" if k in ("message", "event") else k) for k, v in fields.items()}


def rendered(fields: dict[str, Any]) -> str:
    return observability._dumps(fields)


def setup_module() -> None:
    observability.configure("INFO")
    for secret in SECRETS:
        observability.register_secret(secret)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=8))
def test_a_line_the_check_lets_through_is_what_the_field_pass_would_print(fields: dict[str, Any]) -> None:
    assert rendered(observability._redact_processor(None, "info", dict(fields))) == rendered(field_by_field(fields))


def test_the_check_lets_a_normal_record_line_through_and_stops_each_suspect() -> None:
    normal = {
        "event": "record labeled",
        "bucket": "photos-1250000000",
        "key": "uploads/cat 001.jpg",
        "labels": [{"name": "Cat", "confidence": 97}],
        "calls": {"GetObjectTagging": 2, "DetectLabel": 1},
        "duration_ms": 12,
    }
    assert not observability._needs_field_pass(dict(normal))
    for suspect in [*SUSPECT, 2**300, deep(observability.MAX_DEPTH), b"bytes", "云"]:
        assert observability._needs_field_pass({**normal, "detail": suspect}), suspect
    assert observability._needs_field_pass({**normal, "password": ""})
