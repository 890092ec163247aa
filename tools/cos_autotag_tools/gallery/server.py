"""The gallery's web server on 127.0.0.1: the page, its JSON, and the thumbnails.

Thumbnails are Cloud Infinite renditions (`imageMogr2/thumbnail/...`) of the objects, reached
through short-lived signed URLs, so no original is downloaded. `/thumb?key=K` signs a fresh URL
at each request, for listed photos only:
- against COS it redirects the browser there (the URL signs for the bucket's own host);
- against AUTOTAG_COS_ENDPOINT (the local emulator) the browser cannot reach that host, so the
  server fetches the same signed URL from the endpoint with the bucket's Host header and
  passes the rendition on.

The page sends its query (`query.py`, the same language as `find`) to `/api/photos`, which pages
the answer out of the SQLite index: no response holds the whole bucket. A background thread
re-syncs the index every `poll_s` seconds (new uploads appear, labels older than `max_age_s` are
read again), and `POST /api/refresh` re-reads every label now. `/thumb` refuses requests another
site makes (`Sec-Fetch-Site`), so a page elsewhere cannot probe which keys exist.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests

from cos_autotag import cos_facts
from cos_autotag.errors import ConfigurationError, CosCallError

from ..metainsight import MetaInsightError
from ..object_labels import Bucket
from ..query import QueryError, parse
from .dataset import DatasetPages
from .index import LabelIndex, SyncStats

THUMBNAIL_RULE = "imageMogr2/thumbnail/320x320/format/jpg"
PROXY_TIMEOUT_S = 20
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
CLOUD_SIZE = 200
CROSS_SITE = ("cross-site", "same-site")


def _static(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


class Gallery:
    """What the server serves: pages of the index, the thumbnails, and the index kept fresh."""

    def __init__(
        self,
        bucket: Bucket,
        prefix: str,
        index: LabelIndex | DatasetPages,
        stats: SyncStats | None = None,
        sync: Callable[[bool], SyncStats] | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.index = index
        self.stats = stats
        self._sync = sync
        # The SQLite index is opened with check_same_thread=False: every use holds this lock. A
        # dataset keeps its own (its queries are network calls: thumbnails need not wait for them).
        self._lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if isinstance(index, LabelIndex) else contextlib.nullcontext()
        )
        self._sync_lock = threading.Lock()
        self.generation = 0
        self.synced_at = time.time()
        self.bucket_host = cos_facts.cos_host(bucket.name, bucket.region)
        self._session = requests.Session()
        self._static = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}

    def resync(self, reread_all: bool = False) -> None:
        """Sync the index with the bucket now (the poller, and the page's refresh button)."""
        if self._sync is None:
            return
        with self._sync_lock:
            stats = self._sync(reread_all)
            with self._lock:
                self.stats = stats
                self.generation += 1
                self.synced_at = time.time()

    def page(self, query_text: str = "", offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, object]:
        """Raises QueryError for a query that does not parse."""
        query = parse(query_text)
        with self._lock:
            found = self.index.query_page(query, self.prefix, offset, limit, CLOUD_SIZE)
            generation, synced_at = self.generation, self.synced_at
        answer: dict[str, object] = {
            "bucket": self.bucket.name,
            "region": self.bucket.region,
            "prefix": self.prefix,
            "query": str(query),
            "offset": offset,
            "total": found.total,
            "shown": found.shown,
            "photos": [photo.as_dict() for photo in found.photos],
            "labels": found.labels,
            "labels_as_of": min(found.as_of, synced_at),
            "synced_at": synced_at,
            "generation": generation,
            "index": self.stats.as_dict() if self.stats is not None else None,
        }
        if found.more is not None:  # from a dataset: the total is known only at the answer's end
            answer["more"] = found.more
        return answer

    @property
    def payload(self) -> bytes:
        """The first page of everything, as `/api/photos` answers it."""
        return json.dumps(self.page(), ensure_ascii=False).encode("utf-8")

    def status(self) -> dict[str, object]:
        return {"generation": self.generation, "synced_at": self.synced_at}

    def is_photo(self, key: str) -> bool:
        with self._lock:
            return self.index.has_photo(key)

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
        if not key or not self.is_photo(key):
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
        params = parse_qs(parts.query)
        if parts.path == "/api/photos":
            try:
                offset = max(0, int((params.get("offset") or ["0"])[0]))
                limit = min(MAX_PAGE_SIZE, max(1, int((params.get("limit") or [str(PAGE_SIZE)])[0])))
                answer = gallery.page((params.get("q") or [""])[0], offset, limit)
            except (QueryError, ValueError) as error:
                self._json(400, {"error": str(error)})
                return
            except MetaInsightError as error:  # --dataset: the service refused or is unreachable
                self._json(502, {"error": str(error)})
                return
            self._json(200, answer)
            return
        if parts.path == "/api/status":
            self._json(200, gallery.status())
            return
        if parts.path == "/thumb":
            if self.headers.get("Sec-Fetch-Site", "same-origin") in CROSS_SITE:
                self._send(403, {"Content-Type": "text/plain; charset=utf-8"}, b"thumbnails are for this page only\n")
                return
            key = (params.get("key") or [""])[0]
            self._send(*gallery.thumbnail(key))
            return
        static = gallery.static(parts.path)
        if static is None:
            self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n")
            return
        body, kind = static
        self._send(200, {"Content-Type": kind, "Cache-Control": "no-cache"}, body)

    def do_POST(self) -> None:
        # Only the page itself: a form elsewhere cannot set the header, and a script elsewhere
        # would need a CORS preflight this server never answers.
        same_origin = self.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
        if not self._host_ok() or not same_origin or self.headers.get("X-Gallery") != "1":
            self._send(403, {"Content-Type": "text/plain; charset=utf-8"}, b"not from this page\n")
            return
        if urlsplit(self.path).path != "/api/refresh":
            self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n")
            return
        try:
            self.server.gallery.resync(reread_all=True)
        except CosCallError as error:
            self._json(502, {"error": str(error)})
            return
        self._json(200, self.server.gallery.status())

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}, data)

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

    def __init__(self, gallery: Gallery, port: int = 0, poll_s: float = 0) -> None:
        self.gallery = gallery
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        if poll_s > 0:
            threading.Thread(target=self._poll, args=(poll_s,), name="gallery-poll", daemon=True).start()

    def _poll(self, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                self.gallery.resync()
            except Exception as error:  # the next round tries again; the page keeps what it has
                sys.stderr.write(f"gallery: re-sync failed ({type(error).__name__}); trying again in {every_s:g}s\n")

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

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
