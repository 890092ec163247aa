"""A real `redis-server` for the tests: a free 127.0.0.1 port, a temp dir, no persistence.

`RedisServer` starts the binary, waits until it answers PING and stops it; it can stop and start
again on the same port to play an outage. The pytest fixtures are in
tests/integration/conftest_redis.py. A missing binary is a test failure, not a skip: CI installs
it (.ci/system-deps.sh) and must run these tests.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis

from .constants import free_port

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
MISSING_BINARY = (
    "redis-server is not installed, so the strict idempotency store cannot be tested: "
    "install it (apt-get install redis-server; CI does this in .ci/system-deps.sh)"
)


class RedisServerMissing(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerMissing(MISSING_BINARY)
    return path


class RedisServer:
    """One redis-server process. `password` turns on requirepass; `tls` is (cert, key) PEM paths."""

    def __init__(self, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.binary = redis_server_binary()
        self.password = password
        self.tls = tls
        self.host = "127.0.0.1"
        self.port = 0
        self._dir = Path(tempfile.mkdtemp(prefix="autotag-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    # --- addresses ----------------------------------------------------------------------------

    def url(self, db: int = 0, password: str | None = None, username: str | None = None) -> str:
        """The URL the function would be configured with; `password` overrides the server's."""
        secret = self.password if password is None else password
        auth = ""
        if secret is not None:
            auth = f"{quote(username or '', safe='')}:{quote(secret, safe='')}@"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """An independent client (redis-py) to look at what the store wrote."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            password=self.password,
            socket_timeout=2,
            ssl=self.tls is not None,
            ssl_cert_reqs="none",
        )

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start on a free port, or on the previous port again after stop() (a restart)."""
        attempts = 1 if self.port else 3  # a fresh free port can be taken by someone else meanwhile
        for _ in range(attempts):
            port = self.port or free_port()
            self._spawn(port)
            if self._wait_ready():
                self.port = port
                return self
            self._kill()
        raise RuntimeError(f"redis-server did not answer PING on 127.0.0.1:{self.port}:\n{self._log_tail()}")

    def stop(self) -> None:
        self._kill()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers, as in a hung server."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def _spawn(self, port: int) -> None:
        self.port = port
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.tls:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _wait_ready(self) -> bool:
        give_up = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < give_up:
            if not self.running:
                return False
            client = self.client()
            try:
                if client.ping():
                    return True
            except redis.RedisError:
                time.sleep(0.02)
            finally:
                client.close()
        return False

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self) -> str:
        try:
            return "\n".join((self._dir / "redis.log").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


# What the `redis_server_factory` fixture gives: start(password=None, tls=None) -> RedisServer.
RedisServerFactory = Callable[..., RedisServer]
