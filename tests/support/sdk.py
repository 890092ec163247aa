"""An unmodified SDK client that reaches a started emulator over HTTP on 127.0.0.1."""

from __future__ import annotations

from qcloud_cos import CosConfig, CosS3Client

from cos_autotag_tools.emulator import Emulator

from .constants import REGION, SECRET_ID, SECRET_KEY


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
