"""The shipped demo photos, image decoding edge cases, and the benchmark entry point."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cos_autotag.cos_facts import DETECT_MAX_BYTES, DETECT_MIN_SIDE
from cos_autotag_tools.labels.errors import ImageDecodeError
from cos_autotag_tools.labels.image import CROP_SIZE, decode_rgb, preprocess
from cos_autotag_tools.photos import list_photos, photo_path
from tests.support.label_bench import benchmark

MAX_PHOTO_BYTES = 300 * 1024


def test_there_are_four_to_six_photos_with_a_png_and_a_jpeg() -> None:
    photos = list_photos()

    assert 4 <= len(photos) <= 6
    assert {p.suffix for p in photos} >= {".png", ".jpg"}
    assert all(isinstance(p, Path) and p.is_file() for p in photos)


@pytest.mark.parametrize("path", list_photos(), ids=lambda p: p.name)
def test_each_photo_is_small_real_and_acceptable_to_detect_label(path: Path) -> None:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        fmt, (width, height) = img.format, img.size

    assert len(data) < min(MAX_PHOTO_BYTES, DETECT_MAX_BYTES)
    assert fmt == {".png": "PNG", ".jpg": "JPEG"}[path.suffix]
    assert min(width, height) >= DETECT_MIN_SIDE


def test_every_photo_has_its_source_and_licence_recorded() -> None:
    sources = (list_photos()[0].parent / "SOURCES.md").read_text(encoding="utf-8")

    for path in list_photos():
        row = next((line for line in sources.splitlines() if line.startswith(f"| `{path.name}`")), "")
        assert row, f"{path.name} missing from SOURCES.md"
        assert any(word in row for word in ("CC0", "CC BY", "public domain")), row


def test_photo_path_names_the_choices_for_an_unknown_photo() -> None:
    assert photo_path("coffee.png").name == "coffee.png"
    with pytest.raises(FileNotFoundError, match=r"coffee\.png"):
        photo_path("nope.png")


# --- decoding --------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (60, 60), (255, 0, 0, 0))

    assert decode_rgb(_encode(rgba, "PNG")).getpixel((5, 5)) == (255, 255, 255)


def test_greyscale_and_16_bit_pngs_decode_to_rgb() -> None:
    grey = Image.new("L", (60, 80), 200)
    deep = Image.fromarray(np.full((60, 80), 65535, dtype=np.uint16))

    assert decode_rgb(_encode(grey, "PNG")).getpixel((1, 1)) == (200, 200, 200)
    assert decode_rgb(_encode(deep, "PNG")).getpixel((1, 1)) == (255, 255, 255)


def test_preprocess_gives_a_normalised_centre_crop() -> None:
    # A wide image: left third black, rest white. After resize+crop the centre is white.
    pixels = np.full((100, 400, 3), 255, dtype=np.uint8)
    pixels[:, :130] = 0

    x = preprocess(_encode(Image.fromarray(pixels), "PNG"))

    assert x.shape == (CROP_SIZE, CROP_SIZE, 3) and x.dtype == np.float32
    assert x[112, 112, 0] == pytest.approx((255 - 127) / 128)
    assert float(x.min()) >= (0 - 127) / 128 and float(x.max()) <= (255 - 127) / 128


def test_a_bmp_is_refused_like_ci_refuses_it() -> None:
    with pytest.raises(ImageDecodeError, match="PNG or JPEG"):
        decode_rgb(_encode(Image.new("RGB", (60, 60)), "BMP"))


# --- benchmark -------------------------------------------------------------------------------


def test_benchmark_reports_load_and_per_image_times() -> None:
    figures = benchmark(repeats=1)

    assert figures["images"] == len(list_photos())
    assert 0 < figures["load_s"] < 30
    assert 0 < figures["forward_median_ms"] <= figures["per_image_median_ms"] <= figures["per_image_max_ms"]
