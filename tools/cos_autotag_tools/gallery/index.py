"""The gallery's local index: each photo's labels in SQLite, keyed by key and ETag.

Opening a bucket lists it once and reads labels only for what the index cannot vouch for:
a new key, a changed ETag, or a photo that carried no label last time (the function writes its
labels after the upload, and tags or metadata written in place keep the ETag). Keys no longer
listed leave the index. `reindex` reads everything again, e.g. after `backfill --relabel`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cos_autotag_tools import cos_facts

from ..backfill.listing import ListedObject, list_objects
from ..backfill.progress import Progress
from ..object_labels import Bucket, ObjectLabels, read_many

SCHEMA_VERSION = "1"
COMMIT_EVERY = 500
# What Cloud Infinite renders as a thumbnail; other objects are not photos to show.
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)


def default_index_path(bucket: str, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cos-autotag" / f"{bucket}.sqlite"


def is_photo(obj: ListedObject) -> bool:
    if obj.key.endswith("/") or obj.size == 0 or obj.storage_class in cos_facts.ARCHIVE_STORAGE_CLASSES:
        return False
    return Path(obj.key).suffix.lower() in PHOTO_SUFFIXES


@dataclass(frozen=True)
class Photo:
    key: str
    etag: str
    size: int | None
    found_in: str
    marker: str | None
    labels: tuple[tuple[str, int], ...]

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


class LabelIndex:
    def __init__(self, path: Path, bucket: str, region: str) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            self._setup(bucket, region)
        except (OSError, sqlite3.Error) as error:
            raise IndexUnusable(f"cannot use the index {path}: {error}; pick another with --index PATH") from error

    def _setup(self, bucket: str, region: str) -> None:
        db = self._db
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            expected = {"schema": SCHEMA_VERSION, "bucket": bucket, "region": region}
            found = dict(db.execute("SELECT name, value FROM meta").fetchall())
            if found != expected:
                # Another bucket, region or layout: start afresh rather than show wrong labels.
                db.execute("DROP TABLE IF EXISTS objects")
                db.execute("DELETE FROM meta")
                db.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
            db.execute(
                "CREATE TABLE IF NOT EXISTS objects ("
                " key TEXT PRIMARY KEY, etag TEXT NOT NULL, size INTEGER,"
                " found_in TEXT NOT NULL, marker TEXT, labels TEXT NOT NULL)"
            )

    def close(self) -> None:
        self._db.close()

    def _under(self, prefix: str) -> Iterator[tuple[str, str, int | None, str, str | None, str]]:
        yield from self._db.execute(
            "SELECT key, etag, size, found_in, marker, labels FROM objects WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        )

    def photos(self, prefix: str = "") -> list[Photo]:
        return [
            Photo(key, etag, size, found_in, marker, tuple((str(n), int(c)) for n, c in json.loads(labels)))
            for key, etag, size, found_in, marker, labels in self._under(prefix)
        ]

    def put(self, obj: ListedObject, found: ObjectLabels) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)",
            (obj.key, obj.etag, obj.size, found.found_in, found.marker, json.dumps(found.labels, ensure_ascii=False)),
        )

    def remove(self, keys: list[str]) -> None:
        self._db.executemany("DELETE FROM objects WHERE key = ?", [(k,) for k in keys])

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
    ) -> SyncStats:
        """Bring the index up to date with one listing of `prefix` (see the module's docstring)."""
        stats = SyncStats()
        known = {photo.key: photo for photo in self.photos(prefix)}
        listed: set[str] = set()

        def to_read() -> Iterator[ListedObject]:
            for obj in list_objects(bucket.gateway, bucket.name, bucket.region, prefix):
                if not is_photo(obj):
                    continue
                listed.add(obj.key)
                stats.listed += 1
                if progress is not None:
                    progress.add_total(1)
                old = known.get(obj.key)
                if not reindex and old is not None and old.etag == obj.etag and old.etag and old.marker is not None:
                    stats.reused += 1
                    if progress is not None:
                        progress.update()
                    continue
                yield obj

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
            elif result.gone:
                listed.discard(result.listed.key)
                stats.listed -= 1
            else:
                stats.failed.append((result.listed.key, str(result.error)))
            pending += 1
            if pending >= COMMIT_EVERY:
                self.commit()
                pending = 0
        gone = sorted(set(known) - listed)
        self.remove(gone)
        stats.removed = len(gone)
        self.commit()
        return stats
