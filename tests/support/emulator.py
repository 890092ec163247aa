"""The emulator as tests start it, and the helpers every emulator test uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import Emulator, ObjectState
from cos_autotag_tools.emulator.backend import storage_class_from, validate_tags
from cos_autotag_tools.emulator.service import new_request_id

from .constants import APPID, BUCKET, REGION, SECRET_ID, SECRET_KEY


@contextmanager
def started_emulator(*buckets: str, region: str = REGION, **options: Any) -> Iterator[Emulator]:
    """A started emulator (credentials SECRET_ID/SECRET_KEY, APPID) with `buckets` (BUCKET if none)."""
    options = {"credentials": {SECRET_ID: SECRET_KEY}, "appid": APPID, **options}
    with Emulator(**options) as emu:
        for bucket in buckets or (BUCKET,):
            emu.create_bucket(bucket, region)
        yield emu


def env_for(emu: Emulator, **extra: str) -> dict[str, str]:
    """The environment a CLI command needs to reach `emu` with the test credentials."""
    return {
        "TENCENTCLOUD_SECRETID": SECRET_ID,
        "TENCENTCLOUD_SECRETKEY": SECRET_KEY,
        "AUTOTAG_COS_ENDPOINT": emu.endpoint,
        **extra,
    }


def use_emulator_env(monkeypatch: pytest.MonkeyPatch, emu: Emulator, **extra: str) -> None:
    """Point the CLI commands this test runs in-process at `emu` (env_for's variables, no session token)."""
    for name, value in env_for(emu, **extra).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TENCENTCLOUD_SESSIONTOKEN", raising=False)


def error_of(call: Callable[[], object]) -> CosServiceError:
    """The CosServiceError `call` raises (the test fails if it raises none)."""
    with pytest.raises(CosServiceError) as err:
        call()
    return err.value


def tagging(*pairs: tuple[str, str]) -> dict[str, Any]:
    """A put_object_tagging body with these (key, value) pairs."""
    return {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in pairs]}}


def seed_object(
    emu: Emulator,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    storage_class: str = cos_facts.DEFAULT_STORAGE_CLASS,
) -> ObjectState:
    """Store an object in `emu` directly: no HTTP, no signature, no trigger (for test setup)."""
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    bad = [k for k in meta if not k.startswith(cos_facts.USER_META_PREFIX)]
    if bad:
        raise ValueError(f"metadata names must start with {cos_facts.USER_META_PREFIX}: {bad}")
    return emu._backend.store.put(
        bucket,
        key,
        body,
        headers={"Content-Type": content_type} if content_type else {},
        metadata=meta,
        tags=validate_tags(list((tags or {}).items()), emu.profile),
        storage_class=storage_class_from(storage_class),
        request_id=new_request_id(),
    )
