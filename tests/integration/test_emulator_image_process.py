"""The emulator serves Cloud Infinite renditions: GET Object with `?imageMogr2/thumbnail/...`.

As on COS, the processing parameter follows a presigned URL unsigned; everything else the
signature must still cover.
"""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from cos_autotag import cos_facts
from cos_autotag.cos_adapter import CosGateway
from cos_autotag.settings import Settings
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import seed_object
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration


def signed_thumbnail(emulator: Emulator, key: str, rule: str) -> str:
    env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY}
    gateway = CosGateway(Settings(cos_endpoint=("http", "127.0.0.1", emulator.port)), env)
    url = gateway.thumbnail_url(BUCKET, REGION, key, rule)
    return url.replace(f"https://{cos_facts.cos_host(BUCKET, REGION)}", emulator.endpoint, 1)


def get(emulator: Emulator, url: str) -> requests.Response:
    return requests.get(url, headers={"Host": cos_facts.cos_host(BUCKET, REGION)}, timeout=10)


def test_a_presigned_get_with_a_thumbnail_rule_answers_the_rendition(emulator: Emulator) -> None:
    seed_object(emulator, BUCKET, "big.png", image_bytes("PNG", size=(400, 200)), content_type="image/png")
    response = get(emulator, signed_thumbnail(emulator, "big.png", "imageMogr2/thumbnail/100x100/format/jpg"))
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and image.size == (100, 50)
    assert emulator.count(op="ImageProcess", status=200) == 1 and emulator.count(op="GetObject") == 0


def test_other_unsigned_parameters_are_still_refused(emulator: Emulator) -> None:
    seed_object(emulator, BUCKET, "big.png", image_bytes("PNG", size=(400, 200)))
    url = signed_thumbnail(emulator, "big.png", "imageMogr2/thumbnail/100x100")
    assert get(emulator, url + "&response-content-type=text/html").status_code == 403
    unsigned = url.split("?", 1)[0] + "?imageMogr2/thumbnail/100x100"
    assert get(emulator, unsigned).status_code == 403


def test_a_bad_rule_or_a_missing_object_is_an_error(emulator: Emulator) -> None:
    seed_object(emulator, BUCKET, "big.png", image_bytes("PNG", size=(400, 200)))
    assert get(emulator, signed_thumbnail(emulator, "big.png", "imageMogr2/rotate/90")).status_code == 400
    assert get(emulator, signed_thumbnail(emulator, "gone.png", "imageMogr2/thumbnail/100x")).status_code == 404
