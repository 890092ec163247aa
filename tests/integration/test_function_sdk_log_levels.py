"""No ERROR line for a case the function handles, and exactly one for a real failure.

The SDK logs every error reply at ERROR before raising; the function maps the reply to an outcome
(a skip, a retry, a misconfiguration) and logs that on its own line. Everything printed is
captured at every level: the function's JSON lines and a plain stdlib handler on the SDK's logger.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cos_autotag.errors import RetryableFailure
from cos_autotag_tools.emulator import Faults
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.scf import context

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack():
    with running_stack() as s:
        yield s


@contextmanager
def everything_printed(stack, **settings) -> Iterator[tuple[object, list[dict], io.StringIO]]:
    """The app, its JSON lines and the SDK's own records (a plain handler at DEBUG on its logger)."""
    app = stack.app(log_level="DEBUG", **settings)
    plain = io.StringIO()
    handler = logging.StreamHandler(plain)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    sdk_logger = logging.getLogger("qcloud_cos")
    sdk_logger.addHandler(handler)
    try:
        with captured_logs() as lines:
            yield app, lines, plain
    finally:
        sdk_logger.removeHandler(handler)
        stack.emulator.set_faults(Faults())


def _errors(lines: list[dict], plain: io.StringIO) -> list[str]:
    return [line["message"] for line in lines if line["level"] in ("error", "critical")] + [
        line for line in plain.getvalue().splitlines() if line.startswith(("ERROR", "CRITICAL"))
    ]


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_a_rejected_image_and_a_gone_object_log_no_error(stack, mode):
    tiny = stack.put(f"levels/{mode}/tiny.jpg", jpeg(81, size=(20, 20)))  # detect-label refuses 20x20
    gone = stack.event(f"levels/{mode}/never-uploaded.jpg", "req-gone", size=1000)
    event = {"Records": stack.event(f"levels/{mode}/tiny.jpg", tiny)["Records"] + gone["Records"]}
    with everything_printed(stack, mode=mode) as (app, lines, plain):
        summary = app.handle(event, context())
    assert sum(summary["skipped"].values()) == 2, summary
    # The SDK did log the replies (else the test would prove nothing)...
    sdk_lines = [line for line in lines if line.get("logger", "").startswith("qcloud_cos")]
    assert not sdk_lines or all(line["level"] in ("debug", "info", "warning") for line in sdk_lines)
    assert "<Error>" in plain.getvalue() or "NoSuch" in plain.getvalue(), plain.getvalue()
    # ...but never at ERROR: the function's own WARNING carries each outcome.
    assert _errors(lines, plain) == []
    skipped = [line for line in lines if line["message"] == "record skipped"]
    assert {line["key"] for line in skipped} == {f"levels/{mode}/tiny.jpg", f"levels/{mode}/never-uploaded.jpg"}
    assert all(line["level"] == "warning" and line["error_code"] for line in skipped), skipped


def test_a_real_failure_logs_at_error_exactly_once(stack):
    rid = stack.put("levels/stuck.jpg", jpeg(82))
    with everything_printed(stack) as (app, lines, plain):
        stack.emulator.set_faults(Faults(error_5xx_rate=1.0, error_5xx_ops={"DetectLabel"}))
        with pytest.raises(RetryableFailure):
            app.handle(stack.event("levels/stuck.jpg", rid), context(time_limit_ms=4000))
    assert "InternalError" in plain.getvalue() or "SlowDown" in plain.getvalue(), plain.getvalue()
    assert _errors(lines, plain) == ["record failed"]
