"""`cos-autotag gallery` against the emulator: its index, its API and thumbnails, and the page
in a real headless Chromium.

The demo photos are uploaded through the unmodified SDK and labeled as the function labels
them (Chinese labels, some in tags, some in metadata). The emulator's request log is the
ground truth for what the gallery read: one listing on a second open, and Cloud Infinite
renditions, never an original.
"""

from __future__ import annotations

import dataclasses
import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
import requests
from qcloud_cos import CosS3Client

from cos_autotag import cos_facts
from cos_autotag.label import Label
from cos_autotag.settings import Settings
from cos_autotag.writeback import LABELS_META, MARKER_META, encode_labels_meta
from cos_autotag_tools.backfill.listing import ListedObject
from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.gallery import GalleryServer, open_gallery
from cos_autotag_tools.gallery.index import LabelIndex
from cos_autotag_tools.gallery.server import THUMBNAIL_RULE, Gallery
from cos_autotag_tools.object_labels import ObjectLabels
from cos_autotag_tools.photos import list_photos
from tests.support.browser import headless_chromium
from tests.support.constants import APPID, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import env_for, started_emulator
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUCKET = f"demo-{APPID}"
# Labels as Cloud Infinite gives them, in Chinese; written as the function writes them.
DEMO_LABELS: dict[str, tuple[str, list[tuple[str, int]]]] = {
    "chelsea.png": ("tags", [("猫", 93), ("虎斑猫", 71)]),
    "china.jpg": ("metadata", [("宝塔", 77), ("建筑", 64)]),
    "coffee.png": ("tags", [("浓缩咖啡", 96), ("咖啡杯", 81)]),
    "flower.jpg": ("metadata", [("花", 88), ("雏菊", 62)]),
    "rocket.jpg": ("tags", [("火箭", 91), ("建筑", 40)]),
}
DEMO_KEYS = sorted(f"photos/{name}" for name in DEMO_LABELS)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with started_emulator(BUCKET) as emulator:
        yield emulator


def upload(client: CosS3Client, key: str, body: bytes, mode: str, labels: list[tuple[str, int]] | None) -> None:
    content_type = "image/png" if key.endswith(".png") else "image/jpeg"
    metadata = {"x-cos-meta-album": "demo"}
    if mode == "metadata" and labels is not None:
        metadata[MARKER_META] = "v1:token"
        metadata[LABELS_META] = encode_labels_meta([Label(n, c) for n, c in labels])
    client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type, Metadata=metadata)
    tags = [{"Key": "owner", "Value": "demo-user"}]
    if mode == "tags" and labels is not None:
        tags += [{"Key": "autotag", "Value": "v1:token"}]
        tags += [{"Key": f"autotag:{n}", "Value": str(c)} for n, c in labels]
    client.put_object_tagging(Bucket=BUCKET, Key=key, Tagging={"TagSet": {"Tag": tags}})


def seed_demo(emu: Emulator) -> CosS3Client:
    client = make_client(emu)
    for photo in list_photos():
        mode, labels = DEMO_LABELS[photo.name]
        upload(client, f"photos/{photo.name}", photo.read_bytes(), mode, labels)
    client.put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"not a photo", ContentType="text/plain")
    return client


def ops(emu: Emulator, since: float) -> Counter[str]:
    return Counter(r.op for r in emu.requests if r.timestamp >= since)


def gallery(emu: Emulator, index: Path, *extra: str) -> GalleryServer:
    argv = ["--bucket", BUCKET, "--region", REGION, "--port", "0", "--index", str(index), "--no-progress", *extra]
    return open_gallery(argv, env_for(emu))


# --- the index ----------------------------------------------------------------------------


def test_a_second_open_costs_one_listing_and_reads_only_what_changed(emu: Emulator, tmp_path: Path) -> None:
    client = seed_demo(emu)
    index = tmp_path / "index.sqlite"

    since = time.time()
    first = gallery(emu, index)
    first.server_close()
    # Tags first; the metadata-mode photos cost a HEAD as well. The text file is not read.
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 5, "HeadObject": 2})

    since = time.time()
    second = gallery(emu, index)
    second.server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1})
    assert {p["key"]: p["labels"] for p in payload(second)["photos"]} == {
        f"photos/{name}": [list(label) for label in labels] for name, (_, labels) in DEMO_LABELS.items()
    }

    # A photo replaced (new ETag), one deleted, one added: only the new and the replaced are read.
    upload(client, "photos/coffee.png", (ROOT / "tools/cos_autotag_tools/photos/rocket.jpg").read_bytes(), "tags",
           [("火箭", 99)])  # fmt: skip
    client.delete_object(Bucket=BUCKET, Key="photos/flower.jpg")
    upload(client, "photos/new.jpg", (ROOT / "tools/cos_autotag_tools/photos/china.jpg").read_bytes(), "tags",
           [("宝塔", 80)])  # fmt: skip
    since = time.time()
    third = gallery(emu, index)
    third.server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 2})
    photos = {p["key"]: p["labels"] for p in payload(third)["photos"]}
    assert sorted(photos) == ["photos/chelsea.png", "photos/china.jpg", "photos/coffee.png", "photos/new.jpg",
                              "photos/rocket.jpg"]  # fmt: skip
    assert photos["photos/coffee.png"] == [["火箭", 99]]


def test_a_photo_without_labels_is_read_again_until_it_has_them(emu: Emulator, tmp_path: Path) -> None:
    # Labels arrive after the upload and keep the ETag: an unlabeled photo may be labeled by now.
    client = make_client(emu)
    body = (ROOT / "tools/cos_autotag_tools/photos/chelsea.png").read_bytes()
    upload(client, "photos/chelsea.png", body, "tags", None)
    index = tmp_path / "index.sqlite"
    since = time.time()
    gallery(emu, index).server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 1, "HeadObject": 1})
    client.put_object_tagging(
        Bucket=BUCKET,
        Key="photos/chelsea.png",
        Tagging={"TagSet": {"Tag": [{"Key": "autotag", "Value": "v1:x"}, {"Key": "autotag:猫", "Value": "90"}]}},
    )
    since = time.time()
    server = gallery(emu, index)
    server.server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 1})
    assert payload(server)["photos"][0]["labels"] == [["猫", 90]]
    since = time.time()
    gallery(emu, index).server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1})
    # --reindex reads everything again, e.g. after a relabeling.
    since = time.time()
    gallery(emu, index, "--reindex").server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 1})


def payload(server: GalleryServer) -> dict[str, object]:
    import json

    data = json.loads(server.gallery.payload)
    assert isinstance(data, dict)
    return data


# --- the API and the thumbnails -------------------------------------------------------------


@pytest.fixture
def served(emu: Emulator, tmp_path: Path) -> Iterator[GalleryServer]:
    seed_demo(emu)
    server = gallery(emu, tmp_path / "index.sqlite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_thumbnails_are_cloud_infinite_renditions_and_no_original_is_read(emu: Emulator, served: GalleryServer) -> None:
    from PIL import Image

    since = time.time()
    for key in DEMO_KEYS:
        response = requests.get(served.url + "thumb", params={"key": key}, timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == "JPEG" and max(image.size) == 320, image.size
    seen = [r for r in emu.requests if r.timestamp >= since]
    assert Counter(r.op for r in seen) == Counter({"ImageProcess": len(DEMO_KEYS)})
    assert all(r.status == 200 for r in seen)
    assert THUMBNAIL_RULE.startswith("imageMogr2/thumbnail/")


def index_of(folder: Path, *keys: str) -> LabelIndex:
    """An index holding `keys` as labeled photos."""
    index = LabelIndex(folder / "small.sqlite", BUCKET, REGION, check_same_thread=False)
    for key in keys:
        index.put(ListedObject(key, 1, etag='"e"'), ObjectLabels(key, "tags", "v1"))
    index.commit()
    return index


def test_against_cos_a_thumbnail_redirects_to_a_short_lived_signed_rendition(
    emu: Emulator, served: GalleryServer, tmp_path: Path
) -> None:
    from PIL import Image

    # The same gallery with no AUTOTAG_COS_ENDPOINT, as against COS: the browser goes to the bucket.
    bucket = dataclasses.replace(served.gallery.bucket, settings=Settings())
    against_cos = Gallery(bucket, "", index_of(tmp_path, "photos/coffee.png"))
    status, headers, body = against_cos.thumbnail("photos/coffee.png")
    assert status == 302 and body == b"" and headers["Cache-Control"] == "no-store"
    location = urlsplit(headers["Location"])
    host = cos_facts.cos_host(BUCKET, REGION)
    assert (location.scheme, location.netloc, location.path) == ("https", host, "/photos/coffee.png")
    assert location.query.endswith("&" + THUMBNAIL_RULE)
    start, end = dict(parse_qsl(location.query))["q-sign-time"].split(";")
    assert 0 < int(end) - int(start) <= 3600  # short-lived
    assert f"img-src 'self' https://{host};" in against_cos.csp()
    # That URL, sent to the bucket's host (here the emulator), answers the rendition.
    response = requests.get(
        urlunsplit(("http", f"127.0.0.1:{emu.port}", location.path, location.query, "")),
        headers={"Host": host},
        timeout=30,
    )
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and max(image.size) == 320


def test_the_server_signs_only_listed_photos_and_answers_only_this_machine(
    emu: Emulator, served: GalleryServer
) -> None:
    since = time.time()
    for key in ("notes/readme.txt", "photos/missing.jpg", ""):
        response = requests.get(served.url + "thumb", params={"key": key}, timeout=10)
        assert response.status_code == 404
    assert ops(emu, since) == Counter()
    rebound = requests.get(served.url, headers={"Host": f"evil.example:{served.port}"}, timeout=10)
    assert rebound.status_code == 421


def test_the_api_is_utf8_json_with_labels_and_counts(served: GalleryServer) -> None:
    response = requests.get(served.url + "api/photos", timeout=10)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "浓缩咖啡".encode() in response.content
    data = response.json()
    assert [p["key"] for p in data["photos"]] == DEMO_KEYS
    counts = dict(data["labels"])
    assert counts["建筑"] == 2 and counts["猫"] == 1 and len(counts) == 9
    assert data["labels"][0] == ["建筑", 2]
    page = requests.get(served.url, timeout=10)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


# --- the page in a real browser --------------------------------------------------------------


def spawn_gallery(emu: Emulator | None, index: Path) -> tuple[subprocess.Popen[str], str]:
    """`cos-autotag gallery` as a user runs it: a process of its own, serving until stopped.
    Without an emulator: `gallery --demo`, which brings its own."""
    env = {**os.environ, **(env_for(emu) if emu is not None else {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tools"), env.get("PYTHONPATH", "")])
    bucket = ["--bucket", BUCKET, "--region", REGION] if emu is not None else ["--demo"]
    argv = ["gallery", *bucket, "--port", "0", "--index", str(index)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cos_autotag_tools.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    try:
        line = lines.get(timeout=180)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"the gallery did not start: {proc.communicate()[1]}") from None
    assert line.startswith("Gallery: http://127.0.0.1:"), line
    return proc, line.split()[1]


@pytest.fixture
def gallery_process(emu: Emulator, tmp_path: Path) -> Iterator[str]:
    proc, url = spawn_gallery(emu, tmp_path / "index.sqlite")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(driver: object, condition: str, timeout_s: float = 30) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script(condition))  # type: ignore[attr-defined]


def visible_keys(driver: object) -> list[str]:
    # The server answers the query: wait until no request or typed query is outstanding.
    wait_for(driver, "return document.body.dataset.pending === '0'")
    keys = driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('figure.photo')].filter(f => !f.hidden).map(f => f.dataset.key)"
    )
    return sorted(keys)


# Kept after the run (git-ignored), so a person can look at what the browser showed.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"


def test_the_gallery_in_headless_chromium(emu: Emulator, request: pytest.FixtureRequest) -> None:
    seed_demo(emu)
    SCREENSHOTS.mkdir(exist_ok=True)
    with headless_chromium() as driver:
        url = request.getfixturevalue("gallery_process")
        since = time.time()
        driver.get(url)
        wait_for(driver, "return document.body.dataset.ready === 'true'")

        # Every demo photo, with its labels in Chinese and their confidence.
        assert visible_keys(driver) == DEMO_KEYS
        cards = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('figure.photo')].map(f => [f.dataset.key, "
            "[...f.querySelectorAll('button.label')].map(b => [b.dataset.label, b.querySelector('.n').textContent])]))"
        )
        assert cards == {
            f"photos/{name}": [[n, str(c)] for n, c in labels] for name, (_, labels) in DEMO_LABELS.items()
        }
        assert "浓缩咖啡" in driver.find_element("id", "grid").text

        # The thumbnails load, at the rendition's size, not the original's.
        wait_for(driver, "return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        sizes = driver.execute_script("return [...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
        assert len(sizes) == 5 and all(max(size) == 320 for size in sizes), sizes

        # The label cloud counts photos; clicking a label filters the grid, clicking again clears it.
        cloud = {b.get_attribute("data-label"): b for b in driver.find_elements("css selector", "#cloud button")}
        assert cloud["建筑"].text.split() == ["建筑", "2"]
        cloud["建筑"].click()
        assert visible_keys(driver) == ["photos/china.jpg", "photos/rocket.jpg"]
        assert "2 of 5 photos" in driver.find_element("id", "status").text
        assert "label=%E5%BB%BA%E7%AD%91" in driver.current_url  # the filter is in the URL
        cloud["猫"].click()
        assert visible_keys(driver) == ["photos/chelsea.png"]
        driver.save_screenshot(str(SCREENSHOTS / "gallery-filtered.png"))
        cloud["猫"].click()
        assert visible_keys(driver) == DEMO_KEYS
        # A label on a card filters too.
        driver.find_element("css selector", "figure[data-key='photos/flower.jpg'] button.label").click()
        assert visible_keys(driver) == ["photos/flower.jpg"]
        driver.find_element("css selector", "#status button").click()
        assert visible_keys(driver) == DEMO_KEYS

        # The search box matches labels and keys.
        search = driver.find_element("id", "search")
        search.send_keys("火箭")
        assert visible_keys(driver) == ["photos/rocket.jpg"]
        search.clear()
        search.send_keys("COFFEE")
        assert visible_keys(driver) == ["photos/coffee.png"]
        search.clear()
        search.send_keys("咖啡")
        assert visible_keys(driver) == ["photos/coffee.png"]
        search.clear()
        search.send_keys(" ")
        search.clear()
        driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
        assert visible_keys(driver) == DEMO_KEYS

        screenshot = SCREENSHOTS / "gallery.png"
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"gallery screenshots: {screenshot} and {SCREENSHOTS / 'gallery-filtered.png'}")

    seen = [r for r in emu.requests if r.timestamp >= since]
    assert Counter(r.op for r in seen)["ImageProcess"] >= 5
    assert not [r for r in seen if r.op == "GetObject"], "an original was downloaded"


def test_keys_and_labels_are_shown_as_text_never_run(emu: Emulator, tmp_path: Path) -> None:
    client = make_client(emu)
    body = (ROOT / "tools/cos_autotag_tools/photos/coffee.png").read_bytes()
    hostile_key = 'photos/<img src=x onerror="window.__xss=1">.png'
    hostile_label = "<script>window.__xss=2</script>"
    upload(client, hostile_key, body, "metadata", [(hostile_label, 90), ("咖啡", 80)])
    with headless_chromium() as driver:
        proc, url = spawn_gallery(emu, tmp_path / "index.sqlite")
        try:
            driver.get(url)
            wait_for(driver, "return document.body.dataset.ready === 'true'")
            wait_for(driver, "return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert driver.execute_script("return window.__xss === undefined")
            assert driver.execute_script("return document.querySelectorAll('script').length") == 1
            card = driver.find_element("css selector", "figure.photo")
            assert card.get_attribute("data-key") == hostile_key
            assert hostile_key in card.text and hostile_label in card.text
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_gallery_demo_shows_the_demo_photos_as_the_function_labeled_them(tmp_path: Path) -> None:
    # The command `make demo` points to: its own emulator, the real handler, the demo's photos.
    proc, url = spawn_gallery(None, tmp_path / "index.sqlite")
    try:
        data = requests.get(url + "api/photos", timeout=30).json()
        assert data["bucket"] == "demo-1250000000"
        assert [p["key"] for p in data["photos"]] == DEMO_KEYS
        assert all(p["mode"] == "tags" and p["labels"] for p in data["photos"]), data["photos"]
        assert data["labels"] and data["index"]["failed"] == []
        thumb = requests.get(url + "thumb", params={"key": "photos/coffee.png"}, timeout=30)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_unreachable_endpoint_is_a_502_that_shows_no_signature_or_token(tmp_path: Path) -> None:
    from cos_autotag_tools.gateway import ToolGateway
    from cos_autotag_tools.object_labels import Bucket
    from tests.support.constants import free_port

    token = "session-token-that-must-not-show"
    settings = Settings(cos_endpoint=("http", "127.0.0.1", free_port()))
    env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY, "TENCENTCLOUD_SESSIONTOKEN": token}
    bucket = Bucket(BUCKET, REGION, settings, ToolGateway(settings, env))
    status, _, body = Gallery(bucket, "", index_of(tmp_path, "a.jpg")).thumbnail("a.jpg")
    assert status == 502 and b"unreachable" in body
    assert token.encode() not in body and b"q-signature" not in body and SECRET_KEY.encode() not in body


def test_a_value_the_index_cannot_read_neither_stops_nor_hides_the_scan(emu: Emulator, tmp_path: Path) -> None:
    client = make_client(emu)
    body = (ROOT / "tools/cos_autotag_tools/photos/coffee.png").read_bytes()
    upload(client, "photos/a.png", body, "tags", [("猫", 90)])
    client.put_object(Bucket=BUCKET, Key="photos/b.png", Body=body, ContentType="image/png")
    client.put_object_tagging(
        Bucket=BUCKET,
        Key="photos/b.png",
        Tagging={"TagSet": {"Tag": [{"Key": "autotag", "Value": "v1:b"}, {"Key": "autotag:猫", "Value": "²"}]}},
    )
    server = gallery(emu, tmp_path / "index.sqlite")
    server.server_close()
    assert {p["key"]: p["labels"] for p in payload(server)["photos"]} == {
        "photos/a.png": [["猫", 90]],
        "photos/b.png": [],
    }


# --- a gallery that stays true ------------------------------------------------------------------


def test_new_uploads_appear_and_a_refresh_sees_an_untag_while_serving(emu: Emulator, tmp_path: Path) -> None:
    client = seed_demo(emu)
    server = gallery(emu, tmp_path / "index.sqlite", "--poll", "0.2")
    server.start()
    try:
        assert requests.get(server.url + "api/photos", timeout=10).json()["total"] == 5
        body = (ROOT / "tools/cos_autotag_tools/photos/coffee.png").read_bytes()
        upload(client, "photos/late.png", body, "tags", [("猫", 77)])
        deadline = time.time() + 20
        while requests.get(server.url + "api/photos", timeout=10).json()["total"] != 6:
            assert time.time() < deadline, "the new upload never appeared"
            time.sleep(0.1)
        # The tags go (as `untag` removes them): ETag and Last-Modified stay, a refresh re-reads.
        client.put_object_tagging(
            Bucket=BUCKET, Key="photos/chelsea.png", Tagging={"TagSet": {"Tag": [{"Key": "owner", "Value": "x"}]}}
        )
        refused = requests.post(server.url + "api/refresh", timeout=30)
        assert refused.status_code == 403
        response = requests.post(server.url + "api/refresh", headers={"X-Gallery": "1"}, timeout=30)
        assert response.status_code == 200
        data = requests.get(server.url + "api/photos", params={"q": "猫"}, timeout=10).json()
        assert [p["key"] for p in data["photos"]] == ["photos/late.png"]
        assert data["labels_as_of"] >= time.time() - 30
    finally:
        server.stop()


def test_the_api_pages_the_query_the_page_sends(emu: Emulator, served: GalleryServer) -> None:
    def get(**params: str) -> dict[str, object]:
        response = requests.get(served.url + "api/photos", params=params, timeout=10)
        assert response.status_code == 200, response.text
        data = response.json()
        assert isinstance(data, dict)
        return data

    assert [p["key"] for p in get(q="建筑 AND NOT 火箭")["photos"]] == ["photos/china.jpg"]  # type: ignore[attr-defined,index]
    assert get(q="建筑>=50")["total"] == 1
    assert get(q="key:photos/c")["total"] == 3
    first, second = get(limit="2"), get(limit="2", offset="2")
    assert first["total"] == 5 and len(first["photos"]) == 2  # type: ignore[arg-type]
    assert [p["key"] for p in first["photos"] + second["photos"]] == DEMO_KEYS[:4]  # type: ignore[attr-defined,index,operator]
    bad = requests.get(served.url + "api/photos", params={"q": "(猫"}, timeout=10)
    assert bad.status_code == 400 and "missing )" in bad.json()["error"]


def test_thumbnails_refuse_other_sites_and_there_is_a_favicon(emu: Emulator, served: GalleryServer) -> None:
    thumb = served.url + "thumb"
    since = time.time()
    for site in ("cross-site", "same-site"):
        response = requests.get(thumb, params={"key": DEMO_KEYS[0]}, headers={"Sec-Fetch-Site": site}, timeout=10)
        assert response.status_code == 403
    assert ops(emu, since) == Counter()
    same = requests.get(thumb, params={"key": DEMO_KEYS[0]}, headers={"Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert same.status_code == 200
    icon = requests.get(served.url + "favicon.ico", timeout=10)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/svg+xml"


def test_a_labeled_photo_without_an_extension_is_shown(emu: Emulator, tmp_path: Path) -> None:
    client = make_client(emu)
    body = (ROOT / "tools/cos_autotag_tools/photos/coffee.png").read_bytes()
    upload(client, "photos/noext", body, "tags", [("咖啡杯", 81)])
    upload(client, "photos/unlabeled-noext", body, "tags", None)
    server = gallery(emu, tmp_path / "index.sqlite")
    server.server_close()
    assert [p["key"] for p in payload(server)["photos"]] == ["photos/noext"]  # type: ignore[attr-defined,index]


def test_the_index_is_private_and_one_per_endpoint_bucket_region_and_mode(emu: Emulator, tmp_path: Path) -> None:
    seed_demo(emu)
    env = {**env_for(emu), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    argv = ["--bucket", BUCKET, "--region", REGION, "--port", "0", "--no-progress", "--poll", "0"]
    open_gallery(argv, env).server_close()
    open_gallery([*argv, "--mode", "tags"], env).server_close()
    open_gallery(argv, {**env, "AUTOTAG_COS_ENDPOINT": emu.endpoint.replace("127.0.0.1", "localhost")}).server_close()
    folder = tmp_path / "cache" / "cos-autotag"
    files = sorted(folder.iterdir())
    assert len(files) == 3 and all(f.name.startswith(BUCKET + "-") for f in files)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)


def test_untag_on_this_machine_marks_what_it_touched_stale_in_the_gallery_index(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cos_autotag_tools.cli import main

    seed_demo(emu)
    env = {**env_for(emu), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    argv = ["--bucket", BUCKET, "--region", REGION, "--port", "0", "--no-progress", "--poll", "0"]
    open_gallery(argv, env).server_close()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["untag", "--bucket", BUCKET, "--region", REGION, "--prefix", "photos/c", "--quiet"]) == 0
    since = time.time()
    server = open_gallery(argv, env)
    server.server_close()
    # Only what untag went over is read again; its labels are gone from the page.
    assert ops(emu, since)["GetObjectTagging"] == 3
    labels = {p["key"]: p["labels"] for p in payload(server)["photos"]}  # type: ignore[attr-defined,index]
    assert labels["photos/chelsea.png"] == [] and labels["photos/rocket.jpg"] == [["火箭", 91], ["建筑", 40]]


def test_the_sync_merges_the_listing_with_the_index_a_chunk_at_a_time(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sync walks the listing and the index side by side, a few rows at a time (memory flat
    # whatever the bucket's size): with chunks of 2, new keys read mid-walk and keys gone between
    # chunks must neither be dropped nor kept.
    from cos_autotag_tools.gallery import index as index_module

    monkeypatch.setattr(index_module, "ROWS_CHUNK", 2)
    client = make_client(emu)
    body = (ROOT / "tools/cos_autotag_tools/photos/chelsea.png").read_bytes()
    for i in range(0, 12, 2):
        upload(client, f"photos/{i:02d}.png", body, "tags", [("猫", 50 + i)])
    path = tmp_path / "index.sqlite"
    gallery(emu, path).server_close()
    for i in range(1, 12, 4):  # new keys between the indexed ones
        upload(client, f"photos/{i:02d}.png", body, "tags", [("狗", 50 + i)])
    for i in (0, 6, 10):
        client.delete_object(Bucket=BUCKET, Key=f"photos/{i:02d}.png")
    since = time.time()
    server = gallery(emu, path)
    server.server_close()
    assert ops(emu, since) == Counter({"ListObjects": 1, "GetObjectTagging": 3})
    expected = sorted([f"photos/{i:02d}.png" for i in (2, 4, 8)] + [f"photos/{i:02d}.png" for i in (1, 5, 9)])
    assert [p.key for p in server.gallery.index.photos()] == expected
    assert server.gallery.stats is not None and server.gallery.stats.removed == 3
