"""The function's settings: environment variables, validated once at cold start.

A bad value fails loudly with the variable's name, the value and what is allowed, so a
misconfigured deploy shows up in the first log line instead of as mislabeled objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import cos_facts
from .errors import SettingsError

MODES = ("tags", "metadata")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LARGE_IMAGE_POLICIES = ("thumbnail", "skip")

# Every variable the function reads; serverless.yml and the README list exactly these.
ENV_VARS = (
    "AUTOTAG_MODE",
    "AUTOTAG_SCENES",
    "AUTOTAG_MAX_LABELS",
    "AUTOTAG_MIN_CONFIDENCE",
    "AUTOTAG_LOG_LEVEL",
    "AUTOTAG_LOG_EVENT",
    "AUTOTAG_COS_ENDPOINT",
    "AUTOTAG_INCLUDE_PREFIXES",
    "AUTOTAG_EXCLUDE_PREFIXES",
    "AUTOTAG_INCLUDE_SUFFIXES",
    "AUTOTAG_EXCLUDE_SUFFIXES",
    "AUTOTAG_BUCKETS",
    "AUTOTAG_LARGE_IMAGES",
    "AUTOTAG_IDEMPOTENCY_REDIS_URL",
    "AUTOTAG_IDEMPOTENCY_TTL_SECONDS",
)

# The function keeps one tag for its marker, so at most TAGS_MAX_PER_OBJECT - 1 labels.
MAX_LABELS_LIMIT = cos_facts.TAGS_MAX_PER_OBJECT - 1


@dataclass(frozen=True)
class Settings:
    mode: str = "tags"
    scenes: tuple[str, ...] = cos_facts.DETECT_DEFAULT_SCENES
    max_labels: int = 5
    min_confidence: int = 50
    log_level: str = "INFO"
    log_event: bool = False
    cos_endpoint: tuple[str, str, int] | None = None  # (scheme, host, port)
    include_prefixes: tuple[str, ...] = ()
    exclude_prefixes: tuple[str, ...] = ()
    include_suffixes: tuple[str, ...] = ()
    exclude_suffixes: tuple[str, ...] = ()
    buckets: frozenset[str] = field(default_factory=frozenset)  # empty: any bucket
    large_images: str = "thumbnail"
    redis_url: str | None = None
    idempotency_ttl_s: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or value.strip() == "" else value.strip()

        kwargs: dict[str, object] = {}
        if (v := get("AUTOTAG_MODE")) is not None:
            kwargs["mode"] = _choice("AUTOTAG_MODE", v.lower(), MODES)
        if (v := get("AUTOTAG_SCENES")) is not None:
            kwargs["scenes"] = _scenes(v)
        if (v := get("AUTOTAG_MAX_LABELS")) is not None:
            kwargs["max_labels"] = _int("AUTOTAG_MAX_LABELS", v, 1, MAX_LABELS_LIMIT)
        if (v := get("AUTOTAG_MIN_CONFIDENCE")) is not None:
            kwargs["min_confidence"] = _int("AUTOTAG_MIN_CONFIDENCE", v, 0, 100)
        if (v := get("AUTOTAG_LOG_LEVEL")) is not None:
            kwargs["log_level"] = _choice("AUTOTAG_LOG_LEVEL", v.upper(), LOG_LEVELS)
        if (v := get("AUTOTAG_LOG_EVENT")) is not None:
            kwargs["log_event"] = _bool("AUTOTAG_LOG_EVENT", v)
        if (v := get("AUTOTAG_COS_ENDPOINT")) is not None:
            kwargs["cos_endpoint"] = _endpoint("AUTOTAG_COS_ENDPOINT", v)
        for name, attr in (
            ("AUTOTAG_INCLUDE_PREFIXES", "include_prefixes"),
            ("AUTOTAG_EXCLUDE_PREFIXES", "exclude_prefixes"),
            ("AUTOTAG_INCLUDE_SUFFIXES", "include_suffixes"),
            ("AUTOTAG_EXCLUDE_SUFFIXES", "exclude_suffixes"),
        ):
            if (v := get(name)) is not None:
                kwargs[attr] = _list(v)
        if (v := get("AUTOTAG_BUCKETS")) is not None:
            kwargs["buckets"] = _buckets(v)
        if (v := get("AUTOTAG_LARGE_IMAGES")) is not None:
            kwargs["large_images"] = _choice("AUTOTAG_LARGE_IMAGES", v.lower(), LARGE_IMAGE_POLICIES)
        if (v := get("AUTOTAG_IDEMPOTENCY_REDIS_URL")) is not None:
            kwargs["redis_url"] = _redis_url("AUTOTAG_IDEMPOTENCY_REDIS_URL", v)
        if (v := get("AUTOTAG_IDEMPOTENCY_TTL_SECONDS")) is not None:
            kwargs["idempotency_ttl_s"] = _int("AUTOTAG_IDEMPOTENCY_TTL_SECONDS", v, 60, 366 * 24 * 3600)
        return cls(**kwargs)  # type: ignore[arg-type]


def _choice(var: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(var, value, "one of " + ", ".join(allowed))
    return value


def _int(var: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise SettingsError(var, value, f"a whole number from {low} to {high}") from None
    if not low <= number <= high:
        raise SettingsError(var, value, f"a whole number from {low} to {high}")
    return number


def _bool(var: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(var, value, "true or false")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _scenes(value: str) -> tuple[str, ...]:
    scenes = _list(value.lower())
    allowed = "a comma-separated list of " + ", ".join(cos_facts.DETECT_SCENES)
    if not scenes or any(scene not in cos_facts.DETECT_SCENES for scene in scenes):
        raise SettingsError("AUTOTAG_SCENES", value, allowed)
    return tuple(dict.fromkeys(scenes))  # keep order, drop repeats


def _endpoint(var: str, value: str) -> tuple[str, str, int]:
    parts = urlsplit(value)
    allowed = "http://HOST:PORT or https://HOST:PORT"
    try:
        port = parts.port
    except ValueError:
        raise SettingsError(var, value, allowed) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise SettingsError(var, value, allowed)
    return parts.scheme, parts.hostname, port


def _buckets(value: str) -> frozenset[str]:
    buckets = _list(value)
    for bucket in buckets:
        if not cos_facts.BUCKET_RE.match(bucket):
            raise SettingsError("AUTOTAG_BUCKETS", value, "a comma-separated list of <name>-<appid> buckets")
    return frozenset(buckets)


def _redis_url(var: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise SettingsError(var, value, "redis://[:password@]HOST:PORT[/DB] or rediss://...")
    return value
