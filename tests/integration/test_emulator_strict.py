"""The emulator is as strict as COS where a looser answer could hide a bug in the function:
the signature before the body, a body cap, garbled signatures, HEAD's storage class, and
DeleteMultipleObjects (which `coscmd delete -r` uses)."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from typing import Any

import pytest
from qcloud_cos import CosS3Client

from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import Emulator, auth
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import error_of, seed_object
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

HOST = cos_facts.cos_host(BUCKET, REGION)


def raw_exchange(emulator: Emulator, head: bytes, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send `head` (and `body`) on a fresh connection; answer the status and the whole reply.
    The socket times out rather than hangs if the emulator waits for bytes that never come."""
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply


def request_head(method: str, path: str, headers: dict[str, str], authorization: str | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def signed_put_head(key: str, length: int, secret_key: str = SECRET_KEY, extra: dict[str, str] | None = None) -> bytes:
    headers = {"Content-Length": str(length), **(extra or {})}
    signing = {"host": HOST, "content-length": str(length)}
    authorization = auth.authorization(SECRET_ID, secret_key, "PUT", "/" + key, {}, signing)
    return request_head("PUT", "/" + key, headers, authorization)


# --- the signature before the body ------------------------------------------------------------------


def test_a_bad_signature_is_answered_without_reading_the_body(emulator: Emulator) -> None:
    """A gigabyte announced and never sent: the 403 comes at once, from the headers alone."""
    start = time.monotonic()
    status, reply = raw_exchange(emulator, signed_put_head("big.bin", 10**9, secret_key="wrong"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in reply
    assert time.monotonic() - start < 4  # the socket would have timed out waiting for the body
    status, reply = raw_exchange(emulator, request_head("PUT", "/big.bin", {"Content-Length": str(10**9)}, None))
    assert status == 403 and b"<Code>AccessDenied</Code>" in reply
    assert emulator.get_object_state(BUCKET, "big.bin") is None


def test_an_unread_small_body_keeps_the_connection_usable(emulator: Emulator) -> None:
    """After an early answer a small body is drained, so keep-alive clients (the SDK) go on."""
    client = make_client(emulator, secret_key="wrong")
    assert error_of(lambda: client.put_object(Bucket=BUCKET, Key="a", Body=b"x" * 1000)).get_status_code() == 403
    good = make_client(emulator)
    for i in range(3):
        good.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"y" * 1000)
        assert error_of(lambda: client.put_object(Bucket=BUCKET, Key="a", Body=b"x" * 1000)).get_status_code() == 403
    assert emulator.get_object_state(BUCKET, "k2").body == b"y" * 1000


# --- the body cap ---------------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_entity_too_large(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.max_body_bytes = 4096
    cos_client.put_object(Bucket=BUCKET, Key="fits", Body=b"x" * 4096)
    err = error_of(lambda: cos_client.put_object(Bucket=BUCKET, Key="over", Body=b"x" * 4097))
    assert (err.get_status_code(), err.get_error_code()) == (400, "EntityTooLarge")
    assert "4096" in err.get_error_msg()
    assert emulator.get_object_state(BUCKET, "over") is None and emulator.get_object_state(BUCKET, "fits")
    # Far over the cap the body is never read and the connection closes, yet the SDK gets the answer.
    err = error_of(lambda: cos_client.put_object(Bucket=BUCKET, Key="over", Body=b"x" * 4_000_000))
    assert (err.get_status_code(), err.get_error_code()) == (400, "EntityTooLarge")
    cos_client.put_object(Bucket=BUCKET, Key="after", Body=b"x")  # and the client goes on


def test_the_cap_is_applied_from_the_declared_length_without_reading(emulator: Emulator) -> None:
    emulator.max_body_bytes = 1024
    start = time.monotonic()
    status, reply = raw_exchange(emulator, signed_put_head("huge.bin", 10**9))
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in reply
    assert time.monotonic() - start < 4


def test_a_chunked_body_over_the_cap_is_refused(emulator: Emulator) -> None:
    emulator.max_body_bytes = 1024
    signing = {"host": HOST, "transfer-encoding": "chunked"}
    authorization = auth.authorization(SECRET_ID, SECRET_KEY, "PUT", "/chunked.bin", {}, signing)
    head = request_head("PUT", "/chunked.bin", {"Transfer-Encoding": "chunked"}, authorization)
    chunk = b"x" * 800
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    status, reply = raw_exchange(emulator, head, body)
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in reply
    assert emulator.get_object_state(BUCKET, "chunked.bin") is None


def test_the_default_cap_is_cos_single_put_limit(emulator: Emulator) -> None:
    assert emulator.max_body_bytes == cos_facts.PUT_MAX_BYTES
    with pytest.raises(ValueError):
        emulator.max_body_bytes = -1


# --- garbled signatures are 403, never 500 --------------------------------------------------------------


def _valid_authorization(key: str = "a.jpg") -> str:
    return auth.authorization(SECRET_ID, SECRET_KEY, "GET", "/" + key, {}, {"host": HOST})


def _with_field(name: str, value: str) -> str:
    fields = auth.parse_authorization(_valid_authorization())
    fields[name] = value
    return "&".join(f"{k}={v}" for k, v in fields.items())


GARBLED = {
    "non-ascii-signature": _with_field("q-signature", "签名" * 20),
    "latin1-bytes-signature": _with_field("q-signature", "\xff\xfe" * 20),
    "short-signature": _with_field("q-signature", "abc"),
    "non-hex-signature": _with_field("q-signature", "z" * 40),
    "non-ascii-digits-in-time": _with_field("q-sign-time", "١٢٣;٤٥٦"),
    "garbage-time": _with_field("q-key-time", "yesterday;tomorrow"),
    "non-ascii-ak": _with_field("q-ak", "AKID密钥"),
    "non-ascii-header-list": _with_field("q-header-list", "host;头"),
    "no-fields": "garbage",
    "only-separators": "&&&===&",
}


@pytest.mark.parametrize("authorization", list(GARBLED.values()), ids=list(GARBLED))
def test_a_garbled_authorization_is_403(emulator: Emulator, authorization: str) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    head = (
        request_head("GET", "/a.jpg", {}, None)[:-2] + b"Authorization: " + authorization.encode("utf-8") + b"\r\n\r\n"
    )
    status, reply = raw_exchange(emulator, head)
    assert status == 403, reply[:400]
    assert emulator.requests[-1].status == 403


@pytest.mark.parametrize("signature", ["%E7%AD%BE%E5%90%8D", "%FF%FE", "not-hex"])
def test_a_garbled_presigned_signature_is_403(emulator: Emulator, signature: str) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    fields = auth.parse_authorization(_valid_authorization())
    query = "&".join(f"{k}={v}" for k, v in fields.items() if k != "q-signature") + f"&q-signature={signature}"
    status, _ = raw_exchange(emulator, request_head("GET", f"/a.jpg?{query}", {}, None))
    assert status == 403


def test_a_valid_raw_authorization_passes(emulator: Emulator) -> None:
    """The control for the two tests above: the same request, signed right, is served."""
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    status, _ = raw_exchange(emulator, request_head("GET", "/a.jpg", {}, _valid_authorization()))
    assert status == 200


# --- HEAD and the storage class -------------------------------------------------------------------------


def test_storage_class_header_only_for_non_standard(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="std", Body=b"x")
    cos_client.put_object(Bucket=BUCKET, Key="std-explicit", Body=b"x", StorageClass="STANDARD")
    cos_client.put_object(Bucket=BUCKET, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    for key in ("std", "std-explicit"):
        head = {k.lower(): v for k, v in cos_client.head_object(Bucket=BUCKET, Key=key).items()}
        assert cos_facts.STORAGE_CLASS_HEADER not in head
        get = cos_client.get_object(Bucket=BUCKET, Key=key)
        assert cos_facts.STORAGE_CLASS_HEADER not in {k.lower() for k in get}
        assert emulator.get_object_state(BUCKET, key).storage_class == "STANDARD"
    head = {k.lower(): v for k, v in cos_client.head_object(Bucket=BUCKET, Key="ia").items()}
    assert head[cos_facts.STORAGE_CLASS_HEADER] == "STANDARD_IA"


# --- DeleteMultipleObjects ---------------------------------------------------------------------------------


def _objects(*keys: str, quiet: bool) -> dict[str, Any]:
    return {"Quiet": "true" if quiet else "false", "Object": [{"Key": key} for key in keys]}


def test_delete_multiple_verbose(emulator: Emulator, cos_client: CosS3Client) -> None:
    for key in ("a.jpg", "dir/b c.jpg", "中文.jpg", "keep.jpg"):
        seed_object(emulator, BUCKET, key, b"x")
    result = cos_client.delete_objects(
        Bucket=BUCKET, Delete=_objects("a.jpg", "dir/b c.jpg", "中文.jpg", "never-was", quiet=False)
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(["a.jpg", "dir/b c.jpg", "中文.jpg", "never-was"])
    assert not result.get("Error")
    assert [k for k in ("a.jpg", "dir/b c.jpg", "中文.jpg") if emulator.get_object_state(BUCKET, k)] == []
    assert emulator.get_object_state(BUCKET, "keep.jpg") is not None
    assert emulator.count("DeleteMultipleObjects", status=200) == 1


def test_delete_multiple_quiet_lists_only_errors(emulator: Emulator, cos_client: CosS3Client) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    result = cos_client.delete_objects(Bucket=BUCKET, Delete=_objects("a.jpg", "k" * 900, quiet=True))
    assert not result.get("Deleted")
    assert [(e["Key"], e["Code"]) for e in result["Error"]] == [("k" * 900, "KeyTooLong")]
    assert emulator.get_object_state(BUCKET, "a.jpg") is None


def test_delete_multiple_fires_remove_events(emulator: Emulator, cos_client: CosS3Client) -> None:
    seen: list[str] = []
    emulator.add_trigger(
        BUCKET, lambda e, c: seen.append(e["Records"][0]["event"]["eventName"]), events=["cos:ObjectRemove:*"]
    )
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    cos_client.delete_objects(Bucket=BUCKET, Delete=_objects("a.jpg", "gone", quiet=True))
    emulator.wait_idle(10)
    assert seen == ["cos:ObjectRemove:Delete"]  # one event: "gone" did not exist


def _raw_delete(emulator: Emulator, body: bytes, md5: str | None) -> tuple[int, bytes]:
    headers = {"Content-Length": str(len(body)), "Content-Type": "application/xml"}
    signing = {"host": HOST, "content-length": str(len(body)), "content-type": "application/xml"}
    if md5 is not None:
        headers["Content-MD5"] = signing["content-md5"] = md5
    authorization = auth.authorization(SECRET_ID, SECRET_KEY, "POST", "/", {"delete": ""}, signing)
    return raw_exchange(emulator, request_head("POST", "/?delete", headers, authorization), body)


def test_delete_multiple_refusals(emulator: Emulator) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    body = b"<Delete><Object><Key>a.jpg</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert _raw_delete(emulator, body, None)[0] == 400  # Content-MD5 is required
    assert b"BadDigest" in _raw_delete(emulator, body, base64.b64encode(b"0" * 16).decode())[1]
    empty = b"<Delete></Delete>"
    assert b"MalformedXML" in _raw_delete(emulator, empty, base64.b64encode(hashlib.md5(empty).digest()).decode())[1]
    too_many = b"<Delete>" + b"<Object><Key>k</Key></Object>" * (cos_facts.DELETE_MULTIPLE_MAX_KEYS + 1) + b"</Delete>"
    reply = _raw_delete(emulator, too_many, base64.b64encode(hashlib.md5(too_many).digest()).decode())[1]
    assert b"MalformedXML" in reply
    assert emulator.get_object_state(BUCKET, "a.jpg") is not None  # nothing deleted by a refused request
    status, reply = _raw_delete(emulator, body, md5)
    assert status == 200 and b"<Deleted><Key>a.jpg</Key></Deleted>" in reply
    assert emulator.get_object_state(BUCKET, "a.jpg") is None


def test_delete_multiple_needs_its_permission(emulator: Emulator, cos_client: CosS3Client) -> None:
    seed_object(emulator, BUCKET, "a.jpg", b"x")
    emulator.set_faults(denied_ops={"DeleteMultipleObjects"})
    err = error_of(lambda: cos_client.delete_objects(Bucket=BUCKET, Delete=_objects("a.jpg", quiet=True)))
    assert (err.get_status_code(), err.get_error_code()) == (403, "AccessDenied")
    assert emulator.get_object_state(BUCKET, "a.jpg") is not None


def test_other_delete_subresource_methods_stay_unimplemented(emulator: Emulator) -> None:
    authorization = auth.authorization(SECRET_ID, SECRET_KEY, "GET", "/", {"delete": ""}, {"host": HOST})
    status, _ = raw_exchange(emulator, request_head("GET", "/?delete", {}, authorization))
    assert status == 501
