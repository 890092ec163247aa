"""Cloud Infinite detect-label: `GET /<key>?ci-process=detect-label[&scenes=...][&detect-url=...]`.

The image is the object at the key, or the object a `detect-url` points at. A detect-url must
name an object of the request's own bucket (`http(s)://<bucket>.cos.<region>.myqcloud.com/<key>`),
presigned with a signature that verifies (buckets are private), optionally followed by an
unsigned `imageMogr2/thumbnail/<W>x<H>` processing parameter (applied with Pillow). The emulator
never fetches anything else.
The image then goes through CI's checks (JPEG/PNG, size, dimensions) before the label engine.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cos_autotag_tools import cos_facts

from . import auth, xml_bodies
from .backend import Backend, archived
from .errors import CosError
from .messages import Request, Response, xml_response
from .profiles import Profile

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_THUMBNAIL_RE = re.compile(r"^(\d*)x(\d*)([<>]?)$")


def detect_label(backend: Backend, req: Request) -> Response:
    faults = backend.faults
    if faults.detect_throttled():
        f = faults.faults
        raise CosError(f.throttle_code, cos_facts.CI_THROTTLE_MESSAGE, f.throttle_status)
    hostile, only_keys = faults.faults.detect_reply, faults.faults.detect_reply_keys
    if hostile is not None and (only_keys is None or req.key in only_keys):
        content_type, body = hostile
        return Response(200, {"Content-Type": content_type}, body)
    scenes = parse_scenes(req.param("scenes"))
    detect_url = req.param("detect-url")
    if detect_url:
        data = fetch_detect_url(backend, detect_url, req.bucket, req.region)
    else:
        if not req.key:
            raise CosError("InvalidArgument", "detect-label needs an object key in the path or a detect-url")
        state = backend.store.get(req.bucket or "", req.key)
        if state is None:
            raise CosError("NoSuchKey", "The specified key does not exist.")
        archived(state)
        data = state.body
    check_image(data)
    labels = run_engine(backend.label_engine, data, scenes or cos_facts.DETECT_DEFAULT_SCENES)
    return xml_response(xml_bodies.detect_label_body(labels, scenes))


# What detect-label answers on a bucket not bound to Cloud Infinite, by profile (see `profiles`):
# undocumented, so each is a plausible stand-in, never a rule the function may rely on.
UNBOUND_CODE_403 = "CINotEnabled"
UNBOUND_CODE_404 = "ResourceNotFound"
UNBOUND_MESSAGE = (
    "Cloud Infinite is not enabled for this bucket: bind the bucket to Cloud Infinite and enable "
    "AI content recognition before calling detect-label"
)
UNBOUND_PAGE = (
    b"<!DOCTYPE html><html><head><title>Cloud Infinite</title></head><body>"
    b"<h1>Service not activated</h1><p>This bucket is not bound to Cloud Infinite.</p></body></html>"
)


def unbound_answer(profile: Profile) -> Response:
    """detect-label's answer on an unbound bucket under `profile`: an XML 403 or 404 error, or
    a 200 whose body is an HTML page (which the SDK hands back as bytes, not a dict)."""
    if profile.unbound_answer == "403":
        raise CosError(UNBOUND_CODE_403, UNBOUND_MESSAGE, 403)
    if profile.unbound_answer == "404":
        raise CosError(UNBOUND_CODE_404, "The requested resource does not exist: " + UNBOUND_MESSAGE, 404)
    return Response(200, {"Content-Type": "text/html; charset=utf-8"}, UNBOUND_PAGE)


def parse_scenes(value: str | None) -> list[str] | None:
    """The requested scenes in order, or None when `scenes` is absent (CI then uses camera)."""
    if value is None or not value.strip():
        return None
    scenes: list[str] = []
    for part in re.split("[,，]", value):
        scene = part.strip().lower()
        if not scene:
            continue
        if scene not in cos_facts.DETECT_SCENES:
            raise CosError("InvalidArgument", f"scene {scene!r} is not one of {', '.join(cos_facts.DETECT_SCENES)}")
        if scene not in scenes:
            scenes.append(scene)
    return scenes or None


def fetch_detect_url(backend: Backend, url: str, bucket: str | None = None, region: str | None = None) -> bytes:
    """The image a detect-url names, read the way Cloud Infinite reads it: a plain GET of the URL,
    with nothing but the URL (and its own host). The emulator answers that GET from its own
    objects, so the URL must be an object URL of the bucket the request is for (`bucket` /
    `region`, when given), and its own signature must verify as COS would verify that GET:
    present (buckets are private), not expired, a known SecretId, only the Host header signed,
    the session token when temporary keys are in force. Otherwise CI could not fetch it:
    `cos_facts.CI_CODE_DETECT_URL_UNREADABLE`."""

    def unreadable(why: str) -> CosError:
        return CosError(cos_facts.CI_CODE_DETECT_URL_UNREADABLE, f"Cloud Infinite could not fetch detect-url: {why}")

    parts = urlsplit(url)
    match = cos_facts.COS_HOST_RE.match(parts.hostname or "")
    if parts.scheme not in ("http", "https") or not match or parts.port is not None:
        raise unreadable(
            "it must name an object of this emulator (http(s)://<bucket>.cos.<region>.myqcloud.com/<key>); "
            "the emulator fetches nothing else"
        )
    url_bucket, url_region = match.group("bucket"), match.group("region")
    if bucket is not None and (url_bucket, url_region) != (bucket, region):
        raise unreadable(f"it names bucket {url_bucket} in {url_region}, not this request's {bucket} in {region}")
    if backend.store.bucket_region(url_bucket) != url_region:
        raise unreadable(f"bucket {url_bucket} does not exist in {url_region}")
    path = unquote(parts.path)
    key = path[1:]
    if not key:
        raise unreadable("it names no object key")
    # CI processing parameters ride in the query as bare names: ?imageMogr2/thumbnail/200x200
    items = [item for item in parts.query.split("&") if item]
    processing = [unquote(item) for item in items if unquote(item).startswith("imageMogr2/")]
    signed = parse_qsl("&".join(i for i in items if not unquote(i).startswith("imageMogr2/")), keep_blank_values=True)
    if not auth.is_presigned(signed):
        raise unreadable("the URL is not signed and the bucket is private (403 AccessDenied)")
    try:
        auth.verify(
            method="GET",
            path=path,
            query=signed,
            headers={"host": parts.hostname or ""},
            credentials=backend.credentials,
            token=backend.token,
        )
    except CosError as exc:
        raise unreadable(f"its signature fails ({exc.status} {exc.code}: {exc.message})") from exc
    state = backend.store.get(url_bucket, key)
    if state is None:
        raise CosError("NoSuchKey", f"detect-url names {url_bucket}/{key}, which does not exist.")
    archived(state)
    data = state.body
    for rule in processing:
        data = apply_processing(data, rule)
    return data


def processing_rules(query: Sequence[tuple[str, str]]) -> list[str]:
    """The `imageMogr2/...` processing parameters of a decoded query, in order."""
    return [name for name, value in query if name.startswith("imageMogr2/") and not value]


def without_processing(query: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in query if not (name.startswith("imageMogr2/") and not value)]


def image_process(backend: Backend, req: Request) -> Response:
    """GET Object with `?imageMogr2/thumbnail/...`: the rendition, never the original's bytes."""
    state = backend.store.get(req.bucket or "", req.key or "")
    if state is None:
        raise CosError("NoSuchKey", "The specified key does not exist.")
    archived(state)
    data = state.body
    for rule in processing_rules(req.query):
        data = apply_processing(data, rule)
    content_type = "image/png" if data.startswith(_PNG_MAGIC) else "image/jpeg"
    return Response(200, {"Content-Type": content_type}, data)


_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}


def apply_processing(data: bytes, rule: str) -> bytes:
    """Apply `imageMogr2/thumbnail/<W>x<H>[/format/<jpg|png>][/quality/<1-100>]`.

    The thumbnail fits within W x H keeping the aspect ratio (`<W>x` and `x<H>` fix one side;
    a trailing `>` only shrinks, `<` only enlarges); `format` converts, `quality` sets JPEG quality.
    """
    steps = rule.split("/")
    if len(steps) < 3 or len(steps) % 2 == 0 or steps[0] != "imageMogr2" or steps[1] != "thumbnail":
        raise CosError(
            "InvalidArgument",
            f"the emulator supports only imageMogr2/thumbnail/<W>x<H>[/format/<f>][/quality/<q>], not {rule!r}",
        )
    match = _THUMBNAIL_RE.match(steps[2])
    if not match or not (match.group(1) or match.group(2)):
        raise CosError("InvalidArgument", f"thumbnail size {steps[2]!r} is not <W>x<H>, <W>x or x<H>")
    options = dict(zip(steps[3::2], steps[4::2], strict=True))
    unknown = set(options) - {"format", "quality"}
    if unknown or options.get("format", "jpg") not in _FORMATS or not options.get("quality", "90").isdigit():
        raise CosError("InvalidArgument", f"unsupported processing options in {rule!r}")
    from PIL import Image  # local extra; imported here so the emulator loads without it

    image = _open_image(data)
    width, height = image.size
    scales = []
    if match.group(1):
        scales.append(int(match.group(1)) / width)
    if match.group(2):
        scales.append(int(match.group(2)) / height)
    scale = min(scales)
    fmt = _FORMATS[options["format"]] if "format" in options else (image.format or "PNG")
    keep_size = (match.group(3) == ">" and scale >= 1) or (match.group(3) == "<" and scale <= 1)
    if keep_size and fmt == image.format and "quality" not in options:
        return data
    size = (width, height) if keep_size else (max(1, round(width * scale)), max(1, round(height * scale)))
    out = io.BytesIO()
    resized = image.convert("RGB" if fmt == "JPEG" else image.mode).resize(size, Image.Resampling.BILINEAR)
    quality = max(1, min(100, int(options.get("quality", "90"))))
    resized.save(out, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def _open_image(data: bytes) -> Any:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except Image.DecompressionBombError as exc:
        raise CosError(cos_facts.CI_CODE_RESOLUTION_EXCEEDED, f"image resolution too large: {exc}") from exc
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise CosError(cos_facts.CI_CODE_NOT_AN_IMAGE, f"the data is not a decodable image: {exc}") from exc


def check_image(data: bytes) -> tuple[int, int]:
    """CI's input rules, cheapest first: size, format (JPEG/PNG by magic bytes), dimensions."""
    if len(data) > cos_facts.DETECT_MAX_BYTES:
        raise CosError(
            cos_facts.CI_CODE_IMAGE_TOO_LARGE,
            f"The image is {len(data)} bytes; detect-label accepts at most {cos_facts.DETECT_MAX_BYTES}",
        )
    if not (data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC)):
        raise CosError(cos_facts.CI_CODE_NOT_AN_IMAGE, "The image format is invalid: detect-label takes JPEG or PNG")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise CosError(cos_facts.CI_CODE_RESOLUTION_EXCEEDED, str(exc)) from exc
    except Exception as exc:
        raise CosError(cos_facts.CI_CODE_NOT_AN_IMAGE, f"The image cannot be read: {exc}") from exc
    if min(width, height) < cos_facts.DETECT_MIN_SIDE:
        raise CosError(
            cos_facts.CI_CODE_IMAGE_TOO_SMALL,
            f"The image is {width}x{height}; detect-label needs at least "
            f"{cos_facts.DETECT_MIN_SIDE}x{cos_facts.DETECT_MIN_SIDE}",
        )
    if width > cos_facts.DETECT_MAX_WIDTH or height > cos_facts.DETECT_MAX_HEIGHT:
        raise CosError(
            cos_facts.CI_CODE_RESOLUTION_EXCEEDED,
            f"The image is {width}x{height}; detect-label accepts at most "
            f"{cos_facts.DETECT_MAX_WIDTH}x{cos_facts.DETECT_MAX_HEIGHT}",
        )
    return width, height


def _decode_error_types() -> tuple[type[BaseException], ...]:
    try:
        from cos_autotag_tools.labels.errors import ImageDecodeError
    except ImportError:
        return ()
    return (ImageDecodeError,)


def run_engine(engine: Any, data: bytes, scenes: Sequence[str]) -> dict[str, list[dict[str, object]]]:
    """Ask the engine and check its answer; an engine bug is a 500, never a malformed body."""
    try:
        raw = engine.detect(data, list(scenes))
    except _decode_error_types() as exc:
        raise CosError(cos_facts.CI_CODE_NOT_AN_IMAGE, f"The image cannot be decoded: {exc}") from exc
    except Exception as exc:
        raise CosError("InternalError", f"label engine {type(engine).__name__} failed: {exc!r}", 500) from exc
    if not isinstance(raw, Mapping):
        raise CosError("InternalError", f"label engine returned {type(raw).__name__}, not a dict of scenes", 500)
    out: dict[str, list[dict[str, object]]] = {}
    for scene in scenes:
        labels = []
        for label in raw.get(scene, ()) or ():
            try:
                name = str(label["Name"])
                confidence = int(label["Confidence"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CosError("InternalError", f"label engine returned a bad label {label!r}", 500) from exc
            if not name or not 0 <= confidence <= 100:
                raise CosError("InternalError", f"label engine returned a bad label {label!r}", 500)
            labels.append(
                {
                    "Name": name,
                    "Confidence": confidence,
                    "FirstCategory": str(label.get("FirstCategory", "")),
                    "SecondCategory": str(label.get("SecondCategory", "")),
                }
            )
        out[scene] = labels
    return out
