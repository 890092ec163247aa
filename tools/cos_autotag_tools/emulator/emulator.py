"""`Emulator`: the local COS + Cloud Infinite + SCF-trigger stand-in, as one object."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from cos_autotag_tools import cos_facts

from . import acl, ci_status
from .backend import Backend
from .engine import LabelEngine, default_engine
from .faults import FaultInjector, Faults
from .profiles import DEFAULT_PROFILE, Profile
from .requestlog import RequestRecord
from .server import HOST, CosHTTPServer, ServerThread
from .service import OPERATIONS, CosService, RequestHooks, new_request_id
from .store import ObjectState, Store
from .triggers import (
    DEFAULT_UIN,
    EVENT_KEY_ENCODINGS,
    Dispatcher,
    Handler,
    Invocation,
    Trigger,
    validate_trigger_events,
)

DEFAULT_CREDENTIALS = {"AKIDLOCAL": "local-secret"}


class Emulator:
    """A local COS endpoint with detect-label and SCF COS triggers.

    Point the unmodified SDK at it with `CosConfig(Region=..., SecretId=..., SecretKey=...,
    Scheme="http", IP="127.0.0.1", Port=emu.port)` (see `sdk_config`), so that requests carry
    the virtual-host `Host: <bucket>.cos.<region>.myqcloud.com` the emulator routes by.
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        label_engine: LabelEngine | None = None,
        faults: Faults | None = None,
        appid: str = "1250000000",
        delivery_workers: int = 4,
        event_key_encoding: str = "raw",
        uin: str = DEFAULT_UIN,
        profile: Profile | None = None,
    ) -> None:
        if not cos_facts.APPID_RE.match(appid):
            raise ValueError(f"appid {appid!r} must be 5-12 digits")
        creds = dict(credentials if credentials is not None else DEFAULT_CREDENTIALS)
        if not creds:
            raise ValueError("credentials must hold at least one SecretId: SecretKey pair")
        self.appid = appid
        self._faults = FaultInjector(_checked(faults or Faults()))
        self._log: list[RequestRecord] = []
        self._dispatcher = Dispatcher(appid, self._faults, workers=delivery_workers, uin=uin)
        self.event_key_encoding = event_key_encoding
        self._backend = Backend(
            store=Store(data_dir),
            appid=appid,
            credentials=creds,
            token=token,
            label_engine=label_engine if label_engine is not None else default_engine(),
            faults=self._faults,
            notify=self._dispatcher.notify,
        )
        self._backend.profile = _checked_profile(profile or DEFAULT_PROFILE)
        self._backend.owner_uin = uin
        self._service = CosService(self._backend, self._log)
        self._server: ServerThread | None = None
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:`port` (0 = a free port) in the background; answer the port."""
        if self._server is not None:
            raise RuntimeError(f"the emulator is already serving on port {self.port}")
        if self._stopped:
            raise RuntimeError("a stopped emulator cannot restart; build a new one (same data_dir)")
        server = CosHTTPServer(port, self._service.handle, new_request_id)
        self._server = ServerThread(server)
        self._server.start()
        return self._server.port

    def stop(self) -> None:
        """Stop serving and delivering. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.hooks.release_all()  # a held request must not keep a server thread alive
        self._dispatcher.stop()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not serving; call start() first")
        return self._server.port

    @property
    def host(self) -> str:
        return HOST

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    # --- configuration ------------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """SecretId -> SecretKey accepted by the emulator (a live dict: edits apply at once)."""
        return self._backend.credentials

    @property
    def token(self) -> str | None:
        return self._backend.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._backend.token = value

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted; a longer one is answered 400 EntityTooLarge from its
        declared length, without being read (default: COS's 5 GB single-PUT limit)."""
        return self._backend.max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int) -> None:
        if value < 0:
            raise ValueError("max_body_bytes must be >= 0")
        self._backend.max_body_bytes = value

    @property
    def label_engine(self) -> LabelEngine:
        return self._backend.label_engine

    @label_engine.setter
    def label_engine(self, engine: LabelEngine) -> None:
        if not callable(getattr(engine, "detect", None)):
            raise TypeError("a label engine needs a detect(data, scenes) method")
        self._backend.label_engine = engine

    @property
    def event_key_encoding(self) -> str:
        """How `cosObject.key` is written in trigger events: "raw" (default) or "url" (percent-encoded)."""
        return self._dispatcher.event_key_encoding

    @event_key_encoding.setter
    def event_key_encoding(self, value: str) -> None:
        if value not in EVENT_KEY_ENCODINGS:
            raise ValueError(f"event_key_encoding must be one of {EVENT_KEY_ENCODINGS}, not {value!r}")
        self._dispatcher.event_key_encoding = value

    @property
    def profile(self) -> Profile:
        """Which reading of each contested COS rule the emulator plays (`profiles`): tag
        characters (utf8/strict), non-ASCII metadata out (raw/percent), the unbound-bucket answer
        of detect-label (403/404/200). Settable at run time."""
        return self._backend.profile

    @profile.setter
    def profile(self, value: Profile) -> None:
        self._backend.profile = _checked_profile(value)

    def set_profile(self, **changes: str) -> Profile:
        """Change some rules of the current profile: `emu.set_profile(tag_rule="strict")`."""
        self.profile = self._backend.profile.replace(**changes)
        return self.profile

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._faults.set(_checked(value))

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Swap the fault knobs at run time: a whole new Faults, or changes to the current one."""
        new = _checked(dataclasses.replace(faults or self._faults.faults, **changes))
        self._faults.set(new)
        return new

    @property
    def hooks(self) -> RequestHooks:
        """What every request calls before its operation runs and after (tests' pause points)."""
        return self._service.hooks

    @hooks.setter
    def hooks(self, value: RequestHooks) -> None:
        self._service.hooks = value

    def sdk_config(self, region: str, secret_id: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `qcloud_cos.CosConfig` that point the SDK at this emulator."""
        sid = secret_id or next(iter(self.credentials))
        return {
            "Region": region,
            "SecretId": sid,
            "SecretKey": self.credentials[sid],
            "Token": self.token,
            "Scheme": "http",
            "IP": HOST,
            "Port": self.port,
        }

    # --- buckets and state --------------------------------------------------------------------

    def create_bucket(self, bucket: str, region: str = "ap-guangzhou", ci_bound: bool = True) -> None:
        """Create `<name>-<appid>` in `region` (idempotent for the same region).

        `ci_bound=False` plays a bucket not bound to Cloud Infinite (or without AI content
        recognition): detect-label on it answers what the profile's `unbound_answer` says."""
        match = cos_facts.BUCKET_RE.match(bucket)
        if match and match.group("appid") != self.appid:
            raise ValueError(f"bucket {bucket} belongs to appid {match.group('appid')}, not {self.appid}")
        self._backend.store.create_bucket(bucket, region)
        self._backend.set_ci_bound(bucket, ci_bound)

    def set_ci_bound(self, bucket: str, bound: bool = True) -> None:
        """Bind `bucket` to Cloud Infinite, or unbind it (`bound=False`), at run time."""
        if bucket not in self.buckets():
            raise ValueError(f"bucket {bucket} does not exist; create_bucket() it first")
        self._backend.set_ci_bound(bucket, bound)

    def set_ci_status(self, bucket: str, status: str) -> None:
        """The bucket's CIStatus (436/74933): `on` (bound), `off`, or `unbinding` (being unbound:
        detect-label refuses it as an unbound bucket)."""
        if bucket not in self.buckets():
            raise ValueError(f"bucket {bucket} does not exist; create_bucket() it first")
        if status not in ci_status.CI_STATUSES:
            raise ValueError(f"CIStatus is one of {ci_status.CI_STATUSES}, not {status!r}")
        self._backend.set_ci_bound(bucket, status == "on")
        if status == "unbinding":
            self._backend.ci_unbinding.add(bucket)

    def ci_bound(self, bucket: str) -> bool:
        """Whether detect-label works on `bucket` (see `create_bucket`)."""
        return self._backend.ci_bound(bucket)

    def set_bucket_acl(self, bucket: str, canned: str) -> None:
        """The bucket's ACL, `private` (default) or `public-read`: objects without an ACL of their
        own (and every copy that sends no ACL header) inherit it."""
        if bucket not in self.buckets():
            raise ValueError(f"bucket {bucket} does not exist; create_bucket() it first")
        if canned not in acl.BUCKET_CANNED:
            raise ValueError(f"a bucket ACL is one of {acl.BUCKET_CANNED}, not {canned!r}")
        self._backend.bucket_acls[bucket] = canned

    @property
    def owner_id(self) -> str:
        """The owner's grantee id in ACLs: qcs::cam::uin/<uin>:uin/<uin>."""
        return acl.owner_id(self._backend.owner_uin)

    def buckets(self) -> dict[str, str]:
        """bucket -> region."""
        return self._backend.store.buckets()

    def get_object_state(self, bucket: str, key: str) -> ObjectState | None:
        """The stored object (body, headers, metadata, tags, ...), read directly, or None."""
        return self._backend.store.get(bucket, key)

    # --- triggers -----------------------------------------------------------------------------

    @contextmanager
    def retries_held(self) -> Iterator[None]:
        """SCF's retries wait while inside (SCF waits a minute; a test's fault may be shorter)."""
        self._dispatcher.hold_retries(True)
        try:
            yield
        finally:
            self._dispatcher.hold_retries(False)

    def add_trigger(
        self, bucket: str, handler: Handler, events: Iterable[str] = (cos_facts.EVENT_CREATED_ANY,), **settings: Any
    ) -> Trigger:
        """Invoke `handler(event, context)` asynchronously for matching operations on `bucket`;
        `settings` are the other fields of `Trigger` (prefix, suffix, retry_num, retry_delay_s,
        time_limit_ms, memory_mb, function_name)."""
        if bucket not in self.buckets():
            raise ValueError(f"bucket {bucket} does not exist; create_bucket() it first")
        events = validate_trigger_events(tuple(events))
        return self._dispatcher.add_trigger(bucket=bucket, handler=handler, events=events, **settings)

    def remove_trigger(self, trigger: Trigger) -> None:
        self._dispatcher.remove_trigger(trigger.trigger_id)

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until every trigger delivery (retries and delayed ones included) has finished;
        raise TimeoutError after `timeout_s`."""
        self._dispatcher.wait_idle(timeout_s)

    # --- observability ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a snapshot)."""
        return list(self._log)

    def count(
        self,
        op: str | None = None,
        key: str | None = None,
        since: float | None = None,
        status: int | None = None,
        bucket: str | None = None,
    ) -> int:
        """How many requests match: operation name, key, arrival time >= since (time.time()), status."""
        return sum(
            1
            for r in list(self._log)
            if (op is None or r.op == op)
            and (key is None or r.key == key)
            and (since is None or r.timestamp >= since)
            and (status is None or r.status == status)
            and (bucket is None or r.bucket == bucket)
        )

    @property
    def invocations(self) -> list[Invocation]:
        """Every handler run so far (retries included), in completion order (a snapshot)."""
        return self._dispatcher.invocations()

    def clear_logs(self) -> None:
        self._log.clear()
        self._dispatcher.clear_invocations()


def _checked_profile(profile: Profile) -> Profile:
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a Profile, not {type(profile).__name__}")
    return profile


def _checked(faults: Faults) -> Faults:
    unknown = sorted(op for op in faults.denied_ops if op not in OPERATIONS)
    if unknown:
        raise ValueError(f"denied_ops names unknown operations {unknown}; known: {sorted(OPERATIONS)}")
    return faults
