"""Pytest fixtures for a real redis-server (see tests/support/redis_server.py).

Use them from any test module with
    pytest_plugins = ("tests.integration.conftest_redis",)
A missing redis-server fails the test with a clear message: CI must run these tests, not skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, RedisServerFactory, RedisServerMissing


@pytest.fixture
def redis_server_factory() -> Iterator[RedisServerFactory]:
    """Start redis-servers with options (`password=`, `tls=(cert, key)`); all are stopped afterwards."""
    servers: list[RedisServer] = []

    def start(password: str | None = None, tls: tuple[Path, Path] | None = None) -> RedisServer:
        try:
            server = RedisServer(password=password, tls=tls)
        except RedisServerMissing as missing:
            problem = str(missing)
        else:
            servers.append(server)
            return server.start()
        pytest.fail(problem, pytrace=False)  # outside the except: one clear line, no chained traceback

    try:
        yield start
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def redis_server(redis_server_factory: RedisServerFactory) -> RedisServer:
    """A fresh redis-server on 127.0.0.1 with no password, for one test."""
    return redis_server_factory()
