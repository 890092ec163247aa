"""`gallery --dataset NAME` shows what the gallery by listing shows, without listing the bucket.

Through the page's API (`/api/photos`, paged as the page pages it: offset = what it shows) and
the real SDK against the emulator, which serves the dataset APIs. The emulator's request log
shows that the dataset gallery sends no ListObjects, GET tagging or HEAD to COS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cos_autotag.writeback import encoded_label_key, tag_marker_value
from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.gallery import GalleryServer, open_gallery
from tests.support.constants import REGION
from tests.support.emulator import env_for, started_emulator
from tests.support.sdk import make_client

from .test_gallery import BUCKET, DEMO_KEYS, gallery, ops, seed_demo, upload

pytestmark = pytest.mark.integration

QUERIES = ["", "建筑", "猫", '="猫"', "猫>=90", "建筑 AND NOT 火箭", "花 OR 咖啡", "NOT 建筑", "key:many/ 狗>=50",
           "key:photos/", "浓缩咖啡"]  # fmt: skip
EXTRA = 23  # more photos than a page of 7 holds, in both write-back modes


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with started_emulator(BUCKET) as emulator:
        yield emulator


@pytest.fixture
def bucket(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    client = seed_demo(emu)
    for i in range(EXTRA):
        mode = "tags" if i % 3 else "metadata"
        upload(client, f"many/{i:02}.jpg", b"\xff\xd8 not decoded here", mode, [("狗", 40 + 2 * i), ("建筑", 55)])
    strict = encoded_label_key("浓缩咖啡")
    assert strict is not None
    client.put_object(Bucket=BUCKET, Key="photos/strict.jpg", Body=b"\xff\xd8 x", ContentType="image/jpeg")
    client.put_object_tagging(Bucket=BUCKET, Key="photos/strict.jpg", Tagging={"TagSet": {"Tag": [
        {"Key": "autotag", "Value": tag_marker_value("t9", [strict])}, {"Key": strict, "Value": "77"}]}})  # fmt: skip
    for name, value in env_for(emu).items():
        monkeypatch.setenv(name, value)
    assert main(["dataset", "photos", "--bucket", BUCKET, "--region", REGION, "--qps", "1000"]) == 0
    yield emu


def dataset_gallery(emu: Emulator, *extra: str) -> GalleryServer:
    argv = ["--bucket", BUCKET, "--region", REGION, "--port", "0", "--poll", "0", "--dataset", "photos", *extra]
    return open_gallery(argv, env_for(emu))


def walk(server: GalleryServer, query: str, limit: int = 7) -> tuple[list[tuple[str, object]], dict[str, object]]:
    """Every photo the page would show for `query`, following its "more" button; and the first answer."""
    shown: list[tuple[str, object]] = []
    first: dict[str, object] | None = None
    while True:
        params = {"q": query, "offset": str(len(shown)), "limit": str(limit)}
        response = requests.get(server.url + "api/photos", params=params, timeout=30)
        assert response.status_code == 200, response.text
        assert len(response.content) < 1 << 20
        data = response.json()
        first = first or data
        shown += [(p["key"], p["labels"]) for p in data["photos"]]
        more = data["more"] if "more" in data else len(shown) < data["total"]
        if not more:
            assert data["total"] == len(shown)
            return sorted(shown), first


@pytest.mark.parametrize("mode", ["auto", "tags", "metadata"])
def test_the_dataset_gallery_shows_what_the_listing_gallery_shows_without_listing(
    bucket: Emulator, tmp_path: Path, mode: str
) -> None:
    listed = gallery(bucket, tmp_path / "index.sqlite", "--mode", mode, "--poll", "0")
    by_dataset = dataset_gallery(bucket, "--mode", mode)
    listed.start()
    by_dataset.start()
    try:
        for query in QUERIES:
            expected, listed_first = walk(listed, query)
            found, first = walk(by_dataset, query)
            assert found == expected, query
            if mode != "metadata":  # tag counts are `count` aggregations over the whole dataset
                assert first["labels"] == listed_first["labels"], query
        assert len(walk(listed, "")[0]) == len(DEMO_KEYS) + EXTRA + 1
        assert walk(by_dataset, "建筑")[0] != []
        # Metadata mode's counts come from the files fetched: after the walks, every file.
        requests.post(by_dataset.url + "api/refresh", headers={"X-Gallery": "1"}, timeout=30)
        walk(by_dataset, "", limit=500)
        cloud = dict(walk(by_dataset, "")[1]["labels"])
        assert cloud == dict(walk(listed, "")[1]["labels"]) or mode == "metadata"
        if mode == "metadata":
            assert cloud["狗"] == sum(1 for i in range(EXTRA) if i % 3 == 0)
        # A photo the dataset answered has a thumbnail; the request log shows what was sent to COS.
        assert requests.get(by_dataset.url + "thumb", params={"key": "photos/chelsea.png"}, timeout=30).ok
    finally:
        listed.stop()
        by_dataset.stop()


def test_the_dataset_gallery_sends_no_listing_or_label_read_to_cos(bucket: Emulator, tmp_path: Path) -> None:
    since = time.time()
    server = dataset_gallery(bucket)
    server.start()
    try:
        for query in QUERIES:
            walk(server, query, limit=5)
        assert requests.get(server.url + "thumb", params={"key": "photos/flower.jpg"}, timeout=30).ok
        assert requests.get(server.url + "thumb", params={"key": "notes/readme.txt"}, timeout=30).status_code == 404
    finally:
        server.stop()
    sent = ops(bucket, since)
    assert sent["ListObjects"] == 0 and sent["GetObjectTagging"] == 0 and sent["HeadObject"] == 0, sent
    assert sent["DatasetSimpleQuery"] > 0 and sent["ImageProcess"] == 1, sent


def test_the_page_resumes_where_it_stopped_instead_of_reading_from_the_start(bucket: Emulator, tmp_path: Path) -> None:
    client = make_client(bucket)
    for i in range(250):  # uploaded after the binding: indexed without CreateFileMetaIndex
        upload(client, f"bulk/{i:03}.jpg", b"\xff\xd8 y", "tags", [("猫", 60)])
    server = dataset_gallery(bucket)
    server.start()
    try:
        since = time.time()
        found, _ = walk(server, "key:bulk/ 猫", limit=50)
        assert len(found) == 250
        # 5 answers of 50 over 3 dataset pages of 100: each answer reads on from where the last
        # stopped (that page again, and the next where it ends): 7 requests. From the start: 11.
        assert ops(bucket, since)["DatasetSimpleQuery"] <= 7
    finally:
        server.stop()


def test_a_missing_dataset_is_a_clear_error(bucket: Emulator, tmp_path: Path) -> None:
    from cos_autotag_tools.command import UsageError

    with pytest.raises(UsageError, match="cos-autotag dataset NAME"):
        open_gallery(["--bucket", BUCKET, "--region", REGION, "--port", "0", "--dataset", "nosuch"], env_for(bucket))
