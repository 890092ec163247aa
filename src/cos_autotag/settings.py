"""The function's settings: environment variables, validated once at cold start.

Each setting is declared once, as a `Settings` field whose default is given by `_setting` beside
its variable, parser and help text. `SETTINGS` lists them for validation and for the
docs: the README's settings table and `.env.example` are generated from it by
`python -m cos_autotag_tools.deploy.settings_doc`, which also checks serverless.yml's
environment block; one test fails when any of the three drifts.

A bad value fails loudly with the variable's name, the value and what is allowed, so a
misconfigured deploy shows up in the first log line instead of as mislabeled objects. A value
that can hold a secret (the Redis URL's password) is never repeated, in any form.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from . import cos_facts
from .errors import InvalidRedisUrl, SettingsError

MODES = ("tags", "metadata")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LARGE_IMAGE_POLICIES = ("thumbnail", "skip")
TAG_TEXTS = ("auto", "utf8", "ascii-safe")

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


# --- the declaration: one field per setting ------------------------------------------------------


class Setting(NamedTuple):
    """How one environment variable fills one `Settings` field (declared with the field by `_setting`)."""

    var: str  # the environment variable
    attr: str  # the Settings field it fills
    default: str  # the field's default as written in .env.example and the README; "" = unset
    parse: Callable[[str, str], object]
    help: str  # one line: what the variable does and what it accepts (README, .env.example)
    secret: bool = False  # the value can hold a password: never shown in an error


# What each `_setting` declared besides its default, in declaration order: a class body runs top
# to bottom, so the n-th entry is the n-th field's (`SETTINGS` checks that the counts agree).
_DECLARED: list[tuple[str, Callable[[str, str], Any], str, bool]] = []


def _setting(var: str, default: Any, parse: Callable[[str, str], Any], help: str, *, secret: bool = False) -> Any:
    """The field's default; the rest is kept for `SETTINGS`."""
    _DECLARED.append((var, parse, help, secret))
    return default


# A NamedTuple rather than a frozen dataclass: immutable all the same (`_replace` makes a changed
# copy), and over a millisecond cheaper to define, which every cold start pays for.
class Settings(NamedTuple):
    mode: str = _setting(
        "AUTOTAG_MODE",
        "tags",
        _choice(MODES, str.lower),
        "Write labels as object tags (`tags`) or as `x-cos-meta-*` metadata (`metadata`).",
    )
    scenes: tuple[str, ...] = _setting(
        "AUTOTAG_SCENES",
        cos_facts.DETECT_DEFAULT_SCENES,
        _scenes,
        "detect-label scenes, comma-separated from `" + ",".join(cos_facts.DETECT_SCENES) + "` (each one is billed).",
    )
    max_labels: int = _setting(
        "AUTOTAG_MAX_LABELS",
        5,
        _int(1, MAX_LABELS_LIMIT),
        f"How many labels to keep, 1-{MAX_LABELS_LIMIT} (one of COS's "
        f"{cos_facts.TAGS_MAX_PER_OBJECT} tags is the function's marker).",
    )
    min_confidence: int = _setting(
        "AUTOTAG_MIN_CONFIDENCE",
        50,
        _int(0, 100),
        "Drop labels below this confidence, 0-100.",
    )
    log_level: str = _setting(
        "AUTOTAG_LOG_LEVEL",
        "INFO",
        _choice(LOG_LEVELS, str.upper),
        "`" + "`, `".join(LOG_LEVELS) + "`.",
    )
    log_event: bool = _setting(
        "AUTOTAG_LOG_EVENT",
        False,
        _bool,
        "Log each incoming event, secrets redacted: `true` or `false`.",
    )
    cos_endpoint: tuple[str, str, int] | None = _setting(  # (scheme, host, port)
        "AUTOTAG_COS_ENDPOINT",
        None,
        _endpoint,
        "`http://HOST:PORT`: send every COS/CI request there, keeping the bucket's virtual-host "
        "`Host` (local runs and tests; never deployed).",
    )
    include_prefixes: tuple[str, ...] = _setting(
        "AUTOTAG_INCLUDE_PREFIXES",
        (),
        _list,
        "Comma-separated key prefixes to label; unset: every key.",
    )
    exclude_prefixes: tuple[str, ...] = _setting(
        "AUTOTAG_EXCLUDE_PREFIXES",
        (),
        _list,
        "Comma-separated key prefixes to skip.",
    )
    include_suffixes: tuple[str, ...] = _setting(
        "AUTOTAG_INCLUDE_SUFFIXES",
        (),
        _list,
        "Comma-separated key suffixes to label; unset: every key.",
    )
    exclude_suffixes: tuple[str, ...] = _setting(
        "AUTOTAG_EXCLUDE_SUFFIXES",
        (),
        _list,
        "Comma-separated key suffixes to skip.",
    )
    buckets: frozenset[str] = _setting(  # empty: any bucket
        "AUTOTAG_BUCKETS",
        frozenset(),
        _buckets,
        "Allow-list of `<name>-<appid>` buckets; an event for another bucket is refused with a "
        "log line and no call. Unset: any bucket (serverless.yml sets the trigger's bucket).",
    )
    large_images: str = _setting(
        "AUTOTAG_LARGE_IMAGES",
        "thumbnail",
        _choice(LARGE_IMAGE_POLICIES, str.lower),
        "Photos over detect-label's 3 MB limit: label a thumbnail (`thumbnail`) or skip them (`skip`).",
    )
    tag_text: str = _setting(
        "AUTOTAG_TAG_TEXT",
        "auto",
        _choice(TAG_TEXTS, str.lower),
        "How labels COS's strict tag rule refuses (non-ASCII) are written in tags mode: `auto` readable, "
        "encoded (`autotag:b64:...`) once COS refuses them; `utf8` readable only; `ascii-safe` always encoded.",
    )
    redis_url: str | None = _setting(
        "AUTOTAG_IDEMPOTENCY_REDIS_URL",
        None,
        _redis_url,
        "`redis://[:password@]HOST:PORT[/DB]` (or `rediss://`): strict duplicate suppression "
        "across invocations. Unset: the marker the function writes on each object guards.",
        secret=True,
    )
    idempotency_ttl_s: int = _setting(
        "AUTOTAG_IDEMPOTENCY_TTL_SECONDS",
        7 * 24 * 3600,
        _int(TTL_MIN_S, TTL_MAX_S),
        "How long (seconds) Redis remembers a completed upload.",
    )

    def __repr__(self) -> str:  # a value that can hold a password is left out
        shown = (f"{s.attr}={getattr(self, s.attr)!r}" for s in SETTINGS if not s.secret)
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kwargs: dict[str, object] = {}
        for setting in SETTINGS:
            raw = env.get(setting.var)
            if raw is not None and raw.strip() != "":
                kwargs[setting.attr] = setting.parse(setting.var, raw.strip())
        return cls(**kwargs)  # type: ignore[arg-type]


def _as_text(value: object) -> str:
    """A default as a user would write it in the variable ("" for unset)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, frozenset)):
        return ",".join(sorted(value) if isinstance(value, frozenset) else value)
    return str(value)


# Every setting, in declaration order: validation reads these, and so do the generated docs.
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(var, attr, _as_text(Settings._field_defaults[attr]), parse, help, secret)
    for attr, (var, parse, help, secret) in zip(Settings._fields, _DECLARED, strict=True)
)
ENV_VARS = tuple(setting.var for setting in SETTINGS)


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
