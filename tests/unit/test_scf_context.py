"""The one SCF context builder the CLI, the emulator's trigger, the SCF Invoke stand-in and the tests use."""

from __future__ import annotations

import json

from cos_autotag_tools.scf_context import scf_context


def test_the_context_has_the_fields_scf_documents() -> None:
    context = scf_context(time_limit_in_ms=4000, region="ap-guangzhou", appid="1250000000", uin="100000000001")
    assert context["function_name"] == "cos-autotag" and context["function_version"] == "$LATEST"
    assert context["namespace"] == "default" and context["memory_limit_in_mb"] == 128
    assert context["time_limit_in_ms"] == 4000 and context["tencentcloud_region"] == "ap-guangzhou"
    assert context["tencentcloud_appid"] == "1250000000" and context["tencentcloud_uin"] == "100000000001"
    env = json.loads(context["environment"])
    assert env["SCF_FUNCTIONNAME"] == "cos-autotag" and env["TENCENTCLOUD_REGION"] == "ap-guangzhou"
    assert context["environ"].split(";")[0] == "SCF_NAMESPACE=default"
    assert "TENCENTCLOUD_APPID=1250000000" in context["environ"].split(";")


def test_each_invocation_gets_its_own_request_id_unless_one_is_given() -> None:
    assert scf_context()["request_id"] != scf_context()["request_id"]
    assert scf_context(request_id="req-1")["request_id"] == "req-1"


def test_an_account_field_not_given_is_left_out_not_made_up() -> None:
    context = scf_context(function_name="autotag")
    assert not any(name.startswith("tencentcloud_") for name in context)
    assert "TENCENTCLOUD_REGION" not in context["environ"] and "SCF_FUNCTIONNAME=autotag" in context["environ"]
