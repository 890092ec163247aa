"""Shared fixtures: a started local COS emulator and an unmodified SDK client pointed at it.

    from tests.conftest import BUCKET, REGION, SECRET_ID, SECRET_KEY, make_client, image_bytes

Fixtures: `emulator` (function-scoped, bucket BUCKET in REGION, credentials SECRET_ID/SECRET_KEY,
the default label engine), `cos_client` (CosS3Client via IP/Port, retry=0).
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from qcloud_cos import CosConfig, CosS3Client

from cos_autotag_tools.emulator import Emulator

APPID = "1250000000"
BUCKET = f"photos-{APPID}"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDemulatortest0001"
SECRET_KEY = "emulator-test-secret-key-0001"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_client(
    emulator: Emulator,
    *,
    secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY,
    token: str | None = None,
    region: str = REGION,
    retry: int = 0,
) -> CosS3Client:
    """An unmodified SDK client that reaches the emulator over HTTP with the bucket's Host header."""
    config = CosConfig(
        Region=region,
        SecretId=secret_id,
        SecretKey=secret_key,
        Token=token,
        Scheme="http",
        IP="127.0.0.1",
        Port=emulator.port,
    )
    return CosS3Client(config, retry=retry)


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    """A small real image whose bytes depend on `seed`."""
    from PIL import Image

    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255, 255 - seed % 256, 0))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID)
    emu.start()
    try:
        emu.create_bucket(BUCKET, REGION)
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def cos_client(emulator: Emulator) -> CosS3Client:
    return make_client(emulator)
