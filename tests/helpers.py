"""Small helpers shared by the tests: fixture events and an SCF-like context."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "fixtures" / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def scf_context(time_limit_ms: int = 30000, function_name: str = "cos-autotag") -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "function_name": function_name,
        "function_version": "$LATEST",
        "namespace": "default",
        "memory_limit_in_mb": 128,
        "time_limit_in_ms": time_limit_ms,
        "tencentcloud_region": "ap-guangzhou",
        "tencentcloud_appid": "1250000000",
        "tencentcloud_uin": "100000000001",
        "environ": "SCF_NAMESPACE=default;SCF_FUNCTIONNAME=cos-autotag",
    }
