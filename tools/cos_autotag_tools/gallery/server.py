"""The gallery's web server on 127.0.0.1: the page, its JSON, and the thumbnails.

Thumbnails are Cloud Infinite renditions (`imageMogr2/thumbnail/...`) of the objects, reached
through short-lived signed URLs, so no original is downloaded. `/thumb?key=K` signs a fresh URL
at each request, for listed photos only:
- against COS it redirects the browser there (the URL signs for the bucket's own host);
- against AUTOTAG_COS_ENDPOINT (the local emulator) the browser cannot reach that host, so the
  server fetches the same signed URL from the endpoint with the bucket's Host header and
  passes the rendition on.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests

from cos_autotag import cos_facts
from cos_autotag.errors import ConfigurationError, CosCallError

from ..object_labels import Bucket
from .index import Photo, SyncStats

THUMBNAIL_RULE = "imageMogr2/thumbnail/320x320/format/jpg"
PROXY_TIMEOUT_S = 20
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


def _static(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def label_counts(photos: Sequence[Photo]) -> list[tuple[str, int]]:
    """Each label and how many photos carry it, most common first (then by name)."""
    counts: Counter[str] = Counter(name for photo in photos for name, _ in photo.labels)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


class Gallery:
    """What the server serves: built once after the index is synced."""

    def __init__(self, bucket: Bucket, prefix: str, photos: Sequence[Photo], stats: SyncStats | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.keys = frozenset(photo.key for photo in photos)
        self.bucket_host = cos_facts.cos_host(bucket.name, bucket.region)
        self.payload = json.dumps(
            {
                "bucket": bucket.name,
                "region": bucket.region,
                "prefix": prefix,
                "photos": [photo.as_dict() for photo in photos],
                "labels": label_counts(photos),
                "index": stats.as_dict() if stats is not None else None,
            },
            ensure_ascii=False,
        ).encode("utf-8")
        self._session = requests.Session()
        self._static = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}

    def static(self, path: str) -> tuple[bytes, str] | None:
        return self._static.get(path)

    def csp(self) -> str:
        # The page's own script and style only; images from here or the bucket's host (redirects).
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src 'self' https://{self.bucket_host}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )

    def thumbnail(self, key: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for `/thumb?key=`."""
        if key not in self.keys:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not a photo of this gallery\n"
        try:
            url = self.bucket.gateway.thumbnail_url(self.bucket.name, self.bucket.region, key, THUMBNAIL_RULE)
        except (CosCallError, ConfigurationError) as error:
            return 502, {"Content-Type": "text/plain; charset=utf-8"}, f"cannot sign: {error}\n".encode()
        endpoint = self.bucket.settings.cos_endpoint
        if endpoint is None:
            # The URL expires within minutes: the browser must ask again rather than cache the redirect.
            return 302, {"Location": url, "Cache-Control": "no-store"}, b""
        scheme, host, port = endpoint
        parts = urlsplit(url)
        local = urlunsplit((scheme, f"{host}:{port}", parts.path, parts.query, ""))
        try:
            response = self._session.get(local, headers={"Host": self.bucket_host}, timeout=PROXY_TIMEOUT_S)
        except requests.RequestException as error:
            # The exception's text holds the signed URL (and a session token): name only its kind.
            reason = f"{scheme}://{host}:{port} unreachable ({type(error).__name__})\n"
            return 502, {"Content-Type": "text/plain; charset=utf-8"}, reason.encode()
        headers = {"Content-Type": response.headers.get("Content-Type", "application/octet-stream")}
        if response.ok:
            headers["Cache-Control"] = "private, max-age=300"
        return response.status_code, headers, response.content


class _Handler(BaseHTTPRequestHandler):
    server: GalleryServer
    server_version = "cos-autotag-gallery"

    def do_GET(self) -> None:
        if not self._host_ok():
            self._send(421, {"Content-Type": "text/plain; charset=utf-8"}, b"unexpected Host header\n")
            return
        gallery = self.server.gallery
        parts = urlsplit(self.path)
        if parts.path == "/api/photos":
            self._send(200, {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
                       gallery.payload)  # fmt: skip
            return
        if parts.path == "/thumb":
            key = (parse_qs(parts.query).get("key") or [""])[0]
            self._send(*gallery.thumbnail(key))
            return
        static = gallery.static(parts.path)
        if static is None:
            self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n")
            return
        body, kind = static
        self._send(200, {"Content-Type": kind, "Cache-Control": "no-cache"}, body)

    def _host_ok(self) -> bool:
        # Only this machine's names: a page elsewhere cannot reach the server by rebinding DNS.
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": self.server.gallery.csp(),
            **headers,
            "Content-Length": str(len(body)),
        }
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet on success; errors say which request failed (paths carry no secret).
        if len(args) >= 2 and str(args[1]).startswith(("4", "5")) and str(args[1]) != "421":
            sys.stderr.write(f"gallery: {self.command} {urlsplit(self.path).path} -> {args[1]}\n")


class GalleryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gallery: Gallery, port: int = 0) -> None:
        self.gallery = gallery
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Serve in a background thread (tests); `serve_forever()` serves in the caller's."""
        self._thread = threading.Thread(target=self.serve_forever, name="gallery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
