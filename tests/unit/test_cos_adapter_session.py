"""The adapter's HTTP session reads requests' environment settings once, and keeps their effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from cos_autotag import cos_adapter

PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in (*PROXY_VARS, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return monkeypatch


def test_a_plain_environment_is_not_looked_up_per_request(plain_env: pytest.MonkeyPatch) -> None:
    session = cos_adapter._session()
    assert session.trust_env is False and session.verify is True


def test_a_ca_bundle_variable_becomes_the_sessions(plain_env: pytest.MonkeyPatch) -> None:
    plain_env.setenv("CURL_CA_BUNDLE", "/etc/curl.pem")
    assert cos_adapter._session().verify == "/etc/curl.pem"
    plain_env.setenv("REQUESTS_CA_BUNDLE", "/etc/requests.pem")  # requests prefers this one
    session = cos_adapter._session()
    assert session.verify == "/etc/requests.pem" and session.trust_env is False
    # What requests itself would choose for a request that names no `verify`:
    plain_env.delenv("CURL_CA_BUNDLE")
    assert (
        session.merge_environment_settings("https://b.cos.ap-guangzhou.myqcloud.com/k", {}, None, None, None)["verify"]
        == "/etc/requests.pem"
    )


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "http_proxy", "NO_PROXY"])
def test_a_proxy_variable_keeps_the_per_request_look_up(plain_env: pytest.MonkeyPatch, var: str) -> None:
    plain_env.setenv(var, "http://127.0.0.1:3128")
    session = cos_adapter._session()
    assert session.trust_env is True
    if var != "NO_PROXY":
        settings = session.merge_environment_settings("http://b.cos.ap-guangzhou.myqcloud.com/k", {}, None, None, None)
        assert settings["proxies"]


@pytest.mark.parametrize("where", ["NETRC", "home"])
def test_a_netrc_keeps_the_per_request_look_up(plain_env: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine example.com login a password b\n")
    if where == "NETRC":
        plain_env.setenv("NETRC", str(netrc))
        plain_env.setenv("HOME", str(tmp_path / "elsewhere"))
    assert cos_adapter._session().trust_env is True
