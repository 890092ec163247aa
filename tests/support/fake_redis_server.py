"""A TCP server on 127.0.0.1 that misbehaves as a test tells it: stalls, trickles, speaks garbage.

Real Redis cannot be made to trickle bytes or send a reply nested 100,000 arrays deep, so the
tests of the client's limits use this. Each connection runs `behaviour(conn, server)` in its own
thread; `server.stopping` is set when the test ends, so a stalling behaviour waits on it rather
than sleeping, and everything is closed and joined on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote

Behaviour = Callable[[socket.socket, "FakeRedisServer"], None]


class FakeRedisServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stopping = threading.Event()
        self.connected = threading.Event()  # set once a client has connected
        self.requests: list[list[bytes]] = []  # every command read by `read_request`
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def url(self, password: str | None = None) -> str:
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def __enter__(self) -> FakeRedisServer:
        accepter = threading.Thread(target=self._accept, name="fake-redis-accept", daemon=True)
        self._threads.append(accepter)
        accepter.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            worker = threading.Thread(target=self._serve, args=(conn,), name="fake-redis-conn", daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(worker)
            self.connected.set()
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):  # the client hung up; ValueError: a short read
            self.behaviour(conn, self)

    # --- for behaviours ---

    def read_request(self, conn: socket.socket) -> list[bytes]:
        """Read one RESP2 command (an array of bulk strings) from the client."""
        reader = conn.makefile("rb")
        count = int(reader.readline()[1:])
        args = []
        for _ in range(count):
            length = int(reader.readline()[1:])
            args.append(reader.read(length + 2)[:-2])
        self.requests.append(args)
        return args


def stall(conn: socket.socket, server: FakeRedisServer) -> None:
    """Accept and never answer: a hung server, or a black hole behind a NAT."""
    server.stopping.wait()


def trickle(conn: socket.socket, server: FakeRedisServer) -> None:
    """Answer one byte at a time, a line that never ends: each byte comes well within any timeout."""
    conn.sendall(b"+")
    while not server.stopping.wait(0.02):
        conn.sendall(b"O")


def answer(*replies: bytes, then: Behaviour = stall) -> Behaviour:
    """Answer each command with the next reply, then behave as `then`."""

    def behaviour(conn: socket.socket, server: FakeRedisServer) -> None:
        for reply in replies:
            server.read_request(conn)
            conn.sendall(reply)
        then(conn, server)

    return behaviour


def send_at_once(data: bytes | Iterable[bytes]) -> Behaviour:
    """Send these bytes as soon as the client connects, whatever it asks, then wait."""

    def behaviour(conn: socket.socket, server: FakeRedisServer) -> None:
        conn.sendall(data if isinstance(data, bytes) else b"".join(data))
        server.stopping.wait()

    return behaviour


def hang_up(conn: socket.socket, server: FakeRedisServer) -> None:
    conn.close()
