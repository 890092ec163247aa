"""The Redis adapter: the record store (persistence.py) on Redis, over the RESP2 transport (resp.py).

put-if-absent is `SET NX PX`, put is `SET PX`; compare-and-set and compare-and-delete are small
Lua scripts, atomic in Redis. Nothing is connected until the first call (Redis may be down at
cold start; the function must still start and fall back to the object marker).
"""

from __future__ import annotations

import ssl

from ..errors import StoreProtocolError
from ..retry import Deadline
from .redis_url import RedisAddress
from .resp import Reply, RespConnection, describe

# Overwrite the record only if it is still exactly the one we read (the takeover of an expired claim).
_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# Delete the record only if it is still exactly the one this claim wrote.
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisRecordStore:
    """`persistence.RecordStore` on Redis."""

    def __init__(self, connection: RespConnection) -> None:
        self.connection = connection

    @classmethod
    def from_url(cls, url: str, ssl_context: ssl.SSLContext | None = None) -> RedisRecordStore:
        return cls(RespConnection(RedisAddress.parse(url), ssl_context))

    def __repr__(self) -> str:
        return f"RedisRecordStore({self.connection.address!r})"

    def put_if_absent(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        reply = self.connection.command(deadline, "SET", key, value, "NX", "PX", ttl_ms)
        if reply is None:
            return False
        return _ok("SET NX", reply)

    def get(self, key: str, deadline: Deadline) -> bytes | None:
        reply = self.connection.command(deadline, "GET", key)
        if reply is not None and not isinstance(reply, bytes):
            raise StoreProtocolError(f"GET answered {describe(reply)}, not a string")
        return reply

    def put(self, key: str, value: bytes, ttl_ms: int, deadline: Deadline) -> None:
        _ok("SET", self.connection.command(deadline, "SET", key, value, "PX", ttl_ms))

    def compare_and_set(self, key: str, expected: bytes, value: bytes, ttl_ms: int, deadline: Deadline) -> bool:
        reply = self.connection.command(deadline, "EVAL", _COMPARE_AND_SET, 1, key, expected, value, ttl_ms)
        return _one_or_zero("compare-and-set", reply)

    def compare_and_delete(self, key: str, expected: bytes, deadline: Deadline) -> bool:
        reply = self.connection.command(deadline, "EVAL", _COMPARE_AND_DELETE, 1, key, expected)
        return _one_or_zero("compare-and-delete", reply)

    def ping(self, deadline: Deadline) -> None:
        reply = self.connection.command(deadline, "PING")
        if reply != "PONG":
            raise StoreProtocolError(f"PING answered {describe(reply)}, not PONG")

    def close(self) -> None:
        self.connection.close()


def _ok(command: str, reply: Reply) -> bool:
    if reply != "OK":
        raise StoreProtocolError(f"{command} answered {describe(reply)}, not OK")
    return True


def _one_or_zero(what: str, reply: Reply) -> bool:
    if reply not in (0, 1) or isinstance(reply, bool):
        raise StoreProtocolError(f"{what} answered {describe(reply)}, not 1 or 0")
    return reply == 1
