"""Small real images, made with Pillow, whose bytes depend on a seed (so do deterministic labels)."""

from __future__ import annotations

import io


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    """A small real image in `fmt` whose bytes depend on `seed`."""
    from PIL import Image

    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255, 255 - seed % 256, 0))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def jpeg(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    """A small real JPEG whose content (and so its deterministic labels) depends on `seed`."""
    from PIL import Image

    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], 0), (255 - seed % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()
