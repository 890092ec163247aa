"""The emulator's signature checks against signatures made by the unmodified SDK signer."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
from qcloud_cos import CosConfig
from qcloud_cos.cos_auth import CosS3Auth

from cos_autotag_tools.emulator import auth
from cos_autotag_tools.emulator.errors import CosError

SID, SKEY = "AKIDunit", "unit-secret"
HOST = "photos-1250000000.cos.ap-guangzhou.myqcloud.com"
CREDS = {SID: SKEY}


def sdk_signed(
    method: str,
    key: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    expire: int = 10000,
) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """(decoded path, decoded query, lower-cased headers) of a request signed by the SDK."""
    conf = CosConfig(Region="ap-guangzhou", SecretId=SID, SecretKey=SKEY, Token=token)
    all_headers = {"Host": HOST, **(headers or {})}
    if token:
        all_headers["x-cos-security-token"] = token
    url = f"http://{HOST}/{requests.utils.quote(key, safe='/-_.~')}"
    prepared = requests.Request(method, url, params=params or {}, headers=all_headers).prepare()
    CosS3Auth(conf, key, params or {}, expire)(prepared)
    parts = urlsplit(prepared.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    return unquote(parts.path), query, {k.lower(): v for k, v in prepared.headers.items()}


def verify(path: str, query: list[tuple[str, str]], headers: dict[str, str], **kw: object) -> auth.SignedRequest:
    defaults: dict[str, object] = {"method": "GET", "credentials": CREDS, "token": None}
    defaults.update(kw)
    return auth.verify(path=path, query=query, headers=headers, **defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["a.jpg", "dir/with space+plus%.png", "中文/图片.jpg", "~odd~ key "])
def test_sdk_signature_verifies(key: str) -> None:
    path, query, headers = sdk_signed("GET", key, {"ci-process": "detect-label", "scenes": "web,camera"})
    signed = verify(path, query, headers)
    assert signed.secret_id == SID
    assert not signed.presigned


def test_signed_headers_cover_content_type_and_meta() -> None:
    path, query, headers = sdk_signed(
        "PUT", "k.jpg", headers={"Content-Type": "image/jpeg", "x-cos-meta-labels": "cat dog"}
    )
    verify(path, query, headers, method="PUT")
    headers["x-cos-meta-labels"] = "cat"
    with pytest.raises(CosError) as err:
        verify(path, query, headers, method="PUT")
    assert err.value.code == "SignatureDoesNotMatch"


def test_wrong_secret_key_is_a_mismatch() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg")
    with pytest.raises(CosError) as err:
        verify(path, query, headers, credentials={SID: "other"})
    assert (err.value.code, err.value.status) == ("SignatureDoesNotMatch", 403)


def test_unknown_secret_id() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg")
    with pytest.raises(CosError) as err:
        verify(path, query, headers, credentials={"AKIDother": SKEY})
    assert err.value.code == "InvalidAccessKeyId"


def test_missing_authorization_is_access_denied() -> None:
    with pytest.raises(CosError) as err:
        verify("/a.jpg", [], {"host": HOST})
    assert (err.value.code, err.value.status) == ("AccessDenied", 403)


def test_expired_signature() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg", expire=5)
    with pytest.raises(CosError) as err:
        verify(path, query, headers, now=time.time() + 3600)
    assert err.value.code == "AccessDenied"
    assert "expired" in err.value.message


def test_other_method_or_path_or_param_is_a_mismatch() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg", {"tagging": ""})
    for kwargs in ({"method": "DELETE"}, {"path": "/b.jpg"}, {"query": [("tagging", "x")]}):
        args = {"path": path, "query": query, "headers": headers, **kwargs}
        with pytest.raises(CosError) as err:
            verify(**args)  # type: ignore[arg-type]
        assert err.value.code == "SignatureDoesNotMatch", kwargs


def test_unsigned_parameter_or_cos_header_is_refused() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg")
    with pytest.raises(CosError, match="query parameter"):
        verify(path, [*query, ("versionId", "1")], headers)
    with pytest.raises(CosError, match="x-cos-meta-x header"):
        verify(path, query, {**headers, "x-cos-meta-x": "1"})


def test_token_must_match_when_configured() -> None:
    path, query, headers = sdk_signed("GET", "a.jpg", token="tok-1")
    verify(path, query, headers, token="tok-1")
    with pytest.raises(CosError) as err:
        verify(path, query, headers, token="tok-2")
    assert err.value.code == "AccessDenied"
    unsigned_path, unsigned_query, unsigned_headers = sdk_signed("GET", "a.jpg")
    with pytest.raises(CosError, match="security-token"):
        verify(unsigned_path, unsigned_query, unsigned_headers, token="tok-1")


def test_host_must_be_signed() -> None:
    value = auth.authorization(SID, SKEY, "GET", "/a.jpg", {}, {"content-type": "x"})
    with pytest.raises(CosError, match="host"):
        verify("/a.jpg", [], {"host": HOST, "content-type": "x", "authorization": value})


def test_presigned_query_verifies_and_can_be_tampered() -> None:
    value = auth.authorization(SID, SKEY, "GET", "/a.jpg", {}, {"host": HOST})
    query = parse_qsl(value, keep_blank_values=True)
    assert verify("/a.jpg", query, {"host": HOST}).presigned
    with pytest.raises(CosError) as err:
        verify("/b.jpg", query, {"host": HOST})
    assert err.value.code == "SignatureDoesNotMatch"


def test_post_policy_signature_matches_tencents_worked_example() -> None:
    # The intermediate values published with COS's POST Object documentation.
    policy_b64 = (
        "ewogICAgImV4cGlyYXRpb24iOiAiMjAxOS0wOC0zMFQwOTozODoxMi40MTRaIiwKICAgICJjb25kaXRpb25zIjogWwogICAgICAgIHsg"
        "ImFjbCI6ICJkZWZhdWx0IiB9LAogICAgICAgIHsgImJ1Y2tldCI6ICJleGFtcGxlYnVja2V0LTEyNTAwMDAwMDAiIH0sCiAgICAgICAg"
        "WyAic3RhcnRzLXdpdGgiLCAiJGtleSIsICJmb2xkZXIvc3ViZm9sZGVyLyIgXSwKICAgICAgICBbICJzdGFydHMtd2l0aCIsICIkQ29u"
        "dGVudC1UeXBlIiwgImltYWdlLyIgXSwKICAgICAgICBbICJzdGFydHMtd2l0aCIsICIkc3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiLCAi"
        "aHR0cHM6Ly9teS53ZWJzaXRlLyIgXSwKICAgICAgICBbICJlcSIsICIkeC1jb3Mtc2VydmVyLXNpZGUtZW5jcnlwdGlvbiIsICJBRVMy"
        "NTYiIF0sCiAgICAgICAgeyAicS1zaWduLWFsZ29yaXRobSI6ICJzaGExIiB9LAogICAgICAgIHsgInEtYWsiOiAiQUtJRFFqejNsdG9t"
        "cFZqQm5pNUxpdGtXSEZsRnB3a245VTVxIiB9LAogICAgICAgIHsgInEtc2lnbi10aW1lIjogIjE1NjcxNTA2OTI7MTU2NzE1Nzg5MiIg"
        "fQogICAgXQp9"
    )
    policy = base64.b64decode(policy_b64).decode()
    secret_key = "BQYIM75p8x0iWVFSIgqEKwFprpRSVHlz"
    key_time = "1567150692;1567157892"
    assert auth.hmac_sha1_hex(secret_key, key_time) == "39acc8c9f34ba5b19bce4e965b370cd3f62d2fba"
    assert auth.post_signature(secret_key, key_time, policy) == "7758dc9a832e9d301dca704cacbf9d9f8172fdef"
    fields = {
        "q-sign-algorithm": "sha1",
        "q-ak": "AKIDQjz3ltompVjBni5LitkWHFlFpwkn9U5q",
        "q-key-time": key_time,
        "q-signature": "7758dc9a832e9d301dca704cacbf9d9f8172fdef",
    }
    creds = {fields["q-ak"]: secret_key}
    assert auth.verify_post_signature(fields=fields, policy_text=policy, credentials=creds, token=None, now=1567150700)
    with pytest.raises(CosError) as err:
        auth.verify_post_signature(
            fields=fields, policy_text=policy + " ", credentials=creds, token=None, now=1567150700
        )
    assert err.value.code == "SignatureDoesNotMatch"
