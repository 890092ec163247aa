"""Buckets and objects, in memory or on disk.

On disk (`data_dir`), each bucket is a folder holding `bucket.json` and `objects/`. An object is
a body file `<sha1(key)>.<version>.bin` plus a JSON sidecar `<sha1(key)>.json` naming that body.
Every file is written to a temporary name and moved into place with `os.replace`, and the
sidecar is written last: it is the commit point. A crash at any moment leaves either the old
object or the new one, never a torn one; orphan bodies and temporary files are swept on load.

Multipart uploads in progress live in memory only (a restart forgets them).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cos_autotag import cos_facts


@dataclass(frozen=True)
class ObjectState:
    """One stored object, as tests see it through `Emulator.get_object_state`."""

    bucket: str
    key: str
    body: bytes
    # Standard content headers (Content-Type, Cache-Control, ...), by their canonical names.
    headers: dict[str, str]
    # User metadata, full header names lower-cased: {"x-cos-meta-labels": "cat,dog"}.
    metadata: dict[str, str]
    tags: dict[str, str]
    storage_class: str
    etag: str
    size: int  # the object's length, also when `body` was not read (b"")
    last_modified: float
    request_id: str
    # Server-side encryption headers as stored (lower-cased names); {} = unencrypted.
    sse: dict[str, str] = field(default_factory=dict)
    # The object's own ACL as (grantee, permission) pairs; None = none of its own (the bucket's).
    acl: tuple[tuple[str, str], ...] | None = None

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")


@dataclass
class _Record:
    """An object as stored: its state without the body, and the body in memory (`body`) or in a
    file (`body_file`). On disk the sidecar is the state's fields (but bucket and body) and
    `body_file`."""

    state: ObjectState  # body b""
    body: bytes | None = None
    body_file: str | None = None

    @property
    def key(self) -> str:
        return self.state.key

    def to_json(self) -> dict[str, object]:
        data = {f.name: getattr(self.state, f.name) for f in fields(ObjectState) if f.name not in ("bucket", "body")}
        return {**data, "body_file": self.body_file}

    @classmethod
    def from_json(cls, bucket: str, data: dict[str, Any]) -> _Record:
        names = {f.name for f in fields(ObjectState)}
        state = ObjectState(bucket=bucket, body=b"", **{k: v for k, v in data.items() if k in names})
        acl = None if state.acl is None else tuple((str(g), str(p)) for g, p in state.acl)
        return cls(replace(state, acl=acl, sse=dict(state.sse or {})), body_file=str(data["body_file"]))


@dataclass
class _Bucket:
    name: str
    region: str
    records: dict[str, _Record] = field(default_factory=dict)
    # Keys in code-point order (= UTF-8 byte order, what COS lists in), kept sorted on insert.
    sorted_keys: list[str] = field(default_factory=list)


def md5_etag(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


def _key_id(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class NoSuchBucketError(KeyError):
    pass


class Store:
    """Thread-safe bucket/object state. One lock guards the maps; bodies are immutable bytes."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        self._dir = Path(data_dir) if data_dir is not None else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._load()

    @property
    def data_dir(self) -> Path | None:
        return self._dir

    # --- buckets ---------------------------------------------------------------------------

    def create_bucket(self, name: str, region: str) -> None:
        if not cos_facts.BUCKET_RE.match(name):
            raise ValueError(f"bucket name {name!r} is not <name>-<appid> (lowercase, digits, '-')")
        if not cos_facts.REGION_RE.match(region):
            raise ValueError(f"region {region!r} is not a COS region name such as ap-guangzhou")
        with self._lock:
            existing = self._buckets.get(name)
            if existing is not None:
                if existing.region != region:
                    raise ValueError(f"bucket {name} already exists in {existing.region}, not {region}")
                return
            self._buckets[name] = _Bucket(name, region)
            if self._dir is not None:
                folder = self._dir / name
                (folder / "objects").mkdir(parents=True, exist_ok=True)
                _atomic_write(folder / "bucket.json", json.dumps({"region": region}).encode())

    def bucket_region(self, name: str) -> str | None:
        with self._lock:
            bucket = self._buckets.get(name)
            return bucket.region if bucket else None

    def buckets(self) -> dict[str, str]:
        with self._lock:
            return {name: b.region for name, b in self._buckets.items()}

    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise NoSuchBucketError(name)
        return bucket

    # --- objects ---------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        headers: Mapping[str, str],
        metadata: Mapping[str, str],
        tags: Mapping[str, str],
        storage_class: str,
        request_id: str,
        etag: str | None = None,
        sse: Mapping[str, str] | None = None,
        acl: Iterable[tuple[str, str]] | None = None,
    ) -> ObjectState:
        """Create or replace an object (a replacement drops the old tags and metadata)."""
        state = ObjectState(
            bucket=bucket,
            key=key,
            body=b"",
            headers=dict(headers),
            metadata=dict(metadata),
            tags=dict(tags),
            storage_class=storage_class,
            etag=etag or md5_etag(body),
            size=len(body),
            last_modified=time.time(),
            request_id=request_id,
            sse=dict(sse or {}),
            acl=None if acl is None else tuple(acl),
        )
        record = _Record(state)
        folder = self._objects_dir(bucket)
        if folder is None:
            record.body = body
        else:
            # The body goes to a fresh, unique file outside the lock; the sidecar commits it.
            record.body_file = f"{_key_id(key)}.{uuid.uuid4().hex}.bin"
            _atomic_write(folder / record.body_file, body)
        with self._lock:
            b = self._bucket(bucket)
            old = b.records.get(key)
            self._commit(b, record)
            if old is None:
                bisect.insort(b.sorted_keys, key)
        if old is not None and old.body_file and folder is not None:
            with contextlib.suppress(OSError):
                (folder / old.body_file).unlink()
        return self._state(record, body)

    def _objects_dir(self, bucket: str) -> Path | None:
        with self._lock:
            self._bucket(bucket)
        return None if self._dir is None else self._dir / bucket / "objects"

    def _commit(self, bucket: _Bucket, record: _Record) -> None:
        """Make `record` the object's state; on disk the sidecar write is the commit point."""
        if self._dir is not None:
            sidecar = self._dir / bucket.name / "objects" / f"{_key_id(record.key)}.json"
            _atomic_write(sidecar, json.dumps(record.to_json(), ensure_ascii=False).encode())
        bucket.records[record.key] = record

    def get(self, bucket: str, key: str, *, with_body: bool = True) -> ObjectState | None:
        """The object, or None. `with_body=False` skips reading the body (it reads as b"")."""
        with self._lock:
            record = self._bucket(bucket).records.get(key)
            if record is None:
                return None
            if not with_body:
                return self._state(record, b"")
            if record.body is not None:
                return self._state(record, record.body)
            # Open under the lock so a concurrent overwrite cannot unlink the file first.
            assert self._dir is not None
            fh = open(self._dir / bucket / "objects" / str(record.body_file), "rb")  # noqa: SIM115
        with fh:
            body = fh.read()
        return self._state(record, body)

    def delete(self, bucket: str, key: str) -> ObjectState | None:
        """Remove an object; answer what it was (without body), or None if there was none."""
        folder = self._objects_dir(bucket)
        with self._lock:
            b = self._bucket(bucket)
            record = b.records.pop(key, None)
            if record is None:
                return None
            index = bisect.bisect_left(b.sorted_keys, key)
            if index < len(b.sorted_keys) and b.sorted_keys[index] == key:
                del b.sorted_keys[index]
            if folder is not None:
                with contextlib.suppress(OSError):
                    (folder / f"{_key_id(key)}.json").unlink()
        if folder is not None and record.body_file:
            with contextlib.suppress(OSError):
                (folder / record.body_file).unlink()
        return self._state(record, b"")

    def set_tags(self, bucket: str, key: str, tags: Mapping[str, str]) -> bool:
        """Replace an object's whole tag set; False when the object does not exist."""
        with self._lock:
            b = self._bucket(bucket)
            record = b.records.get(key)
            if record is None:
                return False
            self._commit(b, replace(record, state=replace(record.state, tags=dict(tags))))
            return True

    def set_acl(self, bucket: str, key: str, acl: Iterable[tuple[str, str]] | None) -> bool:
        """Replace an object's own ACL (None: back to the bucket's); False when it does not exist."""
        with self._lock:
            b = self._bucket(bucket)
            record = b.records.get(key)
            if record is None:
                return False
            self._commit(b, replace(record, state=replace(record.state, acl=None if acl is None else tuple(acl))))
            return True

    def keys_from(self, bucket: str, start_after: str, prefix: str) -> Iterator[str]:
        """Keys greater than `start_after` that start with `prefix`, in order (a snapshot)."""
        with self._lock:
            keys = self._bucket(bucket).sorted_keys
            index = max(bisect.bisect_right(keys, start_after), bisect.bisect_left(keys, prefix))
            snapshot = keys[index:]
        for key in snapshot:
            if not key.startswith(prefix):
                return  # sorted: once past the prefix, no later key can match
            yield key

    def object_count(self, bucket: str) -> int:
        with self._lock:
            return len(self._bucket(bucket).records)

    @staticmethod
    def _state(record: _Record, body: bytes) -> ObjectState:
        """A copy the caller may change without touching the store."""
        state = record.state
        return replace(
            state,
            body=body,
            headers=dict(state.headers),
            metadata=dict(state.metadata),
            tags=dict(state.tags),
            sse=dict(state.sse),
        )

    # --- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        assert self._dir is not None
        for folder in sorted(p for p in self._dir.iterdir() if p.is_dir()):
            meta_file = folder / "bucket.json"
            if not meta_file.is_file():
                continue
            region = json.loads(meta_file.read_text())["region"]
            bucket = _Bucket(folder.name, region)
            objects = folder / "objects"
            objects.mkdir(exist_ok=True)
            referenced: set[str] = set()
            for sidecar in objects.glob("*.json"):
                record = _Record.from_json(folder.name, json.loads(sidecar.read_text(encoding="utf-8")))
                if not (objects / str(record.body_file)).is_file():
                    continue  # cannot happen with the write order above, but never serve a torn object
                referenced.add(str(record.body_file))
                bucket.records[record.key] = record
            # Bodies no sidecar names (a crash between body and sidecar) and temp files are garbage.
            for leftover in objects.iterdir():
                if leftover.name.endswith(".tmp") or (leftover.suffix == ".bin" and leftover.name not in referenced):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
            bucket.sorted_keys = sorted(bucket.records)
            self._buckets[bucket.name] = bucket
