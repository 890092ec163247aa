"""COS request signatures (q-sign-algorithm=sha1), verified the way COS verifies them.

    KeyTime      = q-key-time = q-sign-time = "<start>;<end>"
    SignKey      = hexHMAC_SHA1(SecretKey, KeyTime)
    HttpString   = "<method>\\n<unencoded path>\\n<signed params>\\n<signed headers>\\n"
    StringToSign = "sha1\\n<KeyTime>\\n<hexSHA1(HttpString)>\\n"
    Signature    = hexHMAC_SHA1(SignKey, StringToSign)

Signed params and headers are `enc(name).lower()=enc(value)` joined by `&` in sorted order, with
`enc` = percent-encoding that keeps only `-_.~`. The signature travels in the Authorization header
or, for presigned URLs, in the query string. POST form uploads use a policy signature instead
(`verify_post_policy`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from .errors import CosError

SIGN_FIELDS = (
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
)
_SIGN_FIELD_SET = frozenset(SIGN_FIELDS)
TOKEN_HEADER = "x-cos-security-token"
_HEX_SHA1 = re.compile(r"[0-9a-f]{40}")
_TIME_WINDOW = re.compile(r"([0-9]{1,12});([0-9]{1,12})")  # ASCII digits only: int() takes any script's


def enc(text: str | bytes) -> str:
    """COS's signing encoder: UTF-8, then percent-encode everything but letters, digits and -_.~"""
    return quote(text, safe="-_.~")


def hmac_sha1_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha1).hexdigest()


def _pairs_string(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def string_to_sign(method: str, path: str, params: str, headers: str, key_time: str) -> str:
    http_string = f"{method.lower()}\n{path}\n{params}\n{headers}\n"
    return f"sha1\n{key_time}\n{hashlib.sha1(http_string.encode()).hexdigest()}\n"


def sign(
    secret_key: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    key_time: str,
) -> str:
    """The q-signature for a request; `params` and `headers` are what is signed (decoded values)."""
    p = _pairs_string((enc(k).lower(), enc(v)) for k, v in params.items())
    h = _pairs_string((enc(k).lower(), enc(v)) for k, v in headers.items())
    sign_key = hmac_sha1_hex(secret_key, key_time)
    return hmac_sha1_hex(sign_key, string_to_sign(method, path, p, h, key_time))


def authorization(
    secret_id: str,
    secret_key: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    expire_s: int = 600,
    now: float | None = None,
) -> str:
    """An Authorization value as the SDK builds it (used by tests and tools, not by the server)."""
    start = int(now if now is not None else time.time())
    key_time = f"{start - 60};{start + expire_s}"
    signature = sign(secret_key, method, path, params, headers, key_time)
    header_list = ";".join(sorted(enc(k).lower() for k in headers))
    param_list = ";".join(sorted(enc(k).lower() for k in params))
    return (
        f"q-sign-algorithm=sha1&q-ak={secret_id}&q-sign-time={key_time}&q-key-time={key_time}"
        f"&q-header-list={header_list}&q-url-param-list={param_list}&q-signature={signature}"
    )


def parse_authorization(value: str) -> dict[str, str]:
    """The q-* fields of an Authorization header value."""
    fields: dict[str, str] = {}
    for item in value.strip().split("&"):
        name, sep, field_value = item.partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    return fields


def is_presigned(query: Sequence[tuple[str, str]]) -> bool:
    return any(name == "q-signature" for name, _ in query)


def _time_window(text: str, field: str) -> tuple[int, int]:
    match = _TIME_WINDOW.fullmatch(text)
    if not match:
        raise CosError("AccessDenied", f"{field} is malformed: {text!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class SignedRequest:
    """What a verified request was signed with (for event records and request logs)."""

    secret_id: str
    authorization: str
    presigned: bool


def verify(
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    token: str | None,
    unsigned_params_ok: frozenset[str] = frozenset(),
    now: float | None = None,
) -> SignedRequest:
    """Check a request's signature, from its Authorization header or its presigned query.

    `path` is the unencoded request path, `query` the decoded (name, value) pairs in order,
    `headers` maps lower-cased names to values as received (str holding the raw bytes as
    latin-1). Raises CosError with COS's codes: AccessDenied (missing, malformed, expired, token),
    InvalidAccessKeyId (unknown SecretId), SignatureDoesNotMatch.
    """
    presigned = is_presigned(query)
    if presigned:
        fields = {name: value for name, value in query if name in _SIGN_FIELD_SET}
        raw = "&".join(f"{name}={fields[name]}" for name in SIGN_FIELDS if name in fields)
        signed_query = [(n, v) for n, v in query if n not in _SIGN_FIELD_SET]
    else:
        raw = headers.get("authorization", "")
        if not raw.strip():
            raise CosError("AccessDenied", "Access Denied. The request carries no Authorization header.")
        fields = parse_authorization(raw)
        signed_query = list(query)

    missing = [name for name in SIGN_FIELDS if name not in fields]
    if missing:
        raise CosError("AccessDenied", f"The authorization is missing {', '.join(missing)}")
    if fields["q-sign-algorithm"].lower() != "sha1":
        raise CosError("AccessDenied", f"q-sign-algorithm {fields['q-sign-algorithm']!r} is not sha1")

    secret_id = fields["q-ak"]
    secret_key = credentials.get(secret_id)
    if secret_key is None:
        raise CosError("InvalidAccessKeyId", "The SecretId you provided does not exist in our records.")

    now_s = time.time() if now is None else now
    for field in ("q-sign-time", "q-key-time"):
        start, end = _time_window(fields[field], field)
        if now_s > end:
            raise CosError("AccessDenied", "Request has expired")
        if now_s < start:
            raise CosError("AccessDenied", f"{field} starts in the future")

    header_list = [h for h in fields["q-header-list"].split(";") if h]
    param_list = [p for p in fields["q-url-param-list"].split(";") if p]

    # Headers and params keyed by their signing names (enc(name).lower()).
    request_headers = {enc(name.encode("latin-1")).lower(): value for name, value in headers.items()}
    request_params: dict[str, str] = {}
    for name, value in signed_query:
        request_params.setdefault(enc(name).lower(), value)

    if "host" not in header_list:
        raise CosError("AccessDenied", "The signature must cover the host header")
    for name in request_headers:
        if (name.startswith("x-cos-") or name.startswith("x-ci-")) and name not in header_list:
            raise CosError("AccessDenied", f"The signature does not cover the {name} header")
    for name in request_params:
        if name not in param_list and name not in unsigned_params_ok:
            raise CosError("AccessDenied", f"The signature does not cover the {name} query parameter")

    header_pairs: list[tuple[str, str]] = []
    for name in header_list:
        if name not in request_headers:
            raise _mismatch(f"signed header {name} is not in the request")
        # Header values arrive as latin-1 text holding the raw bytes; sign the raw bytes.
        header_pairs.append((name, enc(request_headers[name].encode("latin-1"))))
    param_pairs: list[tuple[str, str]] = []
    for name in param_list:
        if name not in request_params:
            raise _mismatch(f"signed parameter {name} is not in the request")
        param_pairs.append((name, enc(request_params[name])))

    key_time = fields["q-key-time"]
    expected = hmac_sha1_hex(
        hmac_sha1_hex(secret_key, key_time),
        string_to_sign(method, path, _pairs_string(param_pairs), _pairs_string(header_pairs), key_time),
    )
    # compare_digest refuses non-ASCII text: anything but 40 hex digits simply does not match.
    sent_signature = fields["q-signature"].lower()
    if not _HEX_SHA1.fullmatch(sent_signature) or not hmac.compare_digest(expected, sent_signature):
        raise _mismatch("The request signature we calculated does not match the signature you provided.")

    if token is not None:
        # CI-domain requests carry the token as x-ci-security-token; COS requests as x-cos-...
        sent = headers.get(TOKEN_HEADER, headers.get("x-ci-security-token"))
        if sent is None:
            sent = next((v for n, v in query if n == TOKEN_HEADER), None)
        if sent != token:
            raise CosError("AccessDenied", "The x-cos-security-token is missing or does not match")
    return SignedRequest(secret_id=secret_id, authorization=raw, presigned=presigned)


def _mismatch(message: str) -> CosError:
    return CosError("SignatureDoesNotMatch", message)


# --- POST form uploads --------------------------------------------------------------------------


def post_signature(secret_key: str, key_time: str, policy_text: str) -> str:
    """POST Object's signature: HMAC(HMAC(SecretKey, KeyTime), SHA1(policy JSON text))."""
    string_to_sign_ = hashlib.sha1(policy_text.encode()).hexdigest()
    return hmac_sha1_hex(hmac_sha1_hex(secret_key, key_time), string_to_sign_)


def verify_post_signature(
    *,
    fields: Mapping[str, str],
    policy_text: str,
    credentials: Mapping[str, str],
    token: str | None,
    now: float | None = None,
) -> str:
    """Check a POST form's q-* fields against its decoded policy; answer the SecretId."""
    for name in ("q-sign-algorithm", "q-ak", "q-key-time", "q-signature"):
        if not fields.get(name):
            raise CosError("AccessDenied", f"The form is missing the {name} field")
    if fields["q-sign-algorithm"].lower() != "sha1":
        raise CosError("AccessDenied", "q-sign-algorithm must be sha1")
    secret_key = credentials.get(fields["q-ak"])
    if secret_key is None:
        raise CosError("InvalidAccessKeyId", "The SecretId you provided does not exist in our records.")
    start, end = _time_window(fields["q-key-time"], "q-key-time")
    now_s = time.time() if now is None else now
    if now_s > end:
        raise CosError("AccessDenied", "Request has expired")
    if now_s < start:
        raise CosError("AccessDenied", "q-key-time starts in the future")
    expected = post_signature(secret_key, fields["q-key-time"], policy_text)
    sent_signature = fields["q-signature"].lower()
    if not _HEX_SHA1.fullmatch(sent_signature) or not hmac.compare_digest(expected, sent_signature):
        raise _mismatch("The form signature does not match the policy and key time.")
    if token is not None and fields.get(TOKEN_HEADER) != token:
        raise CosError("AccessDenied", "The x-cos-security-token is missing or does not match")
    return fields["q-ak"]
