"""Logs in the Powertools shape, no secret in any line, and the two entry points (SCF and CLI)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import index
from cos_autotag import handler as handler_module
from cos_autotag.errors import SettingsError
from tests.support.constants import POWERTOOLS_KEYS, SECRET_KEY, TOKEN
from tests.support.function_stack import captured_logs, running_stack
from tests.support.images import jpeg
from tests.support.scf import context

pytestmark = pytest.mark.integration


@pytest.fixture
def stack():
    with running_stack(token=TOKEN) as s:
        yield s


@pytest.fixture
def function_env(stack, monkeypatch):
    """The environment SCF gives the function, pointed at the emulator; a fresh container."""
    for name in list(os.environ):
        if name.startswith(("AUTOTAG_", "TENCENTCLOUD_")):
            monkeypatch.delenv(name)
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", stack.emulator.endpoint)
    monkeypatch.setenv("AUTOTAG_MIN_CONFIDENCE", "10")
    monkeypatch.setattr(handler_module, "_app", None)
    return stack


def test_every_line_is_powertools_json_and_cold_start_is_true_once(function_env):
    stack = function_env
    rid = stack.put("logs/a.jpg", jpeg(31))
    with captured_logs() as logs:
        index.main_handler(stack.event("logs/a.jpg", rid), context())
        index.main_handler(stack.event("logs/a.jpg", rid), context())
    assert logs and all(set(line) >= set(POWERTOOLS_KEYS) for line in logs)
    summaries = [line for line in logs if line["message"] == "invocation summary"]
    assert [s["cold_start"] for s in summaries] == [True, False]
    assert all(line["service"] == "cos-autotag" and line["timestamp"].endswith("Z") for line in logs)
    records = [line for line in logs if "outcome" in line]
    assert [r["outcome"] for r in records] == ["labeled", "duplicate"]
    assert all(r["correlation_id"] == rid and r["bucket"] and r["key"] == "logs/a.jpg" for r in records)
    assert summaries[0]["labeled"] == 1 and summaries[1]["duplicates"] == 1


def test_no_secret_in_any_line_at_debug_with_the_event_logged(function_env, monkeypatch):
    stack = function_env
    monkeypatch.setenv("AUTOTAG_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AUTOTAG_LOG_EVENT", "true")
    rid = stack.put("logs/secret.jpg", jpeg(32))
    event = stack.event("logs/secret.jpg", rid)
    uploader_signature = "q-signature=0f4e1d2c3b4a59687766554433221100ffeeddcc"
    event["Records"][0]["event"]["requestParameters"]["requestHeaders"]["Authorization"] = (
        "q-sign-algorithm=sha1&q-ak=AKIDuploader&" + uploader_signature
    )
    import logging

    with captured_logs() as logs:
        index.main_handler(event, context())
        # Whatever the SDK logs at any level goes through the same redaction.
        logging.getLogger("qcloud_cos.cos_client").error("headers: {'Authorization': '%s'}", uploader_signature)
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in logs)
    assert any(line["message"] == "event received" for line in logs)
    assert SECRET_KEY not in text and TOKEN not in text
    assert "0f4e1d2c3b4a59687766554433221100ffeeddcc" not in text
    assert not re.search(r"q-signature=[0-9a-f]{8,}", text)
    assert "AKIDuploader" not in text


def test_bad_setting_fails_at_cold_start_naming_it(function_env, monkeypatch):
    monkeypatch.setenv("AUTOTAG_MAX_LABELS", "42")
    with pytest.raises(SettingsError, match=r"AUTOTAG_MAX_LABELS=.42.*1 to 9"):
        index.main_handler({"Records": []}, context())


def test_missing_credentials_raise_a_clear_error(function_env, monkeypatch):
    stack = function_env
    monkeypatch.delenv("TENCENTCLOUD_SECRETID")
    rid = stack.put("nocreds.jpg", jpeg(33))
    from cos_autotag.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="TENCENTCLOUD_SECRETID"):
        index.main_handler(stack.event("nocreds.jpg", rid), context())


def test_cli_invoke_runs_the_handler_on_an_event_file(function_env, tmp_path):
    stack = function_env
    rid = stack.put("cli/photo.jpg", jpeg(34))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(stack.event("cli/photo.jpg", rid)), encoding="utf-8")
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "AUTOTAG_LOG_LEVEL": "WARNING", "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-m", "cos_autotag_tools.cli", "invoke", str(event_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["labeled"] == 1 and summary["results"][0]["key"] == "cli/photo.jpg"
    assert "autotag" in stack.tags("cli/photo.jpg")


def test_cli_invoke_reports_a_bad_event_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "cos_autotag_tools.cli", "invoke", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "cannot read" in out.stderr
