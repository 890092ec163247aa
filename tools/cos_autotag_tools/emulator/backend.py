"""What every COS operation works with: the store, credentials, label engine, faults and the
trigger hook, plus the helpers the operations share (header parsing, tag rules, time formats)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from cos_autotag_tools import cos_facts

from .engine import LabelEngine
from .errors import CosError
from .faults import FaultInjector
from .messages import Request, latin1_to_text
from .profiles import DEFAULT_PROFILE, TAGS_PER_OBJECT, USER_METADATA_MAX_BYTES, Profile, metadata_size
from .store import ObjectState, Store
from .triggers import ObjectEvent


@dataclass
class Upload:
    """A multipart upload in progress."""

    upload_id: str
    bucket: str
    key: str
    headers: dict[str, str]
    metadata: dict[str, str]
    tags: dict[str, str]
    storage_class: str
    initiated: float
    parts: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # number -> (ETag, data)


class Backend:
    """Mutable on purpose: the Emulator changes the engine, token or faults while serving."""

    def __init__(
        self,
        store: Store,
        appid: str,
        credentials: dict[str, str],
        token: str | None,
        label_engine: LabelEngine,
        faults: FaultInjector,
        notify: Callable[[ObjectEvent], None],
    ) -> None:
        self.store = store
        self.appid = appid
        self.credentials = credentials
        self.token = token
        self.label_engine = label_engine
        self.faults = faults
        self.notify = notify
        self.uploads: dict[str, Upload] = {}
        self.uploads_lock = threading.Lock()
        # Which reading of each contested rule the emulator plays (see `profiles`).
        self.profile = DEFAULT_PROFILE
        # The account that owns every bucket (its uin names the owner in ACLs), and each bucket's
        # ACL (private unless a test makes it public-read), which objects without one inherit.
        self.owner_uin = "100000000001"
        self.bucket_acls: dict[str, str] = {}
        # Buckets not bound to Cloud Infinite (every bucket is bound unless told otherwise).
        self.ci_unbound: set[str] = set()
        self.ci_unbinding: set[str] = set()
        # The largest request body accepted (EntityTooLarge beyond): COS's single-PUT limit by default.
        self.max_body_bytes = cos_facts.PUT_MAX_BYTES
        from .dataset import Datasets  # MetaInsight datasets of this account

        self.datasets = Datasets()

    def ci_bound(self, bucket: str) -> bool:
        return bucket not in self.ci_unbound

    def set_ci_bound(self, bucket: str, bound: bool) -> None:
        self.ci_unbinding.discard(bucket)
        if bound:
            self.ci_unbound.discard(bucket)
        else:
            self.ci_unbound.add(bucket)

    def ci_status(self, bucket: str) -> str:
        """The bucket's CIStatus (436/74933): on, off, or unbinding (detect-label refused)."""
        if bucket in self.ci_unbinding:
            return "unbinding"
        return "on" if self.ci_bound(bucket) else "off"

    def emit(self, event_name: str, req: Request, state: ObjectState) -> None:
        """Tell the trigger machinery that `req` created (or removed) `state`."""
        assert req.bucket is not None and req.region is not None
        self.notify(
            ObjectEvent(
                event_name=event_name,
                bucket=req.bucket,
                region=req.region,
                key=state.key,
                size=state.size,
                content_type=state.content_type,
                metadata=dict(state.metadata),
                request_id=req.request_id,
                authorization=req.authorization,
                source_ip=req.client_ip,
                event_time=time.time(),
            )
        )


# --- formats ------------------------------------------------------------------------------------


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def parse_http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def object_url(bucket: str, region: str, key: str) -> str:
    return f"http://{cos_facts.cos_host(bucket, region)}/{quote(key, safe='/')}"


def check_content_md5(value: str | None, body: bytes) -> None:
    """Reject a body whose Content-MD5 header does not match it (what COS does)."""
    if value is None:
        return
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        raise CosError("InvalidDigest", "The Content-MD5 you specified is not valid base64") from None
    if digest != hashlib.md5(body).digest():
        raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received")


# --- request headers into object state ----------------------------------------------------------

_CONTENT_HEADERS = {name.lower(): name for name in cos_facts.PRESERVED_HEADERS}


def content_headers_from(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The standard content headers among (lower-cased name, text value) pairs."""
    return {_CONTENT_HEADERS[name]: value for name, value in pairs if name in _CONTENT_HEADERS}


def user_metadata_from(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """x-cos-meta-* among (lower-cased name, text value) pairs, checked against COS's rules."""
    meta = {name: value for name, value in pairs if name.startswith(cos_facts.USER_META_PREFIX)}
    for name in meta:
        suffix = name[len(cos_facts.USER_META_PREFIX) :]
        if not suffix or "_" in suffix:
            raise CosError("InvalidArgument", f"metadata header {name!r}: the suffix may use '-' but not '_'")
    total = metadata_size(meta.items())
    if total > USER_METADATA_MAX_BYTES:
        raise CosError("InvalidArgument", f"user metadata is {total} bytes; COS allows {USER_METADATA_MAX_BYTES}")
    return meta


def request_header_pairs(req: Request) -> list[tuple[str, str]]:
    return [(name, latin1_to_text(value)) for name, value in req.headers.items()]


def storage_class_from(value: str | None) -> str:
    if value is None or value == "":
        return cos_facts.DEFAULT_STORAGE_CLASS
    upper = value.upper()
    if upper not in cos_facts.STORAGE_CLASSES:
        raise CosError("NotSupportedStorageClass", f"storage class {value!r} is not supported")
    return upper


# --- tags ------------------------------------------------------------------------------------------


def validate_tags(pairs: list[tuple[str, str]], profile: Profile = DEFAULT_PROFILE) -> dict[str, str]:
    """COS's tag rules, as `profile` reads them: at most 10 tags, unique keys, and each key and
    value valid under the profile's tag rule (utf8 or strict; see `profiles`)."""
    if len(pairs) > TAGS_PER_OBJECT:
        raise CosError("InvalidTag", f"{len(pairs)} tags given; an object can have at most {TAGS_PER_OBJECT}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise CosError("InvalidTag", f"tag key {key!r} appears more than once")
        problem = profile.tag_problem(key, is_key=True) or profile.tag_problem(value, is_key=False)
        if problem is not None:
            raise CosError("InvalidTag", f"{problem} (tag {key!r}={value!r}; tag rule {profile.tag_rule})")
        tags[key] = value
    return tags


def tags_from_header(value: str | None, profile: Profile = DEFAULT_PROFILE) -> dict[str, str]:
    """The `x-cos-tagging: k=v&k2=v2` header (URL-encoded pairs)."""
    if not value:
        return {}
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise CosError("InvalidTag", f"x-cos-tagging {value!r} is not k=v&k2=v2") from exc
    return validate_tags(pairs, profile)


# --- object headers out -------------------------------------------------------------------------


def object_headers(state: ObjectState, profile: Profile = DEFAULT_PROFILE) -> dict[str, str]:
    """What GET and HEAD answer about an object, besides its length; non-ASCII metadata as the
    profile returns it (raw UTF-8 or percent-encoded)."""
    headers = {
        "Content-Type": state.headers.get("Content-Type") or "application/octet-stream",
        "ETag": state.etag,
        "Last-Modified": http_date(state.last_modified),
        "Accept-Ranges": "bytes",
        "x-cos-object-type": "normal",
    }
    # COS names the class only when it is not STANDARD (HEAD Object doc): absent means STANDARD.
    if state.storage_class != cos_facts.DEFAULT_STORAGE_CLASS:
        headers[cos_facts.STORAGE_CLASS_HEADER] = state.storage_class
    for name, value in state.headers.items():
        if name != "Content-Type":
            headers[name] = value
    headers.update({name: profile.metadata_out(value) for name, value in state.metadata.items()})
    headers.update(state.sse)
    if state.tags:
        headers["x-cos-tagging-count"] = str(len(state.tags))
    return headers


def check_conditions(
    state: ObjectState,
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    *,
    copy_source: bool,
) -> None:
    """HTTP preconditions. Copy-source conditions always fail with 412; GET/HEAD's
    If-None-Match/If-Modified-Since answer 304 Not Modified."""

    def etag_in(header: str) -> bool:
        wanted = {t.strip() for t in header.split(",")}
        return "*" in wanted or state.etag in wanted or state.etag.strip('"') in wanted

    failed = CosError("PreconditionFailed", "At least one of the preconditions you specified did not hold")
    not_modified = failed if copy_source else CosError("NotModified", "Not Modified", 304, {"ETag": state.etag})
    modified = int(state.last_modified)
    if if_match is not None and not etag_in(if_match):
        raise failed
    if if_unmodified_since is not None and if_match is None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and modified > since:
            raise failed
    if if_none_match is not None and etag_in(if_none_match):
        raise not_modified
    if if_modified_since is not None and if_none_match is None:
        since = parse_http_date(if_modified_since)
        if since is not None and modified <= since:
            raise not_modified


def archived(state: ObjectState) -> None:
    if state.storage_class in cos_facts.ARCHIVE_STORAGE_CLASSES:
        raise CosError("InvalidObjectState", f"The object is in {state.storage_class}; restore it before reading")


def require_key(req: Request) -> str:
    if not req.key:
        raise CosError("InvalidURI", "This operation needs an object key in the path")
    return req.key
