"""The names and credentials every local run uses: one bucket in one region, one key pair."""

from __future__ import annotations

import socket

APPID = "1250000000"
BUCKET = f"photos-{APPID}"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDemulatortest0001"
SECRET_KEY = "emulator-test-secret-key-0001"
TOKEN = "fn-session-token-abcdefghijklmnop"
# The environment an SCF function reads its (role's) credentials from.
CREDENTIAL_ENV = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
# The keys Powertools' logger writes first, in its order: every line of the function's has them.
POWERTOOLS_KEYS = [
    "level", "message", "timestamp", "service", "cold_start",
    "function_name", "function_memory_size", "function_request_id", "correlation_id",
]  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
