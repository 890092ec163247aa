"""Parse SCF COS trigger events into records the pipeline can act on.

Every field is untrusted input. A record that cannot be understood becomes a
`MalformedRecord` naming what is wrong; it never stops the other records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_plus, urlsplit

from . import cos_facts
from .errors import EventError

# Refuse absurd input before doing any work on it.
MAX_RECORDS_PER_EVENT = 1000
# COS's largest object is 48.82 TB; a size beyond this many digits is not a size.
MAX_SIZE_DIGITS = 20


# A NamedTuple rather than a dataclass: immutable all the same, and several times cheaper to
# define, which every cold start pays for.
class MalformedRecord(NamedTuple):
    index: int  # type: ignore[assignment]  # the record's place in the event, shadowing tuple.index on purpose
    problem: str


# A NamedTuple like the record above (`_replace` makes a changed copy); its mapping default is a
# read-only empty one, shared by every record that has no user metadata.
class CosRecord(NamedTuple):
    """One object-level notification, with every name resolved to what the COS API needs."""

    bucket: str  # full bucket name: <name>-<appid>
    region: str  # full region: ap-guangzhou
    key: str  # object key, decoded, without the /<appid>/<name>/ prefix
    event_name: str
    size: int | None = None
    content_type: str = ""
    user_meta: Mapping[str, str] = MappingProxyType({})  # x-cos-meta-* names lower-cased
    vid: str = ""
    upload_request_id: str = ""
    event_time: int | None = None
    # Other readings of an ambiguously encoded key, tried in order if `key` does not exist.
    key_alternatives: tuple[str, ...] = ()

    @property
    def is_created(self) -> bool:
        return self.event_name.startswith(cos_facts.EVENT_CREATED_PREFIX)

    @property
    def is_copy(self) -> bool:
        return self.event_name == cos_facts.EVENT_COPY

    @property
    def identity(self) -> str:
        """What distinguishes this upload from another upload of the same key."""
        return self.vid or self.upload_request_id

    @property
    def upload_token(self) -> str:
        """A short, tag-safe digest of the upload's identity (empty when it has none)."""
        if not self.identity:
            return ""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]


def parse_event(event: Any) -> list[CosRecord | MalformedRecord]:
    """Turn an SCF COS trigger event into records; raise EventError if it is not one at all."""
    if not isinstance(event, Mapping):
        raise EventError(f"event is a {type(event).__name__}, not an object")
    records = event.get("Records")
    if not isinstance(records, list):
        raise EventError("event has no Records list")
    if len(records) > MAX_RECORDS_PER_EVENT:
        raise EventError(f"event has {len(records)} records, more than {MAX_RECORDS_PER_EVENT}")
    out: list[CosRecord | MalformedRecord] = []
    for index, raw in enumerate(records):
        try:
            out.append(_parse_record(raw))
        except _Missing as missing:
            out.append(MalformedRecord(index, str(missing)))
        except Exception as error:  # whatever a field holds, only its record is lost
            out.append(MalformedRecord(index, f"unreadable record ({type(error).__name__})"))
    return out


class _Missing(ValueError):
    pass


def _get(obj: Any, path: str, kind: type | tuple[type, ...] = object, required: bool = True) -> Any:
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            break
    if value is None or (isinstance(value, str) and value == "" and required):
        if required:
            raise _Missing(f"missing {path}")
        return None
    if not isinstance(value, kind):
        raise _Missing(f"{path} is a {type(value).__name__}")
    return value


def _parse_record(raw: Any) -> CosRecord:
    if not isinstance(raw, Mapping):
        raise _Missing("record is not an object")
    event_name = _get(raw, "event.eventName", str)
    obj = _get(raw, "cos.cosObject", Mapping)
    bucket_info = _get(raw, "cos.cosBucket", Mapping, required=False) or {}
    url = _get(obj, "url", str, required=False) or ""
    try:
        host_match = cos_facts.COS_HOST_RE.match(urlsplit(url).hostname or "") if url else None
    except ValueError as error:  # an unclosed `[`, a bad port: no host to read
        raise _Missing(f"cos.cosObject.url is not a URL ({error})") from error

    bucket = _bucket(bucket_info, host_match)
    region = _region(bucket_info, host_match)
    key_field = _get(obj, "key", str, required=False)
    if key_field is None and not url:
        raise _Missing("missing cos.cosObject.key and cos.cosObject.url")
    keys = _resolve_key(key_field, url, bucket_info, bucket)
    for candidate in keys:
        try:
            encoded = candidate.encode()
        except UnicodeEncodeError as error:  # a lone surrogate: no request can name it
            raise _Missing("object key is not valid Unicode") from error
        if len(encoded) > cos_facts.KEY_MAX_BYTES:
            raise _Missing(f"object key longer than {cos_facts.KEY_MAX_BYTES} bytes")
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    lowered = {str(k).lower(): v for k, v in meta.items() if isinstance(v, str)}
    size = obj.get("size")
    return CosRecord(
        bucket=bucket,
        region=region,
        key=keys[0],
        key_alternatives=tuple(keys[1:]),
        event_name=event_name,
        size=_size(size),
        content_type=lowered.get("content-type", "").strip(),
        user_meta={k: v for k, v in lowered.items() if k.startswith(cos_facts.USER_META_PREFIX)},
        vid=obj.get("vid") if isinstance(obj.get("vid"), str) else "",
        upload_request_id=lowered.get("x-cos-request-id", ""),
        event_time=_event_time(raw["event"].get("eventTime")),
    )


def _size(value: Any) -> int | None:
    if isinstance(value, bool):
        raise _Missing("cos.cosObject.size is not a number")
    if isinstance(value, int):
        if value.bit_length() > 64:
            raise _Missing("cos.cosObject.size is out of range")
        size = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        if len(value.strip()) > MAX_SIZE_DIGITS:
            raise _Missing("cos.cosObject.size is out of range")
        size = int(value)
    elif value is None:
        return None
    else:
        raise _Missing("cos.cosObject.size is not a number")
    if size < 0:
        raise _Missing("cos.cosObject.size is negative")
    return size


def _event_time(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value.bit_length() > 64:
        return None
    return value


def _bucket(info: Mapping[str, Any], host_match: Any) -> str:
    name, appid = info.get("name"), info.get("appid")
    if isinstance(name, str) and name and isinstance(appid, (str, int)) and str(appid):
        appid = str(appid)
        bucket = name if name.endswith("-" + appid) else f"{name}-{appid}"
    elif host_match:
        bucket = host_match.group("bucket")
    else:
        raise _Missing("missing cos.cosBucket.name/appid and no COS host in cos.cosObject.url")
    if not cos_facts.BUCKET_RE.match(bucket):
        raise _Missing(f"bucket {bucket!r} is not a <name>-<appid> bucket name")
    return bucket


def _region(info: Mapping[str, Any], host_match: Any) -> str:
    # The URL host carries the full name; s3Region is undocumented but present; region is a short code.
    if host_match and cos_facts.REGION_RE.match(host_match.group("region")):
        return str(host_match.group("region"))
    for field_name in ("s3Region", "region"):
        value = info.get(field_name)
        if isinstance(value, str) and value:
            if cos_facts.REGION_RE.match(value):
                return value
            if value in cos_facts.REGION_SHORT_CODES:
                return cos_facts.REGION_SHORT_CODES[value]
    raise _Missing("missing region: no COS host in cos.cosObject.url and no known cos.cosBucket.region")


def _strip_prefix(key_field: str, info: Mapping[str, Any], bucket: str) -> str:
    name, appid = str(info.get("name") or ""), str(info.get("appid") or "")
    if not name:
        name, _, appid = bucket.rpartition("-")
    short_name = name[: -len(appid) - 1] if appid and name.endswith("-" + appid) else name
    for prefix in (f"/{appid}/{short_name}/", f"/{appid}/{name}/", f"/{appid}/{bucket}/"):
        if key_field.startswith(prefix):
            return key_field[len(prefix) :]
    # Not the documented form: take it as a plain key (Tencent demos also tolerate this).
    return key_field.lstrip("/")


def _resolve_key(key_field: str | None, url: str, info: Mapping[str, Any], bucket: str) -> list[str]:
    """Readings of the key, best first.

    How COS encodes `cosObject.key` is undocumented, while `cosObject.url` is a URL and so
    percent-encoded. A reading both fields agree on wins; otherwise every plausible reading
    is kept so the pipeline can try the next one if COS says the first does not exist.
    """
    from_url: list[str] = []
    if url:
        path = urlsplit(url).path.lstrip("/")
        if path:
            from_url = _unique([unquote(path), unquote_plus(path)])
    from_key: list[str] = []
    if key_field is not None:
        stripped = _strip_prefix(key_field, info, bucket)
        from_key = _unique([stripped, unquote(stripped), unquote_plus(stripped)])
    if from_url and from_key:
        agreed = [k for k in from_url if k in from_key]
        if agreed:
            return agreed
        return _non_empty(_unique(from_key + from_url))
    return _non_empty(from_url or from_key)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _non_empty(keys: list[str]) -> list[str]:
    keys = [k for k in keys if k]
    if not keys:
        raise _Missing("object key is empty")
    return keys
