"""Bucket/object state, in memory and on disk (atomic writes, recovery after a crash)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from cos_autotag_tools.emulator.store import Store, md5_etag

B, R = "photos-1250000000", "ap-guangzhou"


def put(store: Store, key: str, body: bytes = b"x", **kw: object) -> None:
    args: dict[str, object] = {"headers": {}, "metadata": {}, "tags": {}, "storage_class": "STANDARD"}
    args.update(kw)
    store.put(B, key, body, request_id="rid", **args)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    s = Store(tmp_path / "data" if request.param == "disk" else None)
    s.create_bucket(B, R)
    return s


def test_put_get_delete(store: Store) -> None:
    put(store, "a/b.jpg", b"hello", headers={"Content-Type": "image/jpeg"}, metadata={"x-cos-meta-k": "v"})
    state = store.get(B, "a/b.jpg")
    assert state is not None
    assert (state.body, state.size, state.etag) == (b"hello", 5, md5_etag(b"hello"))
    assert state.content_type == "image/jpeg" and state.metadata == {"x-cos-meta-k": "v"}
    head = store.get(B, "a/b.jpg", with_body=False)
    assert head is not None and head.body == b"" and head.size == 5
    assert store.delete(B, "a/b.jpg") is not None
    assert store.get(B, "a/b.jpg") is None
    assert store.delete(B, "a/b.jpg") is None


def test_overwrite_replaces_tags_and_metadata(store: Store) -> None:
    put(store, "k", b"1", metadata={"x-cos-meta-a": "1"}, tags={"t": "1"})
    put(store, "k", b"2")
    state = store.get(B, "k")
    assert state is not None and (state.body, state.metadata, state.tags) == (b"2", {}, {})


def test_set_tags_replaces_the_whole_set(store: Store) -> None:
    put(store, "k", tags={"a": "1", "b": "2"})
    assert store.set_tags(B, "k", {"c": "3"})
    state = store.get(B, "k")
    assert state is not None and state.tags == {"c": "3"}
    assert not store.set_tags(B, "missing", {"c": "3"})


def test_keys_from_is_sorted_and_filtered(store: Store) -> None:
    for key in ["b/2", "a/1", "b/1", "c", "b/10", "中"]:
        put(store, key)
    assert list(store.keys_from(B, "", "")) == ["a/1", "b/1", "b/10", "b/2", "c", "中"]
    assert list(store.keys_from(B, "", "b/")) == ["b/1", "b/10", "b/2"]
    assert list(store.keys_from(B, "b/1", "b/")) == ["b/10", "b/2"]
    assert list(store.keys_from(B, "b/2", "")) == ["c", "中"]


def test_unknown_bucket_and_bad_names() -> None:
    store = Store()
    with pytest.raises(KeyError):
        store.get("nope-1250000000", "k")
    with pytest.raises(ValueError, match="bucket name"):
        store.create_bucket("Bad_Name", R)
    with pytest.raises(ValueError, match="region"):
        store.create_bucket(B, "guangzhou")
    store.create_bucket(B, R)
    store.create_bucket(B, R)  # idempotent
    with pytest.raises(ValueError, match="already exists"):
        store.create_bucket(B, "ap-shanghai")


def test_disk_state_survives_a_restart(tmp_path: Path) -> None:
    first = Store(tmp_path)
    first.create_bucket(B, R)
    put(first, "keep.jpg", b"data", tags={"t": "v"}, metadata={"x-cos-meta-m": "中文"})
    put(first, "gone.jpg")
    first.delete(B, "gone.jpg")
    second = Store(tmp_path)
    state = second.get(B, "keep.jpg")
    assert state is not None
    assert (state.body, state.tags, state.metadata) == (b"data", {"t": "v"}, {"x-cos-meta-m": "中文"})
    assert second.get(B, "gone.jpg") is None
    assert list(second.keys_from(B, "", "")) == ["keep.jpg"]


def test_crash_leftovers_are_swept_and_never_served(tmp_path: Path) -> None:
    first = Store(tmp_path)
    first.create_bucket(B, R)
    put(first, "k", b"committed")
    objects = tmp_path / B / "objects"
    # A crash after the new body was written but before its sidecar, and one mid-way through a temp file.
    (objects / "deadbeef.0123.bin").write_bytes(b"orphan body")
    (objects / ".something.json.abc.tmp").write_bytes(b"{torn")
    second = Store(tmp_path)
    state = second.get(B, "k")
    assert state is not None and state.body == b"committed"
    names = sorted(p.name for p in objects.iterdir())
    assert len(names) == 2 and all(not n.endswith(".tmp") and "deadbeef" not in n for n in names)


def test_overwrite_on_disk_leaves_exactly_one_body(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_bucket(B, R)
    for i in range(5):
        put(store, "k", f"v{i}".encode())
    objects = tmp_path / B / "objects"
    bodies = list(objects.glob("*.bin"))
    sidecar = json.loads(next(objects.glob("*.json")).read_text())
    assert [b.name for b in bodies] == [sidecar["body_file"]]
    assert bodies[0].read_bytes() == b"v4"


def test_concurrent_puts_and_reads_stay_consistent(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                body = f"{n}-{i}".encode()
                put(store, f"k{n % 3}", body)
                state = store.get(B, f"k{n % 3}")
                assert state is not None and state.etag == md5_etag(state.body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.object_count(B) == 3


def test_a_crash_before_the_commit_keeps_the_previous_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    store.create_bucket(B, R)
    put(store, "k", b"old", tags={"v": "1"})
    real_replace = os.replace

    def crash_on_sidecar(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith(".json"):
            raise OSError("simulated crash before the sidecar is renamed into place")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_sidecar)
    with pytest.raises(OSError, match="simulated crash"):
        put(store, "k", b"new")
    monkeypatch.setattr(os, "replace", real_replace)
    reloaded = Store(tmp_path).get(B, "k")
    assert reloaded is not None and (reloaded.body, reloaded.tags) == (b"old", {"v": "1"})
    assert reloaded.etag == md5_etag(b"old")
    assert not [p for p in (tmp_path / B / "objects").iterdir() if p.name.endswith(".tmp")]
