"""Shared fixtures: a started local COS emulator and an unmodified SDK client pointed at it.

Fixtures: `emulator` (function-scoped, bucket BUCKET in REGION, credentials SECRET_ID/SECRET_KEY,
the default label engine), `profiled_emulator` (the same, once per profile of the contested
rules: tests/support/profiles.py), `cos_client` (CosS3Client via IP/Port, retry=0). The constants, images
and helpers they use live in tests/support.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qcloud_cos import CosS3Client

from cos_autotag_tools.emulator import Emulator, Profile
from tests.support.emulator import started_emulator
from tests.support.profiles import PROFILE_PARAMS
from tests.support.sdk import make_client


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with started_emulator() as emu:
        yield emu


@pytest.fixture(params=PROFILE_PARAMS)
def profiled_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """Like `emulator`, once under each profile of tests/support/profiles.py."""
    profile: Profile = request.param
    with started_emulator(profile=profile) as emu:
        yield emu


@pytest.fixture
def cos_client(emulator: Emulator) -> CosS3Client:
    return make_client(emulator)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The label index of `find` and `gallery` goes under XDG_CACHE_HOME: never the user's own
    ~/.cache (child processes inherit it too)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
