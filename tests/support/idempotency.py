"""Values at an idempotency key that this function never wrote, each of which it must refuse to
read and leave alone (the unit tests plant them in memory, the Redis tests in a real server)."""

from __future__ import annotations

RECORDS_WE_DID_NOT_WRITE: list[bytes] = [
    b"not json",
    b'{"status": "DONE"}',
    b'{"status": "INPROGRESS"}',
    b"[1, 2]",
    b'{"status": "INPROGRESS", "expires_at_ms": 1e400, "owner": "x"}',
    b'{"expires_at_ms":1e400,"owner":"x","status":"INPROGRESS"}',  # the deployed format, key order and all
    b'{"status": "INPROGRESS", "expires_at_ms": Infinity, "owner": "x"}',
    b'{"status": "INPROGRESS", "expires_at_ms": NaN, "owner": "x"}',
    b'{"status": "INPROGRESS", "expires_at_ms": ' + b"9" * 5000 + b', "owner": "x"}',
    b'{"expires_at_ms":' + b"9" * 5000 + b',"owner":"x","status":"INPROGRESS"}',
    b'{"status": "INPROGRESS", "expires_at_ms": true, "owner": "x"}',
    b'{"status": "INPROGRESS", "expires_at_ms": 1, "owner": 7}',
    b'{"status": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 500 + b"]" * 500,
    b'{"status": "\xff\xfe"}',
    b"\xff\xfe",
    b"\xff\xfe\x00\x00",
    b"",
]
