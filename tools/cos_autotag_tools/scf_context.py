"""The context dict SCF passes to `main_handler(event, context)`, built in one place.

The CLI's `invoke`, the emulator's COS trigger, the SCF Invoke stand-in and the tests all hand the
handler a context of this shape (the fields SCF's Python runtime documents). The handler reads
`request_id`, `function_name`, `memory_limit_in_mb` and `time_limit_in_ms`; the rest is there so a
local run sees what a deployed one sees.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

FUNCTION_NAME = "cos-autotag"
FUNCTION_VERSION = "$LATEST"
NAMESPACE = "default"
MEMORY_LIMIT_MB = 128
TIME_LIMIT_MS = 30_000
RUNTIME = "Python3.10"
DEFAULT_UIN = "100000000001"


def scf_context(
    *,
    request_id: str | None = None,
    function_name: str = FUNCTION_NAME,
    function_version: str = FUNCTION_VERSION,
    namespace: str = NAMESPACE,
    memory_limit_in_mb: int = MEMORY_LIMIT_MB,
    time_limit_in_ms: int = TIME_LIMIT_MS,
    region: str | None = None,
    appid: str | None = None,
    uin: str | None = None,
) -> dict[str, Any]:
    """One invocation's context; a new `request_id` unless given (SCF makes one per attempt).

    `region`, `appid` and `uin` are the account's; left out, their fields are left out too, rather
    than made up (the CLI's `invoke` knows none of them).
    """
    env = {
        "SCF_NAMESPACE": namespace,
        "SCF_FUNCTIONNAME": function_name,
        "SCF_FUNCTIONVERSION": function_version,
        "SCF_RUNTIME": RUNTIME,
        "SCF_MEMORYSIZE": str(memory_limit_in_mb),
        "TENCENTCLOUD_RUNENV": "SCF",
        "TENCENTCLOUD_TZ": "UTC",
    }
    context: dict[str, Any] = {
        "request_id": request_id or str(uuid.uuid4()),
        "function_name": function_name,
        "function_version": function_version,
        "namespace": namespace,
        "memory_limit_in_mb": memory_limit_in_mb,
        "time_limit_in_ms": time_limit_in_ms,
    }
    for field, variable, value in (
        ("tencentcloud_region", "TENCENTCLOUD_REGION", region),
        ("tencentcloud_appid", "TENCENTCLOUD_APPID", appid),
        ("tencentcloud_uin", "TENCENTCLOUD_UIN", uin),
    ):
        if value is not None:
            context[field] = value
            env[variable] = value
    context["environment"] = json.dumps(env)
    context["environ"] = ";".join(f"{name}={value}" for name, value in env.items())
    return context
