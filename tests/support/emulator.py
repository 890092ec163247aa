"""The emulator as tests start it, and the helpers every emulator test uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag_tools.emulator import Emulator

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


def error_of(call: Callable[[], object]) -> CosServiceError:
    """The CosServiceError `call` raises (the test fails if it raises none)."""
    with pytest.raises(CosServiceError) as err:
        call()
    return err.value


def tagging(*pairs: tuple[str, str]) -> dict[str, Any]:
    """A put_object_tagging body with these (key, value) pairs."""
    return {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in pairs]}}
