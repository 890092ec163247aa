"""The Redis URL: `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, parsed without ever showing the password.

Parsed by hand rather than with `urllib.parse`, because passwords are pasted as they are:
- The LAST `@` separates the credentials from the host. A password may hold `@`: Tencent Cloud
  Redis logs a sub-account in with the password `account@password`, so
  `redis://:acct@Sup3rSecret@10.0.0.5` is the password `acct@Sup3rSecret` (user none). A host
  never holds `@`, so this reading is never wrong for a valid URL.
- The credentials are split at their FIRST `:`: user (may be empty) before, password after, so
  the password may hold `:`, `/`, `?` and `#` unencoded too.
- Percent-escapes in the user and password are decoded (RFC 3986), so `p%40ss` is `p@ss`; a `%`
  not followed by two hex digits is kept as it is. A password holding a literal `%41` must be
  written `%2541`.
- The scheme is case-insensitive (`REDIS://` works).

No error message, and no repr, repeats any part of the URL that could hold the password: errors
name the part that is wrong and the expected form, and reprs show `***` for the credentials.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from ..errors import InvalidRedisUrl

DEFAULT_PORT = 6379
EXPECTED = "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss://... for TLS"
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


@dataclass(frozen=True)
class RedisAddress:
    """Where the store lives and how to log in."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("redis", "rediss"):
            raise InvalidRedisUrl(f"the redis URL must start with redis:// or rediss://; {EXPECTED}")
        credentials, at, location = rest.rpartition("@")
        username = password = None
        if at:
            user_part, colon, password_part = credentials.partition(":")
            if not colon:
                # `redis://SECRET@host` is almost always a password missing its `:`.
                raise InvalidRedisUrl(
                    f"the redis URL has credentials without a ':' before the password "
                    f"(write redis://:PASSWORD@HOST, or redis://USER:PASSWORD@HOST); {EXPECTED}"
                )
            username, password = _unescape(user_part) or None, _unescape(password_part)
        hostport, _, tail = _split_first(location, "/?#")
        if tail and tail[0] in "?#":
            raise InvalidRedisUrl(
                f"the redis URL has query parameters or a fragment, which are not supported; {EXPECTED}"
            )
        host, port = _host_and_port(hostport)
        db_text = tail[1:] if tail else ""
        if "?" in db_text or "#" in db_text:
            raise InvalidRedisUrl(
                f"the redis URL has query parameters or a fragment, which are not supported; {EXPECTED}"
            )
        db_text = db_text.rstrip("/")
        if db_text and not (db_text.isascii() and db_text.isdigit() and len(db_text) <= 5):
            raise InvalidRedisUrl(f"the redis URL's database is not a number, as in /0; {EXPECTED}")
        return cls(
            host=host,
            port=port,
            db=int(db_text) if db_text else 0,
            username=username,
            password=password,
            tls=scheme == "rediss",
        )

    @property
    def where(self) -> str:
        """host:port, for messages (never the credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:  # never show the credentials, even in a traceback's locals
        auth = "***@" if self.password is not None or self.username else ""
        return f"RedisAddress({'rediss' if self.tls else 'redis'}://{auth}{self.where}/{self.db})"

    __str__ = __repr__


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _unescape(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        bad = True  # raised below, outside this handler: the UnicodeDecodeError quotes the bytes
    if bad:
        raise InvalidRedisUrl(
            f"the redis URL's user or password has percent-escapes that are not UTF-8 "
            f"(write a literal % as %25); {EXPECTED}"
        )
    raise AssertionError("unreachable")


def _split_first(text: str, separators: str) -> tuple[str, str, str]:
    """Split at the first of any of `separators`, keeping it at the start of the tail."""
    positions = [i for i in (text.find(s) for s in separators) if i >= 0]
    if not positions:
        return text, "", ""
    cut = min(positions)
    return text[:cut], text[cut], text[cut:]


def _host_and_port(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):  # an IPv6 literal, [::1]:6379
        host, bracket, port_text = hostport[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise InvalidRedisUrl(f"the redis URL's IPv6 host is not in the form [ADDRESS]:PORT; {EXPECTED}")
        port_text = port_text[1:]
        if not _is_ipv6(host):
            raise InvalidRedisUrl(f"the redis URL's host in [] is not an IPv6 address; {EXPECTED}")
    else:
        host, _, port_text = hostport.partition(":")
        if not host:
            raise InvalidRedisUrl(f"the redis URL has no host; {EXPECTED}")
        if not _HOSTNAME.fullmatch(host):
            raise InvalidRedisUrl(f"the redis URL's host is not a host name or an IP address; {EXPECTED}")
    if not port_text and ":" not in hostport.rpartition("]")[2]:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535):
        raise InvalidRedisUrl(f"the redis URL's port is not a number from 1 to 65535; {EXPECTED}")
    return host, int(port_text)
