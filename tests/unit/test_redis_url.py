"""The Redis URL: every form a password is pasted in parses, and no error or repr shows any of it."""

from __future__ import annotations

import pytest

from cos_autotag.errors import InvalidRedisUrl
from cos_autotag.idempotency import store_from_url
from cos_autotag.idempotency.redis_url import RedisAddress

SECRET = "Sup3rSecret"


def _pieces(secret: str) -> list[str]:
    """Every run of 4 characters of the secret, so that no fragment of it may show either."""
    return [secret[i : i + 4] for i in range(len(secret) - 3)]


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in _pieces(secret):
            assert piece not in text, f"{piece!r} of the password shows in {text!r}"


def test_url_parts() -> None:
    address = RedisAddress.parse("rediss://user:p%40ss@cache.internal:6380/4")
    assert (address.host, address.port, address.db, address.tls) == ("cache.internal", 6380, 4, True)
    assert (address.username, address.password) == ("user", "p@ss")
    assert RedisAddress.parse("redis://10.0.0.5") == RedisAddress("10.0.0.5")
    assert RedisAddress.parse("redis://10.0.0.5/") == RedisAddress("10.0.0.5")
    assert RedisAddress.parse("redis://:secret@10.0.0.5:6379").password == "secret"
    assert RedisAddress.parse("redis://[::1]:7000/2") == RedisAddress("::1", 7000, 2)


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        # Tencent Cloud Redis's sub-account login: the password is `account@password`.
        (f"redis://:acct@{SECRET}@10.0.0.5:6379/0", None, f"acct@{SECRET}"),
        (f"redis://:pa/ss{SECRET}@10.0.0.5/1", None, f"pa/ss{SECRET}"),
        (f"redis://:{SECRET}/@10.0.0.5", None, f"{SECRET}/"),
        (f"redis://:a@b/c:{SECRET}?#@10.0.0.5", None, f"a@b/c:{SECRET}?#"),
        (f"redis://:{SECRET}%25@10.0.0.5", None, f"{SECRET}%"),
        (f"redis://:{SECRET}%zz@10.0.0.5", None, f"{SECRET}%zz"),
        (f"redis://:{SECRET}%@10.0.0.5", None, f"{SECRET}%"),
        (f"redis://autotag:{SECRET}@10.0.0.5", "autotag", SECRET),
        (f"redis://:{SECRET}:with:colons@10.0.0.5", None, f"{SECRET}:with:colons"),
        (f"redis://:{SECRET}%E7%8C%AB@10.0.0.5", None, f"{SECRET}猫"),
        ("redis://:@10.0.0.5", None, ""),
    ],
)
def test_password_forms(url: str, username: str | None, password: str) -> None:
    address = RedisAddress.parse(url)
    assert (address.host, address.username, address.password) == ("10.0.0.5", username, password)
    assert_hidden(repr(address), password)
    assert_hidden(str(address), password)
    assert_hidden(repr(store_from_url(url, 60)), password)


@pytest.mark.parametrize("scheme", ["REDIS", "Redis", "rEdIs"])
def test_scheme_is_case_insensitive(scheme: str) -> None:
    address = RedisAddress.parse(f"{scheme}://:{SECRET}@10.0.0.5:6380/3")
    assert (address.port, address.db, address.tls, address.password) == (6380, 3, False, SECRET)
    assert RedisAddress.parse(f"{scheme}S://:{SECRET}@10.0.0.5").tls


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://:{SECRET}@host:6379", "redis:// or rediss://"),
        (f"{SECRET}", "redis:// or rediss://"),
        (f"redis:/:{SECRET}@host", "redis:// or rediss://"),
        (f"redis://:{SECRET}@", "no host"),
        (f"redis://:{SECRET}@:6379/0", "no host"),
        (f"redis://:{SECRET}", "no host"),  # the `@` forgotten
        (f"redis://:{SECRET}@host:99999/0", "port"),
        (f"redis://:{SECRET}@host:/0", "port"),
        (f"redis://:{SECRET}@host:6379/zero", "database"),
        (f"redis://:{SECRET}@host:6379/{SECRET}", "database"),
        (f"redis://:{SECRET}@host:6379/0?ssl=true", "query"),
        (f"redis://:{SECRET}@host#frag", "query"),
        (f"redis://{SECRET}@host", "without a ':'"),
        (f"redis://:{SECRET}@ho st", "host name"),
        (f"redis://:{SECRET}@{SECRET}!", "host name"),
        (f"redis://:{SECRET}@[::zz]:6379", "IPv6"),
        (f"redis://:{SECRET}@[::1", "IPv6"),
        (f"redis://:{SECRET}%ff@host", "not UTF-8"),
        (f"REDIS://:acct@{SECRET}@", "no host"),
        (f"redis://:pa/ss{SECRET}", "no host"),
        (f"redis://h:{SECRET}", "port"),
    ],
)
def test_a_bad_url_names_the_problem_without_any_of_the_password(url: str, problem: str) -> None:
    with pytest.raises(InvalidRedisUrl, match=problem) as caught:
        RedisAddress.parse(url)
    assert isinstance(caught.value, ValueError)
    assert_hidden(str(caught.value), SECRET)
    assert_hidden(repr(caught.value), SECRET)
    assert "expected redis://" in str(caught.value)  # says what to write instead
    # Nothing chained either: a traceback would print it.
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_from_url_does_not_connect() -> None:
    # Redis may be down at cold start: the App must still build, and fall back at the first claim.
    store_from_url("redis://127.0.0.1:1/0", 60)
