"""Photos over detect-label's 3 MB limit are labeled from a thumbnail rendition via detect-url."""

import hashlib
import io
import random
import time
from urllib.parse import unquote

import pytest

from cos_autotag import cos_facts
from tests.support.constants import TOKEN
from tests.support.function_stack import running_stack
from tests.support.scf import context

pytestmark = pytest.mark.integration


def big_jpeg(min_bytes: int = 10 * 1024 * 1024) -> bytes:
    from PIL import Image

    rng = random.Random(5)
    side = 1900
    while True:
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=100)
        if out.tell() >= min_bytes:
            return out.getvalue()
        side += 200


@pytest.fixture(scope="module")
def photo():
    return big_jpeg()


@pytest.mark.parametrize(("mode", "token"), [("tags", None), ("metadata", None), ("tags", TOKEN)])
def test_ten_megabyte_photo_is_labeled_from_a_thumbnail(photo, mode, token):
    assert len(photo) > 10 * 1024 * 1024
    with running_stack(token=token) as stack:
        rid = stack.put("phone/IMG_0001.jpg", photo)
        since = time.time()
        summary = stack.app(mode=mode).handle(stack.event("phone/IMG_0001.jpg", rid), context())
        assert summary["labeled"] == 1, summary
        assert stack.calls("phone/IMG_0001.jpg", since).get("DetectLabel", 0) == 0  # asked by URL, not by key
        assert stack.emulator.count("DetectLabel", since=since) == 1
        # The engine saw a rendition within detect-label's limits, never the original bytes.
        assert hashlib.sha256(photo).hexdigest() not in stack.engine.seen
        state = stack.emulator.get_object_state("photos-1250000000", "phone/IMG_0001.jpg")
        assert state.body == photo  # the object itself is untouched
        labels = state.tags if mode == "tags" else state.metadata
        assert any("标签-" in k or "标签-" in unquote(v) for k, v in labels.items())  # metadata is percent-encoded


def test_large_photos_can_be_skipped_instead(photo):
    with running_stack() as stack:
        rid = stack.put("phone/IMG_0002.jpg", photo)
        summary = stack.app(large_images="skip").handle(stack.event("phone/IMG_0002.jpg", rid), context())
        assert summary["skipped"] == {"too large": 1} and summary["calls_total"] == 0


def test_beyond_what_cloud_infinite_can_render_costs_nothing():
    with running_stack() as stack:
        rid = stack.put("huge.jpg", b"\xff\xd8\xff" + b"0" * 100)
        event = stack.event("huge.jpg", rid, size=cos_facts.CI_PROCESS_MAX_BYTES + 1)
        summary = stack.app().handle(event, context())
        assert summary["skipped"] == {"too large": 1}
        assert stack.emulator.count("DetectLabel") == 0
