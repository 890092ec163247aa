"""HTTP plumbing: a threading HTTP/1.1 (keep-alive) server on 127.0.0.1 that turns each request
into a `Request`, asks the COS service, and writes the `Response` in one send."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .messages import BodyUnreadable, Request, Response, text_to_latin1

HOST = "127.0.0.1"
_MAX_CHUNK_LINE = 1024
# An unread body up to this size is discarded to keep the connection; a larger one closes it.
_DRAIN_MAX_BYTES = 64 * 1024
_LINGER_S = 1.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's session reuses connections
    server: CosHTTPServer
    # An idle keep-alive connection is closed after this long (the client reconnects transparently).
    timeout = 60

    def setup(self) -> None:
        super().setup()
        # One write per response already; no Nagle delay on top of the client's delayed ACKs.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "tencent-cos"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is in Emulator.requests; stderr stays quiet

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_GET

    def _read_body(self, length: int | None, limit: int | None) -> bytes:
        """The body: `length` bytes (the service checked it against the cap), or chunked when
        None, of which at most `limit` + 1 bytes are read."""
        try:
            if length is None:
                return self._read_chunked(limit)
            data = self.rfile.read(length) if length > 0 else b""
            if len(data) != length:
                raise BodyUnreadable(f"the client sent {len(data)} of {length} bytes")
            return data
        except (ValueError, OSError) as exc:
            raise BodyUnreadable(str(exc)) from exc
        finally:
            self._body_done = True

    def _read_chunked(self, limit: int | None) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            if limit is not None and total + size > limit:
                # Enough to tell it is too long; the rest is never read (the connection closes).
                chunks.append(self.rfile.read(limit + 1 - total))
                self.close_connection = True
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            total += size
            self.rfile.readline(_MAX_CHUNK_LINE)

    def _serve(self) -> None:
        received_at = time.time()
        self._body_done = False
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length: int | None = None
        if not chunked:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                # An unusable Content-Length: answer and drop the connection (the body cannot be framed).
                self.close_connection = True
                self._write(Response(400, {"x-cos-request-id": self.server.new_request_id()}), head_only=False)
                return
        target = self.path
        if "://" in target.split("?", 1)[0]:  # absolute-form request target
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        request = Request(
            method=self.command,
            raw_path=raw_path,
            path=unquote(raw_path),
            raw_query=raw_query,
            query=parse_qsl(raw_query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=b"",
            client_ip=self.client_address[0],
            received_at=received_at,
            request_id=self.server.new_request_id(),
            body_reader=lambda limit: self._read_body(length, limit),
            content_length=length,
        )
        response = self.server.handle_request_callback(request)
        if not self._body_done and (chunked or (length or 0) > 0):
            # Answered without reading the body (a bad signature, a body over the cap, ...).
            # A small body is drained so that the connection stays usable; a large one is never
            # read: the connection closes after the answer.
            if length is not None and length <= _DRAIN_MAX_BYTES:
                try:
                    self.rfile.read(length)
                except OSError:
                    self.close_connection = True
            else:
                self.close_connection = True
        self._write(response, head_only=self.command == "HEAD")
        if self.close_connection and not self._body_done:
            self._linger()

    def _linger(self) -> None:
        """Close gently after answering early: stop sending, then discard a bounded amount of what
        the client is still sending, so that its socket gets our answer rather than a reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_S)
            discarded = 0
            while discarded < _DRAIN_MAX_BYTES:
                chunk = self.connection.recv(16384)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:
            pass

    def _write(self, response: Response, head_only: bool) -> None:
        status = response.status
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {status} {reason}", "Server: tencent-cos", f"Date: {self.date_time_string()}"]
        has_length = False
        for name, value in response.headers.items():
            if name.lower() == "content-length":
                has_length = True
            lines.append(f"{name}: {text_to_latin1(value)}")
        if not has_length or not head_only:
            # HEAD keeps the object's length an operation set; everything else sends what it sends.
            lines = [line for line in lines if not line.lower().startswith("content-length:")]
            if status not in (204, 304):  # these carry no body and, per RFC 9110, no length
                lines.append(f"Content-Length: {len(response.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = head if head_only or status in (204, 304) else head + response.body
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class CosHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(
        self,
        port: int,
        handle: Callable[[Request], Response],
        new_request_id: Callable[[], str],
    ) -> None:
        self.handle_request_callback = handle
        self.new_request_id = new_request_id
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is normal; anything else is a bug worth seeing.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut open keep-alive connections so that their threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Runs a CosHTTPServer in a background thread; `stop` shuts it and its connections down."""

    def __init__(self, server: CosHTTPServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self._thread.join(timeout=5)
