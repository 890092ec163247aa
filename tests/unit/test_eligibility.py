import io
import struct
import zlib

import pytest

from cos_autotag.eligibility import check_bytes, check_record, sniff_image
from cos_autotag.events import CosRecord
from cos_autotag.settings import Settings


def rec(key="a.jpg", content_type="image/jpeg", size=1000):
    return CosRecord("photos-1250000000", "ap-guangzhou", key, "cos:ObjectCreated:Put", size, content_type)


def png_bytes(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def jpeg_bytes(width: int, height: int) -> bytes:
    pil = pytest.importorskip("PIL.Image")
    out = io.BytesIO()
    pil.new("RGB", (width, height), (120, 30, 200)).save(out, "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 4000)
    return out.getvalue()


@pytest.mark.parametrize(
    ("key", "ctype", "eligible", "reason"),
    [
        ("a.jpg", "image/jpeg", True, ""),
        ("a.png", "image/png", True, ""),
        ("a.JPEG", "", True, ""),
        ("a.gif", "image/gif", False, "not a JPEG or PNG"),
        ("notes.txt", "text/plain", False, "not a JPEG or PNG"),
        ("a.txt", "image/jpeg", True, ""),  # the type says JPEG: the type wins
        ("photo", "application/octet-stream", False, "unknown type"),
    ],
)
def test_type_and_extension(key, ctype, eligible, reason):
    verdict = check_record(rec(key, ctype), Settings())
    assert verdict.eligible is eligible
    assert verdict.reason == reason


def test_unknown_type_asks_for_the_first_bytes():
    verdict = check_record(rec("testfile", ""), Settings())
    assert verdict.needs_sniff and not verdict.eligible


def test_too_large_is_labeled_from_a_thumbnail_by_default_and_skipped_if_asked():
    assert check_record(rec(size=10 * 1024 * 1024), Settings()).large
    skip = check_record(rec(size=10 * 1024 * 1024), Settings(large_images="skip"))
    assert not skip.eligible and skip.reason == "too large"


def test_empty_object_is_skipped():
    assert check_record(rec(size=0), Settings()).reason == "empty object"


def test_prefix_and_suffix_filters():
    settings = Settings(include_prefixes=("photos/",), exclude_suffixes=(".tmp.jpg",))
    assert check_record(rec("photos/a.jpg"), settings).eligible
    assert check_record(rec("docs/a.jpg"), settings).reason == "outside included prefixes"
    assert check_record(rec("photos/a.tmp.jpg"), settings).reason == "excluded suffix"


def test_sniff_png_dimensions():
    assert sniff_image(png_bytes(640, 480)) == ("png", (640, 480))
    small = check_bytes(png_bytes(40, 400), 1000, Settings())
    assert not small.eligible and small.reason == "too small"
    assert check_bytes(png_bytes(50, 50), 1000, Settings()).eligible


def test_sniff_jpeg_dimensions_past_a_large_exif_block():
    assert sniff_image(jpeg_bytes(321, 123)) == ("jpeg", (321, 123))
    assert not check_bytes(jpeg_bytes(30, 300), 2000, Settings()).eligible


def test_sniff_non_image():
    assert sniff_image(b"hello world") is None
    assert check_bytes(b"GIF89a....", 100, Settings()).reason == "not a JPEG or PNG"
