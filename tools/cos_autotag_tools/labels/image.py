"""Decode image bytes and prepare them the way EfficientNet-Lite was trained (TF-lite style)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cos_autotag_tools.labels.errors import ImageDecodeError

# CI's detect-label accepts only these (cos_facts.DETECT_CONTENT_TYPES); so does the engine.
ACCEPTED_FORMATS = ("JPEG", "PNG")
RESIZE_SHORTER_SIDE = 256
CROP_SIZE = 224
# TF-lite normalisation; ImageNet mean/std gives visibly worse results with these weights.
PIXEL_CENTER = 127.0
PIXEL_SCALE = 128.0


def decode_rgb(data: bytes) -> Image.Image:
    """The image in `data` as RGB, transparency flattened onto white, EXIF rotation applied."""
    if not data:
        raise ImageDecodeError("empty body: not an image")
    try:
        with warnings.catch_warnings():
            # Oversized images are an error here, not a warning to scroll past.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            if img.format == "JPEG":
                # Let libjpeg decode at a reduced scale: we only need about 256 px.
                img.draft("RGB", (RESIZE_SHORTER_SIDE, RESIZE_SHORTER_SIDE))
            img.load()
            img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable PNG or JPEG image: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated or corrupt streams through these.
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits before converting, or it saturates to white.
        arr = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.convert("RGB")


def to_model_input(img: Image.Image) -> np.ndarray:
    """Shorter side to 256 (bilinear), centre crop 224, (x - 127) / 128, as (224, 224, 3) float32."""
    w, h = img.size
    scale = RESIZE_SHORTER_SIDE / min(w, h)
    size = (max(CROP_SIZE, round(w * scale)), max(CROP_SIZE, round(h * scale)))
    resized = img.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - CROP_SIZE) // 2, (size[1] - CROP_SIZE) // 2
    cropped = resized.crop((left, top, left + CROP_SIZE, top + CROP_SIZE))
    pixels = np.asarray(cropped, dtype=np.float32)
    return (pixels - PIXEL_CENTER) / PIXEL_SCALE


def preprocess(data: bytes) -> np.ndarray:
    """Bytes of a PNG or JPEG -> the network's input; `ImageDecodeError` if not decodable."""
    return to_model_input(decode_rgb(data))
