"""What a metadata copy must send to keep the object as it was (`cos_autotag.carry`), and the
metadata marker's strict reading (`writeback.is_metadata_marker`): pure logic, fuzzed."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cos_autotag import carry
from cos_autotag.writeback import LABELS_META, MARKER_META, is_metadata_marker, metadata_not_ours

OWNER = "qcs::cam::uin/1:uin/1"


def grant(permission: str, **grantee: str) -> dict[str, Any]:
    return {"Grantee": {"Type": "CanonicalUser" if "ID" in grantee else "Group", **grantee}, "Permission": permission}


def test_encryption_is_carried_as_head_answers_it() -> None:
    assert carry.encryption_headers({}) == {}
    assert carry.encryption_headers({"x-cos-server-side-encryption": "AES256"}) == {
        "x-cos-server-side-encryption": "AES256"
    }
    kms = {"x-cos-server-side-encryption": "cos/kms", "x-cos-server-side-encryption-cos-kms-key-id": "k-1"}
    assert carry.encryption_headers(kms) == kms


@pytest.mark.parametrize(
    "head",
    [
        {"x-cos-server-side-encryption-customer-algorithm": "AES256"},
        {"x-cos-server-side-encryption": "rot13"},
        {"x-cos-server-side-encryption-cos-kms-key-id": "k-1"},
        {"x-cos-server-side-encryption": "AES256", "x-cos-server-side-encryption-cos-kms-key-id": "k-1"},
    ],
    ids=["sse-c", "unknown", "key-without-algorithm", "key-with-aes"],
)
def test_encryption_it_cannot_carry_is_refused(head: dict[str, str]) -> None:
    with pytest.raises(carry.CannotCarry):
        carry.encryption_headers(head)


def test_acl_becomes_grant_headers() -> None:
    acl = {
        "AccessControlList": {
            "Grant": [
                grant("FULL_CONTROL", ID=OWNER),
                grant("READ", URI="http://cam.qcloud.com/groups/global/AllUsers"),
                grant("READ_ACP", ID="qcs::cam::uin/2:uin/2"),
                grant("READ", ID="qcs::cam::uin/2:uin/2"),
            ]
        }
    }
    assert carry.acl_headers(acl) == {
        "x-cos-grant-full-control": f'id="{OWNER}"',
        "x-cos-grant-read": 'uri="http://cam.qcloud.com/groups/global/AllUsers",id="qcs::cam::uin/2:uin/2"',
        "x-cos-grant-read-acp": 'id="qcs::cam::uin/2:uin/2"',
    }
    one = {"AccessControlList": {"Grant": grant("FULL_CONTROL", ID=OWNER)}}  # the SDK's single grant
    assert carry.acl_headers(one) == {"x-cos-grant-full-control": f'id="{OWNER}"'}


@pytest.mark.parametrize(
    "acl",
    [
        {},
        {"AccessControlList": None},
        {"AccessControlList": {"Grant": []}},
        {"AccessControlList": {"Grant": [grant("OWN", ID=OWNER)]}},
        {"AccessControlList": {"Grant": [{"Grantee": {"Type": "Email"}, "Permission": "READ"}]}},
        {"AccessControlList": {"Grant": [grant("READ", ID='x", uri="evil')]}},
    ],
    ids=["empty", "no-list", "no-grant", "unknown-permission", "unknown-grantee", "quote-in-id"],
)
def test_an_acl_it_cannot_carry_is_refused(acl: dict[str, Any]) -> None:
    with pytest.raises(carry.CannotCarry):
        carry.acl_headers(acl)


def as_read(text: str) -> str:
    """A UTF-8 value as an HTTP client reads its raw bytes (latin-1)."""
    return text.encode("utf-8").decode("latin-1")


def test_metadata_read_raw_goes_back_as_its_text() -> None:
    assert carry.metadata_to_send({"x-cos-meta-city": as_read("里斯本"), "x-cos-meta-a": "plain"}) == {
        "x-cos-meta-city": "里斯本",
        "x-cos-meta-a": "plain",
    }


def test_metadata_bytes_that_are_not_utf8_cannot_go_back_unchanged() -> None:
    with pytest.raises(carry.CannotCarry, match="not UTF-8"):
        carry.metadata_to_send({"x-cos-meta-x": "caf\xe9"})


def test_percent_encoded_metadata_goes_back_decoded_only_when_the_event_says_so() -> None:
    encoded = quote("小明", safe="")
    assert carry.metadata_to_send({"x-cos-meta-o": encoded}, {"x-cos-meta-o": "小明"}) == {"x-cos-meta-o": "小明"}
    with pytest.raises(carry.CannotCarry, match="percent-encoded"):
        carry.metadata_to_send({"x-cos-meta-o": encoded})
    # The event holding the same ASCII: the user's own text, sent as it is.
    assert carry.metadata_to_send({"x-cos-meta-o": encoded}, {"x-cos-meta-o": encoded}) == {"x-cos-meta-o": encoded}
    with pytest.raises(carry.CannotCarry):
        carry.metadata_to_send({"x-cos-meta-o": encoded}, {"x-cos-meta-o": "another"})
    # ASCII escapes, or escapes that are not UTF-8, are the user's own text: sent as they are.
    assert carry.metadata_to_send({"x-cos-meta-p": "100%25 %41"}) == {"x-cos-meta-p": "100%25 %41"}
    assert carry.metadata_to_send({"x-cos-meta-p": "%FF%FE"}) == {"x-cos-meta-p": "%FF%FE"}


@given(st.dictionaries(st.text("abcxyz-", max_size=12), st.text(max_size=40), max_size=4), st.text(max_size=40))
def test_metadata_to_send_is_total_and_round_trips_raw_reads(meta: dict[str, str], event_value: str) -> None:
    try:
        out = carry.metadata_to_send({k: as_read(v) for k, v in meta.items()}, {"x-cos-meta-a": event_value})
    except carry.CannotCarry:
        return
    for name, value in meta.items():
        sent = out[name.lower()]
        # What the SDK sends (UTF-8) is the bytes that were read, unless a percent form was decoded.
        assert sent == value or (value.isascii() and "%" in value)


@given(
    st.recursive(
        st.none() | st.text(max_size=10) | st.integers(),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=10), c),
        max_leaves=20,
    )
)
def test_acl_headers_is_total(acl: Any) -> None:
    with contextlib.suppress(carry.CannotCarry):
        carry.acl_headers(acl if not isinstance(acl, dict) else {"AccessControlList": acl})


@pytest.mark.parametrize("value", ["v1", "v1:4ca403b7808be419", "v2:4ca403b7808be419:", "v2::", "v2:tok:a1b2.c3d4"])
def test_metadata_markers(value: str) -> None:
    assert is_metadata_marker(value)


@pytest.mark.parametrize("value", ["", "off", "v1:", "v1:a b", "v2:tok", "v3:x:", "V1", " v1", "v1\n", "v2:tok:zz"])
def test_not_metadata_markers(value: str) -> None:
    assert not is_metadata_marker(value)


@given(st.text(max_size=80))
def test_marker_reading_is_total(value: str) -> None:
    assert is_metadata_marker(value) in (True, False)


def test_the_users_headers_are_named_with_what_to_rename() -> None:
    assert metadata_not_ours({}) is None
    assert metadata_not_ours({MARKER_META: "v1:abc", LABELS_META: "x:1"}) is None
    assert "rename it" in (metadata_not_ours({MARKER_META: "off"}) or "")
    assert (metadata_not_ours({LABELS_META: "mine"}) or "").startswith(LABELS_META)
