"""A RESP2 client over one socket, every command bounded by the deadline it is given.

Why not redis-py: measured on CPython 3.11 in the function's own environment (redis 8.1.0,
`python -X importtime`, 7 runs each, imported after `cos_autotag.handler` so that only what
each adds is counted), redis-py adds 30-37 ms to the cold start (median of two series; runs
from 29 to 48 ms; 87-107 ms in a bare interpreter). The Redis adapter, this transport and the
URL parser add 4.3 ms (4.1-5.5 ms), and only when a Redis is configured: socket and ssl are
already loaded by requests. redis-py is 2.8 MB of sources (6.2 MB unpacked with bytecode) in
the layer, plus async-timeout on Python 3.10, to send five commands (AUTH, SELECT, SET, GET,
EVAL). And its timeouts are per socket call, like the old client's, so it would not give one
deadline over a whole operation either. So the function speaks RESP2 itself.

What a deadline bounds: the lock shared by threads, the name lookup, the connect, the TLS
handshake, AUTH and SELECT, every send and every receive. Each socket call gets the time left as
its timeout, so a server that trickles one byte at a time still costs at most the deadline.
Replies are read with limits: nesting depth, item count, line and bulk lengths, and integers of
at most 19 digits. Any failure becomes `StoreUnavailable` (or one of its subclasses) with a
message that never holds the password, and the connection is closed, since the next reply on it
would no longer be ours.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import StoreProtocolError, StoreRefused, StoreUnavailable
from ..retry import Deadline
from .redis_url import RedisAddress

# Our records are ~100 bytes and our replies a few items: anything far larger is not our server.
MAX_BULK_BYTES = 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_ITEMS = 1024  # all arrays of one reply together
_MAX_INT_DIGITS = 19

Reply = Any  # str | int | bytes | None | ErrorReply | list[Reply]: RESP2's reply types


@dataclass(frozen=True)
class ErrorReply:
    """An error reply (`-ERR ...`) inside an array, where it is a value like the others."""

    message: str

    def __str__(self) -> str:
        return self.message


class RespConnection:
    """One RESP2 connection, opened on first use and reopened after any error. Thread-safe."""

    def __init__(self, address: RedisAddress, ssl_context: ssl.SSLContext | None = None) -> None:
        self.address = address
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._items_left = MAX_ITEMS
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RespConnection({self.address!r})"

    def command(self, deadline: Deadline, name: str, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply, by the deadline; any failure raises StoreUnavailable."""
        if not self._lock.acquire(timeout=max(0.0, deadline.remaining())):
            raise StoreUnavailable(f"{self._where()} unreachable: timed out waiting for another thread's command")
        try:
            return self._command(deadline, name, (name, *args))
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._close()

    # --- inside the lock --------------------------------------------------------------------------

    def _command(self, deadline: Deadline, name: str, args: tuple[str | bytes | int, ...]) -> Reply:
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                if self._sock is None:
                    self._connect(deadline)
                self._send(deadline, args)
                reply = self._read_reply(deadline)
            except StoreRefused:
                raise  # AUTH or SELECT refused while connecting (the connection is closed)
            except (OSError, StoreProtocolError) as error:
                self._close()
                # An idle connection the server or a NAT has since dropped fails on first use:
                # one fresh try, within the same deadline. Timeouts are not retried: the deadline
                # is spent. Every command the store sends is safe to repeat (see guard.py).
                if attempt == 2 or not reused or isinstance(error, TimeoutError):
                    raise self._unavailable(error) from None
                continue
            except Exception as error:  # MemoryError, RecursionError, ...: still the store's failure
                self._close()
                raise self._unavailable(error) from None
            except BaseException:
                self._close()  # interrupted half-way: the next reply on this socket would not be ours
                raise
            if isinstance(reply, ErrorReply):
                # The server answered: the connection is in sync and stays open.
                raise StoreRefused(self._scrub(f"{self._where()} answered {name} with: {reply}"))
            return reply
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _connect(self, deadline: Deadline) -> None:
        addr = self.address
        sock = self._open_socket(deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if addr.tls:
                context = self._ssl_context or ssl.create_default_context()
                # The handshake as a whole is bounded by the socket's timeout.
                sock.settimeout(_time_left(deadline))
                sock = context.wrap_socket(sock, server_hostname=addr.host)
        except BaseException:
            sock.close()
            raise
        self._sock, self._buffer = sock, bytearray()
        try:
            if addr.password is not None:
                if addr.username:
                    self._expect_ok(deadline, ("AUTH", addr.username, addr.password), "AUTH")
                else:
                    self._expect_ok(deadline, ("AUTH", addr.password), "AUTH")
            if addr.db:
                self._expect_ok(deadline, ("SELECT", addr.db), "SELECT")
        except BaseException:
            self._close()
            raise

    def _open_socket(self, deadline: Deadline) -> socket.socket:
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in self._resolve(deadline):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(_time_left(deadline))
                sock.connect(sockaddr)
                return sock
            except OSError as error:
                sock.close()
                last = error
                if isinstance(error, TimeoutError):
                    break
        raise last or OSError(f"no address for {self.address.host}")

    def _resolve(self, deadline: Deadline) -> list[tuple[Any, ...]]:
        """getaddrinfo has no timeout: a host name is looked up in a thread we stop waiting for."""
        host, port = self.address.host, self.address.port
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        found: list[Any] = []

        def lookup() -> None:
            try:
                found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except BaseException as error:  # handed to the caller's thread
                found.append(error)

        thread = threading.Thread(target=lookup, name="redis-resolve", daemon=True)
        thread.start()
        thread.join(_time_left(deadline))
        if not found:
            raise TimeoutError(f"looking up {host} timed out")
        if isinstance(found[0], BaseException):
            raise found[0]
        return list(found[0])

    def _expect_ok(self, deadline: Deadline, args: tuple[str | int, ...], name: str) -> None:
        self._send(deadline, args)
        reply = self._read_reply(deadline)
        if isinstance(reply, ErrorReply):
            # The server's words ("WRONGPASS invalid username-password pair") do not echo the password.
            raise StoreRefused(self._scrub(f"{self._where()} refused {name}: {reply}"))
        if reply != "OK":
            raise StoreProtocolError(f"{name} answered {describe(reply)}, not OK")

    def _send(self, deadline: Deadline, args: tuple[str | bytes | int, ...]) -> None:
        assert self._sock is not None
        # sendall's timeout bounds the whole call, not each chunk.
        self._sock.settimeout(_time_left(deadline))
        self._sock.sendall(_encode(args))

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # closing a broken socket may fail; it is gone anyway
                self._sock.close()
        self._sock, self._buffer = None, bytearray()

    def _where(self) -> str:
        return f"redis at {self.address.where}"

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        kind = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
        detail = str(error)[:200]
        # A protocol error keeps its class, so that callers can tell garbage from silence.
        cls = type(error) if isinstance(error, StoreUnavailable) else StoreUnavailable
        return cls(self._scrub(f"{self._where()} unreachable: {kind}: {detail}"))

    def _scrub(self, message: str) -> str:
        """Belt and braces: no server or OS message should hold the password, but never print it."""
        password = self.address.password
        if password:
            for form in (password, quote(password, safe=""), quote(password)):
                message = message.replace(form, "***")
        return message

    # --- RESP2 replies --------------------------------------------------------------------------

    def _read_reply(self, deadline: Deadline) -> Reply:
        self._items_left = MAX_ITEMS
        return self._read_value(deadline, 0)

    def _read_value(self, deadline: Deadline, depth: int) -> Reply:
        line = self._read_line(deadline)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return ErrorReply(rest.decode("utf-8", "replace"))
        if kind == b":":
            return _parse_int(rest)
        if kind == b"$":
            length = _parse_int(rest)
            if length == -1:
                return None
            if not 0 <= length <= MAX_BULK_BYTES:
                raise StoreProtocolError(f"a bulk string of {length} bytes")
            data = self._read_exact(deadline, length + 2)
            if data[-2:] != b"\r\n":
                raise StoreProtocolError("a bulk string not followed by CRLF")
            return data[:-2]
        if kind == b"*":
            count = _parse_int(rest)
            if count == -1:
                return None
            if depth >= MAX_DEPTH:
                raise StoreProtocolError(f"a reply nested more than {MAX_DEPTH} arrays deep")
            if not 0 <= count <= self._items_left:
                raise StoreProtocolError(f"a reply of more than {MAX_ITEMS} items")
            self._items_left -= count
            return [self._read_value(deadline, depth + 1) for _ in range(count)]
        raise StoreProtocolError(f"an unknown reply type (a line of {len(line)} bytes starting {_first(line)})")

    def _read_line(self, deadline: Deadline) -> bytes:
        searched = 0
        while True:
            end = self._buffer.find(b"\r\n", max(0, searched - 1))
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            searched = len(self._buffer)
            if searched >= MAX_LINE_BYTES:
                raise StoreProtocolError(f"a reply line longer than {MAX_LINE_BYTES} bytes")
            self._fill(deadline)

    def _read_exact(self, deadline: Deadline, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill(deadline)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _fill(self, deadline: Deadline) -> None:
        assert self._sock is not None
        self._sock.settimeout(_time_left(deadline))
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk


def _time_left(deadline: Deadline) -> float:
    """The timeout for the next socket call; none left is a timeout now, not a blocking call."""
    remaining = deadline.remaining()
    if not remaining > 0:
        raise TimeoutError("the deadline passed")
    return remaining


def _encode(args: tuple[str | bytes | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _parse_int(raw: bytes) -> int:
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not (digits.isdigit() and len(digits) <= _MAX_INT_DIGITS):  # bytes.isdigit: ASCII only
        raise StoreProtocolError(f"not an integer of at most {_MAX_INT_DIGITS} digits ({len(raw)} bytes)")
    return int(raw)


def _first(line: bytes) -> str:
    """The first byte, shown only if it is printable ASCII punctuation or a letter (RESP's type marks)."""
    return repr(chr(line[0])) if line and 33 <= line[0] < 127 else "with an unprintable byte" if line else "empty"


def describe(reply: Reply) -> str:
    """A reply's kind and size for an error message; never its content, which could echo anything."""
    if reply is None or isinstance(reply, int):
        return repr(reply)
    if isinstance(reply, ErrorReply):
        return "an error reply"
    if isinstance(reply, list):
        return f"an array of {len(reply)} items"
    if isinstance(reply, str):
        return f"a status of {len(reply)} characters"
    return f"a string of {len(reply)} bytes"
