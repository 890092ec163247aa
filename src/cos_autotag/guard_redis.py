"""The strict idempotency store on Redis, with the Powertools state machine.

Why a hand-written Redis client: the deployed function's runtime dependencies are fixed to
cos-python-sdk-v5, requests and structlog (they are what the layer carries), and the store needs
five commands only (AUTH/SELECT on connect, SET NX PX, GET, EVAL, PING). So this module speaks
RESP2 itself over one socket per container: short timeouts, reconnect after any error, a lock so
that threads share it safely, and every failure turned into `guard.StoreUnavailable` with a
message that never carries the password. The pipeline then falls back to the object marker.

The state machine (one record per upload, key `autotag:idem:<sha256 of guard.idempotency_key>`):
- claim: `SET key {INPROGRESS, expires_at_ms, owner} NX PX <window>` → NEW. The window is the
  invocation's remaining time (at least 1 s: a 0 would mean no expiry, Powertools bug #4759), and
  the key's PX is that same window, so a crashed invocation stops blocking retries once it passes.
  If the key exists: COMPLETED → DUPLICATE; INPROGRESS within its window → IN_PROGRESS;
  INPROGRESS past its window (a key that outlived it, e.g. written with a longer TTL) → taken
  over with an atomic compare-and-set in Lua → NEW.
- complete: overwrite with {COMPLETED} and the completed TTL.
- release: delete only if the record is still the one this claim wrote (Lua compare-and-delete),
  so a slow invocation never deletes the claim of one that took over from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from . import cos_facts
from .errors import StoreUnavailable
from .events import CosRecord
from .guard import Claim, idempotency_key
from .retry import Deadline

KEY_PREFIX = "autotag:idem:"
DEFAULT_PORT = 6379
CONNECT_TIMEOUT_S = 0.5  # a Redis in the same VPC answers in milliseconds; waiting longer costs the invocation
READ_TIMEOUT_S = 1.0
DEFAULT_COMPLETED_TTL_S = 7 * 24 * 3600
# The smallest in-progress window (Powertools #4759) and the largest an SCF invocation can need.
MIN_IN_PROGRESS_S = 1.0
MAX_IN_PROGRESS_S = float(cos_facts.SCF_TIMEOUT_MAX_S)
# Our records are ~100 bytes: a reply far larger means we are not talking to what we think.
MAX_REPLY_BYTES = 1024 * 1024
# SET NX / GET / compare-and-set rounds before giving up on a key that keeps changing under us.
CLAIM_ROUNDS = 3

STATUS_IN_PROGRESS = "INPROGRESS"
STATUS_COMPLETED = "COMPLETED"

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

Reply = Any  # str | int | bytes | None | list[Reply]: RESP2's reply types


class RedisReplyError(StoreUnavailable):
    """Redis answered with an error (`-ERR ...`, `-WRONGPASS ...`); the connection is still in sync."""


@dataclass(frozen=True)
class RedisAddress:
    """Where the store lives and how to log in, parsed from `redis[s]://[[user]:password@]host[:port][/db]`."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        # Name the URL in errors without its password.
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis URL {shown!r}: the scheme must be redis:// or rediss://")
        if not parts.hostname:
            raise ValueError(f"redis URL {shown!r}: no host")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"redis URL {shown!r}: the port is not a number from 1 to 65535") from None
        path = parts.path.strip("/")
        if path and not (path.isascii() and path.isdigit()):
            raise ValueError(f"redis URL {shown!r}: the database must be a number, as in /0")
        if parts.query or parts.fragment:
            raise ValueError(f"redis URL {shown!r}: query parameters and fragments are not supported")
        return cls(
            host=parts.hostname,
            port=port,
            db=int(path) if path else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
        )

    def __repr__(self) -> str:  # never show the password, even in a traceback's locals
        auth = "***@" if self.password else ""
        return f"RedisAddress({'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self.port}/{self.db})"


class RedisConnection:
    """One RESP2 connection, opened on first use and reopened after any error. Thread-safe."""

    def __init__(
        self,
        address: RedisAddress,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisConnection({self.address!r})"

    def command(self, name: str, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; any failure raises StoreUnavailable."""
        with self._lock:
            for attempt in (1, 2):
                reused = self._sock is not None
                try:
                    return self._round_trip((name, *args))
                except _ErrorReply as reply:
                    # The server answered: the connection is in sync and stays open.
                    raise RedisReplyError(self._scrub(f"{self._where()} answered {name} with: {reply}")) from None
                except RedisReplyError:
                    raise  # AUTH or SELECT refused while connecting (the connection is closed)
                except (OSError, UnicodeError, _ProtocolError) as error:
                    self._close()
                    # An idle connection the server or a NAT has since dropped fails on first use:
                    # one fresh try. Timeouts are not retried: the invocation cannot wait twice.
                    # Every command the store sends is safe to repeat (see RedisStore.claim).
                    if attempt == 2 or not reused or isinstance(error, socket.timeout):
                        raise self._unavailable(error) from None
                except BaseException:
                    self._close()  # interrupted half-way: the next reply on this socket would not be ours
                    raise
            raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        with self._lock:
            self._close()

    # --- inside the lock --------------------------------------------------------------------------

    def _round_trip(self, args: tuple[str | bytes | int, ...]) -> Reply:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        self._sock.sendall(_encode(args))
        return self._read_reply()

    def _connect(self) -> None:
        addr = self.address
        sock = socket.create_connection((addr.host, addr.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if addr.tls:
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=addr.host)
            sock.settimeout(self.read_timeout_s)
        except BaseException:
            sock.close()
            raise
        self._sock, self._buffer = sock, bytearray()
        try:
            if addr.password is not None:
                if addr.username:
                    self._expect_ok(("AUTH", addr.username, addr.password), "AUTH")
                else:
                    self._expect_ok(("AUTH", addr.password), "AUTH")
            if addr.db:
                self._expect_ok(("SELECT", addr.db), "SELECT")
        except BaseException:
            self._close()
            raise

    def _expect_ok(self, args: tuple[str | int, ...], name: str) -> None:
        assert self._sock is not None
        self._sock.sendall(_encode(args))
        try:
            reply = self._read_reply()
        except _ErrorReply as error:
            # The server's words ("WRONGPASS invalid username-password pair") do not echo the password.
            raise RedisReplyError(self._scrub(f"{self._where()} refused {name}: {error}")) from None
        if reply != "OK":
            raise _ProtocolError(f"{name} answered {reply!r}, not OK")

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # closing a broken socket may fail; it is gone anyway
                self._sock.close()
        self._sock, self._buffer = None, bytearray()

    def _where(self) -> str:
        return f"redis at {self.address.host}:{self.address.port}"

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        kind = "timed out" if isinstance(error, socket.timeout) else type(error).__name__
        return StoreUnavailable(self._scrub(f"{self._where()} unreachable: {kind}: {error}"))

    def _scrub(self, message: str) -> str:
        """Belt and braces: no server or OS message should hold the password, but never print it."""
        password = self.address.password
        return message.replace(password, "***") if password else message

    # --- RESP2 replies --------------------------------------------------------------------------

    def _read_reply(self) -> Reply:
        line = self._read_line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            raise _ErrorReply(rest.decode("utf-8", "replace"))
        if kind == b":":
            return _parse_int(rest)
        if kind == b"$":
            length = _parse_int(rest)
            if length == -1:
                return None
            if not 0 <= length <= MAX_REPLY_BYTES:
                raise _ProtocolError(f"bulk string of {length} bytes")
            data = self._read_exact(length + 2)
            if data[-2:] != b"\r\n":
                raise _ProtocolError("bulk string not followed by CRLF")
            return data[:-2]
        if kind == b"*":
            count = _parse_int(rest)
            if count == -1:
                return None
            if not 0 <= count <= 1024:
                raise _ProtocolError(f"array of {count} items")
            return [self._read_item() for _ in range(count)]
        raise _ProtocolError(f"unknown reply type {bytes(line[:16])!r}")

    def _read_item(self) -> Reply:
        """An array item: an error inside an array is a value, so the rest of the array is still read."""
        try:
            return self._read_reply()
        except _ErrorReply as error:
            return error

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise _ProtocolError("reply line too long")
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk


class _ErrorReply(Exception):
    """An error reply (`-ERR ...`), before it is named for the command that got it."""


class _ProtocolError(Exception):
    """The bytes on the wire are not RESP2 as we expect it: the connection is dropped."""


def _encode(args: tuple[str | bytes | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _parse_int(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _ProtocolError(f"not an integer: {raw[:32]!r}") from None


class RedisStore:
    """`guard.StrictStore` on Redis: claim → complete, or claim → release."""

    def __init__(
        self,
        connection: RedisConnection,
        ttl_s: int = DEFAULT_COMPLETED_TTL_S,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"the completed TTL must be at least 1 s, not {ttl_s}")
        self.connection = connection
        self.ttl_s = ttl_s
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        # The exact record each live claim of this container wrote: release deletes only that.
        self._claims: dict[str, bytes] = {}
        self._claims_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        ttl_s: int = DEFAULT_COMPLETED_TTL_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> RedisStore:
        """Build the store; nothing is connected until the first claim (Redis may be down at cold start)."""
        address = RedisAddress.parse(url)
        return cls(RedisConnection(address, connect_timeout_s, read_timeout_s, ssl_context), ttl_s=ttl_s)

    def __repr__(self) -> str:
        return f"RedisStore({self.connection.address!r}, ttl_s={self.ttl_s})"

    @staticmethod
    def key_for(record: CosRecord) -> str:
        return KEY_PREFIX + hashlib.sha256(idempotency_key(record).encode("utf-8")).hexdigest()

    def ping(self) -> None:
        reply = self.connection.command("PING")
        if reply != "PONG":
            raise StoreUnavailable(f"PING answered {reply!r}, not PONG")

    def close(self) -> None:
        self.connection.close()

    def claim(self, record: CosRecord, deadline: Deadline) -> Claim:
        key = self.key_for(record)
        window_ms = _in_progress_ms(deadline.remaining())
        owner = uuid.uuid4().hex
        for _ in range(CLAIM_ROUNDS):
            mine = _record(STATUS_IN_PROGRESS, expires_at_ms=self._clock_ms() + window_ms, owner=owner)
            if self.connection.command("SET", key, mine, "NX", "PX", window_ms) == "OK":
                return self._claimed(key, mine)
            current = self.connection.command("GET", key)
            if current is None:
                continue  # it expired between the two commands: try to set it again
            state = _parse_record(current, key)
            if state["status"] == STATUS_COMPLETED:
                return Claim.DUPLICATE
            if state.get("owner") == owner:
                # Our own SET landed but its reply was lost, and the connection retried it.
                return self._claimed(key, current)
            if int(state["expires_at_ms"]) > self._clock_ms():
                return Claim.IN_PROGRESS
            # Its invocation's window has passed but the key outlived it: take it over, unless
            # someone else changed the record since we read it (then look again).
            taken = self.connection.command("EVAL", _COMPARE_AND_SET, 1, key, current, mine, window_ms)
            if taken == 1:
                return self._claimed(key, mine)
        # The record changed under us every round: another delivery is busy with this upload.
        return Claim.IN_PROGRESS

    def complete(self, record: CosRecord, deadline: Deadline) -> None:
        key = self.key_for(record)
        with self._claims_lock:
            self._claims.pop(key, None)
        done = _record(STATUS_COMPLETED, completed_at_ms=self._clock_ms())
        reply = self.connection.command("SET", key, done, "PX", self.ttl_s * 1000)
        if reply != "OK":
            raise StoreUnavailable(f"SET of the completed record answered {reply!r}, not OK")

    def release(self, record: CosRecord, deadline: Deadline) -> None:
        key = self.key_for(record)
        with self._claims_lock:
            mine = self._claims.pop(key, None)
        if mine is None:
            return  # not claimed by this container: nothing of ours to delete
        self.connection.command("EVAL", _COMPARE_AND_DELETE, 1, key, mine)

    def _claimed(self, key: str, value: bytes) -> Claim:
        with self._claims_lock:
            self._claims[key] = value
        return Claim.NEW


def _in_progress_ms(expires_in_s: float) -> int:
    """The in-progress window: the invocation's remaining time, never 0 (no expiry), never absurd."""
    seconds = MIN_IN_PROGRESS_S if math.isnan(expires_in_s) else expires_in_s
    return math.ceil(min(MAX_IN_PROGRESS_S, max(MIN_IN_PROGRESS_S, seconds)) * 1000)


def _record(status: str, **fields: Any) -> bytes:
    return json.dumps({"status": status, **fields}, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _parse_record(raw: Reply, key: str) -> dict[str, Any]:
    """Read a record; anything we did not write is an error, and the object marker still guards."""
    try:
        state = json.loads(raw)
        status = state["status"]
        if status == STATUS_IN_PROGRESS:
            int(state["expires_at_ms"])
        elif status != STATUS_COMPLETED:
            raise ValueError(f"unknown status {status!r}")
    except (TypeError, ValueError, KeyError) as error:
        raise StoreUnavailable(f"the idempotency record {key} is not one this function wrote: {error}") from None
    if not isinstance(state, dict):
        raise StoreUnavailable(f"the idempotency record {key} is not one this function wrote")
    return state
