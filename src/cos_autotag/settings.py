"""The function's settings: environment variables, validated once at cold start.

`SETTINGS` is the one table of them: variable, default, parser and help text. Validation reads
it here; the README's settings table and `.env.example` are generated from it by
`python -m cos_autotag_tools.deploy.settings_doc`, and a test fails when they drift.

A bad value fails loudly with the variable's name, the value and what is allowed, so a
misconfigured deploy shows up in the first log line instead of as mislabeled objects. A value
that can hold a secret (the Redis URL's password) is never repeated, in any form.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import cos_facts
from .errors import InvalidRedisUrl, SettingsError

MODES = ("tags", "metadata")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LARGE_IMAGE_POLICIES = ("thumbnail", "skip")

# The function keeps one tag for its marker, so at most TAGS_MAX_PER_OBJECT - 1 labels.
MAX_LABELS_LIMIT = cos_facts.TAGS_MAX_PER_OBJECT - 1
TTL_MIN_S, TTL_MAX_S = 60, 366 * 24 * 3600

PREFIX = "AUTOTAG_"


# --- parsers: (variable, stripped non-empty text) -> value, or SettingsError ---------------------


def _choice(allowed: tuple[str, ...], fold: Callable[[str], str]) -> Callable[[str, str], str]:
    def parse(var: str, value: str) -> str:
        if fold(value) not in allowed:
            raise SettingsError(var, value, "one of " + ", ".join(allowed))
        return fold(value)

    return parse


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(var: str, value: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            raise SettingsError(var, value, f"a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise SettingsError(var, value, f"a whole number from {low} to {high}")
        return number

    return parse


def _bool(var: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(var, value, "true or false")


def _items(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _list(var: str, value: str) -> tuple[str, ...]:
    return _items(value)


def _scenes(var: str, value: str) -> tuple[str, ...]:
    scenes = _items(value.lower())
    allowed = "a comma-separated list of " + ", ".join(cos_facts.DETECT_SCENES)
    if not scenes or any(scene not in cos_facts.DETECT_SCENES for scene in scenes):
        raise SettingsError(var, value, allowed)
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


def _buckets(var: str, value: str) -> frozenset[str]:
    buckets = _items(value)
    for bucket in buckets:
        if not cos_facts.BUCKET_RE.match(bucket):
            raise SettingsError(var, value, "a comma-separated list of <name>-<appid> buckets")
    return frozenset(buckets)


def _redis_url(var: str, value: str) -> str:
    """The URL may carry a password: the error is the parser's, which names what is wrong and
    never any part of the value. One parser, the store's own, so what passes here connects."""
    from .idempotency.redis_url import RedisAddress  # small, and read only when Redis is configured

    try:
        RedisAddress.parse(value)
    except InvalidRedisUrl as error:
        raise SettingsError(var, None, str(error)) from None
    return value


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    var: str  # the environment variable
    attr: str  # the Settings field it fills
    default: str  # as written in .env.example; "" = unset
    parse: Callable[[str, str], object]
    help: str  # one line: what the variable does and what it accepts (README, .env.example)
    secret: bool = False  # the value can hold a password: never shown in an error
    deployed: bool = True  # False: only for local runs, serverless.yml does not set it


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AUTOTAG_MODE",
        "mode",
        "tags",
        _choice(MODES, str.lower),
        "Write labels as object tags (`tags`) or as `x-cos-meta-*` metadata (`metadata`).",
    ),
    Setting(
        "AUTOTAG_SCENES",
        "scenes",
        ",".join(cos_facts.DETECT_DEFAULT_SCENES),
        _scenes,
        "detect-label scenes, comma-separated from `" + ",".join(cos_facts.DETECT_SCENES) + "` (each one is billed).",
    ),
    Setting(
        "AUTOTAG_MAX_LABELS",
        "max_labels",
        "5",
        _int(1, MAX_LABELS_LIMIT),
        f"How many labels to keep, 1-{MAX_LABELS_LIMIT} (one of COS's "
        f"{cos_facts.TAGS_MAX_PER_OBJECT} tags is the function's marker).",
    ),
    Setting(
        "AUTOTAG_MIN_CONFIDENCE",
        "min_confidence",
        "50",
        _int(0, 100),
        "Drop labels below this confidence, 0-100.",
    ),
    Setting(
        "AUTOTAG_LOG_LEVEL",
        "log_level",
        "INFO",
        _choice(LOG_LEVELS, str.upper),
        "`" + "`, `".join(LOG_LEVELS) + "`.",
    ),
    Setting(
        "AUTOTAG_LOG_EVENT",
        "log_event",
        "false",
        _bool,
        "Log each incoming event, secrets redacted: `true` or `false`.",
    ),
    Setting(
        "AUTOTAG_COS_ENDPOINT",
        "cos_endpoint",
        "",
        _endpoint,
        "`http://HOST:PORT`: send every COS/CI request there, keeping the bucket's virtual-host "
        "`Host` (local runs and tests; never deployed).",
        deployed=False,
    ),
    Setting(
        "AUTOTAG_INCLUDE_PREFIXES",
        "include_prefixes",
        "",
        _list,
        "Comma-separated key prefixes to label; unset: every key.",
    ),
    Setting(
        "AUTOTAG_EXCLUDE_PREFIXES",
        "exclude_prefixes",
        "",
        _list,
        "Comma-separated key prefixes to skip.",
    ),
    Setting(
        "AUTOTAG_INCLUDE_SUFFIXES",
        "include_suffixes",
        "",
        _list,
        "Comma-separated key suffixes to label; unset: every key.",
    ),
    Setting(
        "AUTOTAG_EXCLUDE_SUFFIXES",
        "exclude_suffixes",
        "",
        _list,
        "Comma-separated key suffixes to skip.",
    ),
    Setting(
        "AUTOTAG_BUCKETS",
        "buckets",
        "",
        _buckets,
        "Allow-list of `<name>-<appid>` buckets; an event for another bucket is refused with a "
        "log line and no call. Unset: any bucket (serverless.yml sets the trigger's bucket).",
    ),
    Setting(
        "AUTOTAG_LARGE_IMAGES",
        "large_images",
        "thumbnail",
        _choice(LARGE_IMAGE_POLICIES, str.lower),
        "Photos over detect-label's 3 MB limit: label a thumbnail (`thumbnail`) or skip them (`skip`).",
    ),
    Setting(
        "AUTOTAG_IDEMPOTENCY_REDIS_URL",
        "redis_url",
        "",
        _redis_url,
        "`redis://[:password@]HOST:PORT[/DB]` (or `rediss://`): strict duplicate suppression "
        "across invocations. Unset: the marker the function writes on each object guards.",
        secret=True,
    ),
    Setting(
        "AUTOTAG_IDEMPOTENCY_TTL_SECONDS",
        "idempotency_ttl_s",
        str(7 * 24 * 3600),
        _int(TTL_MIN_S, TTL_MAX_S),
        "How long (seconds) Redis remembers a completed upload.",
    ),
)

# Every variable the function reads, in table order.
ENV_VARS = tuple(setting.var for setting in SETTINGS)


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
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    idempotency_ttl_s: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kwargs: dict[str, object] = {}
        for setting in SETTINGS:
            raw = env.get(setting.var)
            if raw is not None and raw.strip() != "":
                kwargs[setting.attr] = setting.parse(setting.var, raw.strip())
        return cls(**kwargs)  # type: ignore[arg-type]


# AUTOTAG_* names that other programs sharing the environment read: the local tooling registers
# its own (`register_known_variables`), so the function does not report them as typos.
_known_elsewhere: set[str] = set()


def register_known_variables(*names: str) -> None:
    _known_elsewhere.update(names)


def unknown_variables(
    env: Mapping[str, str] | None = None, *, also_known: tuple[str, ...] = ()
) -> list[tuple[str, str | None]]:
    """`AUTOTAG_*` names in `env` that no setting reads (a typo is otherwise silently ignored),
    each with the closest known name, or None when nothing is close. Names registered by other
    programs, and `also_known`, are not reported."""
    env = os.environ if env is None else env
    known = set(ENV_VARS) | _known_elsewhere | set(also_known)
    unknown = sorted(name for name in env if name.startswith(PREFIX) and name not in known)
    if not unknown:
        return []
    import difflib  # only when a name is unknown: every cold start runs this

    # Compare without the shared prefix, which would make every name look close.
    suffixes = {var.removeprefix(PREFIX): var for var in ENV_VARS}

    def closest(name: str) -> str | None:
        match = difflib.get_close_matches(name.removeprefix(PREFIX), list(suffixes), n=1, cutoff=0.75)
        return suffixes[match[0]] if match else None

    return [(name, closest(name)) for name in unknown]
