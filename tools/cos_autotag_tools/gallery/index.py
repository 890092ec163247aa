"""The local label index of `gallery` and `find`: each object's labels in SQLite, keyed by key and ETag.

One index per endpoint, bucket, region and mode (`default_index_path`), so another endpoint or
the other mode never shows this one's labels; its folder is 0700 and its file 0600.

A sync lists the bucket once and reads labels only for what the index cannot vouch for: a new
key, a changed ETag, a photo that carried no label last time (the function writes its labels
after the upload, and tags or metadata written in place keep the ETag: read again until
`UNLABELED_GRACE_S` after the index first saw that ETag), or labels read longer ago than
`max_age_s` (a tag write changes neither ETag nor Last-Modified, so only a re-read sees an
`untag` from elsewhere). `mark_stale` lets `untag` and `backfill` on this machine say what they
touched. Keys no longer listed leave the index. `reindex` reads everything again.

The gallery reads photos only (not `.txt` and the like: `is_candidate`); `find` syncs with
`everything=True`, which reads every object but folders, since a label is a label whatever the
key's extension. Both share one index per endpoint, bucket, region and mode.

Queries run in SQL (`query_sql.py`) over a `labels` table (one row per name a label answers to)
and a `names` table, so the server pages its answers from here (`query_page`) and neither its
memory nor its time per page grows with the bucket as a Python pass over every row would.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cos_autotag_tools import cos_facts

from ..backfill.listing import ListedObject, list_objects
from ..backfill.progress import Progress
from ..object_labels import Bucket, ObjectLabels, ReadResult, label_key, read_many
from ..query import Everything, Query, matches, names_of
from ..query_sql import name_bytes, where

SCHEMA_VERSION = "3"
# An object without labels may be labeled just after the upload (same ETag): read it again
# until this long after the index first saw its ETag; after that, on the max-age schedule.
UNLABELED_GRACE_S = 600.0
COMMIT_EVERY = 500
ROWS_CHUNK = 1000
NAME_IDS_KEPT = 10_000
# What Cloud Infinite renders as a thumbnail; other objects are not photos to show.
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# Never a photo: not read. Any other object (no extension, an unknown one) is read, and shown when
# it carries the marker or labels: the function labels by content, not by name.
NOT_PHOTO_SUFFIXES = frozenset(
    {".txt", ".md", ".json", ".csv", ".log", ".xml", ".html", ".htm", ".js", ".css", ".pdf", ".zip", ".gz",
     ".tar", ".mp4", ".mov", ".mp3", ".wav", ".doc", ".docx", ".xls", ".xlsx", ".py", ".sqlite"}
)  # fmt: skip
SHOWN_SQL = "(candidate = 1 AND (photo_suffix = 1 OR marker IS NOT NULL OR labels != '[]'))"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cos-autotag"


def index_identity(endpoint: str, bucket: str, region: str, mode: str) -> dict[str, str]:
    return {"schema": SCHEMA_VERSION, "endpoint": endpoint, "bucket": bucket, "region": region, "mode": mode}


def default_index_path(
    bucket: str, env: Mapping[str, str] | None = None, endpoint: str = "", region: str = "", mode: str = "auto"
) -> Path:
    digest = hashlib.sha256("\n".join((endpoint, bucket, region, mode)).encode()).hexdigest()[:12]
    return cache_dir(env) / f"{bucket}-{digest}.sqlite"


def is_candidate(obj: ListedObject) -> bool:
    """Worth reading: not a folder, not empty, not archived, not named as a non-photo."""
    if obj.key.endswith("/") or obj.size == 0 or obj.storage_class in cos_facts.ARCHIVE_STORAGE_CLASSES:
        return False
    return Path(obj.key).suffix.lower() not in NOT_PHOTO_SUFFIXES


def is_photo(obj: ListedObject) -> bool:
    return is_candidate(obj) and Path(obj.key).suffix.lower() in PHOTO_SUFFIXES


def _private_file(path: Path) -> None:
    """The index holds the bucket's keys and labels: only this user may read it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def mark_stale(prefix: str, bucket: str, region: str, env: Mapping[str, str] | None = None) -> int:
    """Tell every gallery index of this bucket on this machine that the keys under `prefix` may
    have changed (`untag` and `backfill` call it after a run over that prefix).

    Their labels are read again at the next sync. Returns how many entries were marked; an index
    that cannot be opened is left alone (the gallery's own schedule still re-reads it).
    """
    folder = cache_dir(env)
    marked = 0
    for path in sorted(folder.glob(f"{bucket}-*.sqlite")) if folder.is_dir() else []:
        try:
            db = sqlite3.connect(path, timeout=5)
            try:
                found = dict(db.execute("SELECT name, value FROM meta").fetchall())
                if found.get("bucket") == bucket and found.get("region") == region:
                    with db:
                        marked += db.execute(
                            "UPDATE objects SET read_at = 0 WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
                        ).rowcount
            finally:
                db.close()
        except sqlite3.Error:
            continue
    return marked


@dataclass(frozen=True)
class Photo:
    key: str
    etag: str
    size: int | None
    found_in: str
    marker: str | None
    labels: tuple[tuple[str, int], ...]
    read_at: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "size": self.size, "mode": self.found_in or None, "labels": list(self.labels)}


@dataclass
class SyncStats:
    listed: int = 0
    reused: int = 0
    read: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "listed": self.listed,
            "reused": self.reused,
            "read": self.read,
            "removed": self.removed,
            "failed": [{"key": k, "error": e} for k, e in self.failed],
        }


class IndexUnusable(RuntimeError):
    pass


@dataclass(frozen=True)
class Summary:
    count: int  # objects under the prefix
    labels: list[tuple[str, int]]  # the most common labels among them, with their counts
    as_of: float  # the oldest label read among them


@dataclass(frozen=True)
class Page:
    total: int  # photos matching the query
    shown: int  # photos in the index under the prefix
    photos: list[Photo]
    labels: list[tuple[str, int]]  # the label cloud over every photo under the prefix
    as_of: float  # the oldest label read among the photos under the prefix
    more: bool | None = None  # from a dataset: whether more matches follow (total is then a lower bound)


class LabelIndex:
    def __init__(
        self,
        path: Path,
        bucket: str,
        region: str,
        endpoint: str = "",
        mode: str = "auto",
        check_same_thread: bool = True,
    ) -> None:
        self.path = path
        self._name_ids: dict[bytes, int] = {}
        self._summaries: dict[tuple[str, bool, int], tuple[tuple[int, int], Summary]] = {}
        try:
            _private_file(path)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=check_same_thread)
            self._setup(index_identity(endpoint, bucket, region, mode))
        except (OSError, sqlite3.Error) as error:
            raise IndexUnusable(f"cannot use the index {path}: {error}; pick another with --index PATH") from error

    def _setup(self, expected: dict[str, str]) -> None:
        db = self._db
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = dict(db.execute("SELECT name, value FROM meta").fetchall())
            if found != expected:
                # Another bucket, region or layout: start afresh rather than show wrong labels.
                for table in ("objects", "labels", "names"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute("DELETE FROM meta")
                db.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
            db.execute(
                "CREATE TABLE IF NOT EXISTS objects ("
                " key TEXT PRIMARY KEY, etag TEXT NOT NULL, size INTEGER,"
                " found_in TEXT NOT NULL, marker TEXT, labels TEXT NOT NULL,"
                " photo_suffix INTEGER NOT NULL, candidate INTEGER NOT NULL,"
                " read_at REAL NOT NULL, seen_at REAL NOT NULL)"
            )
            # One row per name a label answers to (`own` = 1 on the label's own name, for counts).
            db.execute(
                "CREATE TABLE IF NOT EXISTS labels (key TEXT NOT NULL, name TEXT NOT NULL,"
                " name_id INTEGER NOT NULL, confidence INTEGER NOT NULL, own INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, alias BLOB NOT NULL UNIQUE)")
            db.execute("CREATE INDEX IF NOT EXISTS labels_by_key ON labels (key)")
            db.execute("CREATE INDEX IF NOT EXISTS labels_by_name ON labels (name_id, confidence)")

    def close(self) -> None:
        self._db.close()

    def _rows(
        self, query: Query, prefix: str, shown_only: bool, tail: str = "", extra: tuple[object, ...] = ()
    ) -> Iterator[Photo]:
        """The rows under `prefix` matching `query` in key order: in SQL where it compiles, else
        (a query binding too many values) by `query.matches` over the rows."""
        compiled = where(query)
        condition, params = compiled if compiled is not None else ("1", [])
        shown = f" AND {SHOWN_SQL}" if shown_only else ""
        rows = self._db.execute(
            "SELECT key, etag, size, found_in, marker, labels, read_at FROM objects o"
            f" WHERE key >= ? AND substr(key, 1, ?) = ?{shown} AND ({condition}) ORDER BY key{tail}",
            (prefix, len(prefix), prefix, *params, *extra),
        )
        for key, etag, size, found_in, marker, labels, read_at in rows:
            photo = Photo(
                key, etag, size, found_in, marker, tuple((str(n), int(c)) for n, c in json.loads(labels)), read_at
            )
            if compiled is not None or matches(query, photo.key, photo.labels):
                yield photo

    def select(self, query: Query, prefix: str = "", shown_only: bool = False) -> Iterator[Photo]:
        """Every indexed object under `prefix` matching `query`, in key order (what `find` prints)."""
        return self._rows(query, prefix, shown_only)

    def photos(self, prefix: str = "") -> list[Photo]:
        """Every photo shown under `prefix` (tests and small buckets; the server pages instead)."""
        return list(self._rows(Everything(), prefix, shown_only=True))

    def has_photo(self, key: str) -> bool:
        row = self._db.execute(f"SELECT 1 FROM objects WHERE key = ? AND {SHOWN_SQL}", (key,)).fetchone()
        return row is not None

    def has_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone() is not None

    def count(self, query: Query, prefix: str, shown_only: bool) -> int:
        compiled = where(query)
        if compiled is None:
            return sum(1 for _ in self._rows(query, prefix, shown_only))
        condition, params = compiled
        shown = f" AND {SHOWN_SQL}" if shown_only else ""
        row = self._db.execute(
            f"SELECT count(*) FROM objects o WHERE key >= ? AND substr(key, 1, ?) = ?{shown} AND ({condition})",
            (prefix, len(prefix), prefix, *params),
        ).fetchone()
        return int(row[0])

    def summary(self, prefix: str, shown_only: bool, cloud_size: int) -> Summary:
        """How many objects are under `prefix`, their most common labels and their oldest read;
        kept until the database changes (the cloud does not depend on the query)."""
        version = (
            int(self._db.execute("PRAGMA data_version").fetchone()[0]),
            self._db.total_changes,
        )
        cache_key = (prefix, shown_only, cloud_size)
        kept = self._summaries.get(cache_key)
        if kept is not None and kept[0] == version:
            return kept[1]
        shown = f" AND {SHOWN_SQL}" if shown_only else ""
        under = f"o.key >= ? AND substr(o.key, 1, ?) = ?{shown}"
        count, oldest = self._db.execute(
            f"SELECT count(*), min(read_at) FROM objects o WHERE {under}", (prefix, len(prefix), prefix)
        ).fetchone()
        cloud = self._db.execute(
            "SELECT l.name, count(*) AS n FROM labels l JOIN objects o ON o.key = l.key"
            f" WHERE l.own = 1 AND {under} GROUP BY l.name ORDER BY n DESC, l.name LIMIT ?",
            (prefix, len(prefix), prefix, cloud_size),
        ).fetchall()
        found = Summary(int(count), [(str(n), int(c)) for n, c in cloud], time.time() if oldest is None else oldest)
        self._summaries[cache_key] = (version, found)
        return found

    def query_page(self, query: Query, prefix: str, offset: int, limit: int, cloud_size: int) -> Page:
        """One page of the photos under `prefix` matching `query`, in key order, with the label cloud.

        Counted and paged by SQLite: memory holds one page and the cloud, whatever the bucket's size."""
        summary = self.summary(prefix, True, cloud_size)
        total = self.count(query, prefix, shown_only=True)
        if where(query) is not None:
            page = list(self._rows(query, prefix, True, " LIMIT ? OFFSET ?", (limit, offset)))
        else:
            page = [p for i, p in enumerate(self._rows(query, prefix, True)) if offset <= i < offset + limit]
        return Page(total, summary.count, page, summary.labels, summary.as_of)

    def put(
        self, obj: ListedObject, found: ObjectLabels, read_at: float | None = None, candidate: bool | None = None
    ) -> None:
        now = time.time() if read_at is None else read_at
        db = self._db
        row = db.execute("SELECT seen_at FROM objects WHERE key = ? AND etag = ?", (obj.key, obj.etag)).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                obj.key, obj.etag, obj.size, found.found_in, found.marker,
                json.dumps(found.labels, ensure_ascii=False), int(is_photo(obj)),
                int(is_candidate(obj) if candidate is None else candidate), now, now if row is None else row[0],
            ),
        )  # fmt: skip
        db.execute("DELETE FROM labels WHERE key = ?", (obj.key,))
        rows = []
        for name, confidence in found.labels:
            own = name_bytes(label_key(name))
            for alias in sorted({own, *(name_bytes(n) for n in names_of(name))}):
                rows.append((obj.key, name, self._name_id(alias), confidence, int(alias == own)))
        db.executemany("INSERT INTO labels VALUES (?, ?, ?, ?, ?)", rows)

    def _name_id(self, alias: bytes) -> int:
        known = self._name_ids.get(alias)
        if known is None:
            self._db.execute("INSERT OR IGNORE INTO names (alias) VALUES (?)", (alias,))
            known = int(self._db.execute("SELECT id FROM names WHERE alias = ?", (alias,)).fetchone()[0])
            if len(self._name_ids) < NAME_IDS_KEPT:
                self._name_ids[alias] = known
        return known

    def remove(self, keys: list[str]) -> None:
        self._db.executemany("DELETE FROM objects WHERE key = ?", [(k,) for k in keys])
        self._db.executemany("DELETE FROM labels WHERE key = ?", [(k,) for k in keys])

    def commit(self) -> None:
        self._db.commit()

    def sync(
        self,
        bucket: Bucket,
        prefix: str,
        mode: str,
        concurrency: int,
        progress: Progress | None = None,
        reindex: bool = False,
        max_age_s: float | None = None,
        everything: bool = False,
        on_failed: Callable[[ReadResult], None] | None = None,
    ) -> SyncStats:
        """Bring the index up to date with one listing of `prefix` (see the module's docstring).
        `everything`: read every object but folders (`find`), not only what may be a photo."""
        stats = SyncStats()
        started = time.time()
        oldest = 0.0 if max_age_s is None else started - max_age_s
        # A merge of two sorted streams, the listing and the index's rows under the prefix (both in
        # key order: COS lists by UTF-8 bytes, SQLite compares TEXT by them): memory stays a page
        # of each, whatever the bucket's size. A row the listing passes by is gone.
        known = self._rows_under(prefix, started)
        current = next(known, None)

        def passed(key: str | None) -> _Known | None:
            """Drop the index's rows before `key` (all when None): not listed, so gone; answer `key`'s row."""
            nonlocal current
            while current is not None and (key is None or current.key < key):
                self.remove([current.key])
                stats.removed += 1
                current = next(known, None)
            if current is not None and current.key == key:
                found, current = current, next(known, None)
                return found
            return None

        def wanted(obj: ListedObject, old: _Known | None) -> bool:
            if obj.key.endswith("/"):
                return False
            if everything or is_candidate(obj):
                return True
            # Not a photo. A row `find` read (never a candidate) stays while its ETag does; a photo
            # archived or emptied since is no longer shown.
            if old is not None and (old.candidate or old.etag != obj.etag):
                self.remove([obj.key])
                stats.removed += 1
            return False

        def to_read() -> Iterator[ListedObject]:
            for obj in list_objects(bucket.gateway, bucket.name, bucket.region, prefix):
                old = passed(obj.key)
                if not wanted(obj, old):
                    continue
                stats.listed += 1
                if progress is not None:
                    progress.add_total(1)
                fresh = (
                    old is not None
                    and bool(old.etag)
                    and old.etag == obj.etag
                    and (old.marker or old.seen_at + UNLABELED_GRACE_S < old.read_at)
                    and old.read_at > oldest
                )
                if not reindex and fresh:
                    stats.reused += 1
                    if progress is not None:
                        progress.update()
                    continue
                yield obj
            passed(None)  # whatever the listing did not reach is gone

        pending = 0
        for result in read_many(
            bucket.gateway,
            bucket.name,
            bucket.region,
            to_read(),
            mode,
            concurrency,
            lambda _: progress.update() if progress is not None else None,
        ):
            if result.labels is not None:
                self.put(result.listed, result.labels)
                stats.read += 1
            elif result.gone:  # deleted since it was listed
                self.remove([result.listed.key])
                stats.listed -= 1
            else:
                stats.failed.append((result.listed.key, str(result.error)))
                if on_failed is not None:
                    on_failed(result)
            pending += 1
            if pending >= COMMIT_EVERY:
                self.commit()
                pending = 0
        self.commit()
        return stats

    def _rows_under(self, prefix: str, started: float) -> Iterator[_Known]:
        """The rows under `prefix` in key order, a chunk at a time (no cursor stays open while the
        sync writes). Rows written since `started` are this sync's own reads, behind the listing:
        not rows it passed by."""
        last = ""
        while True:
            rows = self._db.execute(
                "SELECT key, etag, marker IS NOT NULL, candidate, read_at, seen_at FROM objects"
                " WHERE key > ? AND substr(key, 1, ?) = ? AND key >= ? ORDER BY key LIMIT ?",
                (last, len(prefix), prefix, prefix, ROWS_CHUNK),
            ).fetchall()
            for key, etag, marker, candidate, read_at, seen_at in rows:
                if read_at < started:
                    yield _Known(key, etag, bool(marker), bool(candidate), read_at, seen_at)
            if len(rows) < ROWS_CHUNK:
                return
            last = rows[-1][0]


@dataclass(frozen=True)
class _Known:
    key: str
    etag: str
    marker: bool
    candidate: bool
    read_at: float
    seen_at: float
