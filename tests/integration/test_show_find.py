"""`cos-autotag show` and `find` through the CLI entry point, over the real SDK against the emulator.

Objects are uploaded through the unmodified SDK and labeled as the function labels them, in
both modes, with Chinese labels; the user's own tags and metadata sit beside them and must
never be taken for labels.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from qcloud_cos import CosS3Client

from cos_autotag.label import Label
from cos_autotag.writeback import LABELS_META, MARKER_META, encode_labels_meta
from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import APPID, REGION
from tests.support.emulator import started_emulator, use_emulator_env
from tests.support.images import image_bytes
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

BUCKET = f"cafe-{APPID}"
# The user's tags: none is a label, though some look close.
USER_TAGS = {"owner": "alice", "autotagger": "bob", "autotag-note": "keep", "浓缩咖啡": "yes"}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with started_emulator(BUCKET) as emulator:
        use_emulator_env(monkeypatch, emulator)
        yield emulator


def put_tagged(client: CosS3Client, key: str, tags: dict[str, str], seed: int = 0) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=image_bytes(seed=seed), ContentType="image/jpeg")
    client.put_object_tagging(
        Bucket=BUCKET, Key=key, Tagging={"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}}
    )


def put_with_metadata(client: CosS3Client, key: str, labels: list[tuple[str, int]] | None, seed: int = 0) -> None:
    metadata = {"x-cos-meta-album": "summer"}
    if labels is not None:
        metadata[MARKER_META] = "v1:meta-token"
        metadata[LABELS_META] = encode_labels_meta([Label(n, c) for n, c in labels])
    client.put_object(Bucket=BUCKET, Key=key, Body=image_bytes(seed=seed), ContentType="image/jpeg", Metadata=metadata)


@pytest.fixture
def cafe(emu: Emulator) -> Emulator:
    client = make_client(emu)
    put_tagged(
        client, "cafe/espresso.jpg", {**USER_TAGS, "autotag": "v1:t1", "autotag:浓缩咖啡": "96", "autotag:咖啡杯": "81"}
    )
    put_with_metadata(client, "cafe/latte.jpg", [("拿铁", 90), ("浓缩咖啡", 60)], seed=1)
    put_tagged(client, "cafe/tea.jpg", {"autotag": "v1:t3", "autotag:茶": "88", "浓缩咖啡": "no"}, seed=2)
    put_with_metadata(client, "cafe/unlabeled.jpg", None, seed=3)
    put_tagged(client, "other/espresso2.jpg", {"autotag": "v1:t5", "autotag:浓缩咖啡": "75"}, seed=4)
    return emu


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def where() -> tuple[str, ...]:
    return ("--bucket", BUCKET, "--region", REGION)


# --- show ---------------------------------------------------------------------------------


def test_show_prints_chinese_labels_and_the_marker_from_tags_and_never_a_user_tag(
    cafe: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "show", "cafe/espresso.jpg", *where())
    assert code == 0, err
    assert "object tags" in out and "v1:t1" in out
    lines = out.splitlines()
    assert any(line.split() == ["浓缩咖啡", "96"] for line in lines), out
    assert any(line.split() == ["咖啡杯", "81"] for line in lines), out
    for user_value in ("alice", "bob", "keep", "yes", "autotagger", "autotag-note"):
        assert user_value not in out

    code, out, _ = cli(capsys, "show", "cafe/espresso.jpg", *where(), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["mode"] == "tags" and shown["marker"] == "v1:t1"
    assert shown["labels"] == [{"name": "浓缩咖啡", "confidence": 96}, {"name": "咖啡杯", "confidence": 81}]


def test_show_reads_metadata_mode_labels_in_auto_and_metadata_mode(
    cafe: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    for mode in ("auto", "metadata"):
        code, out, _ = cli(capsys, "show", "cafe/latte.jpg", *where(), "--mode", mode, "--json")
        assert code == 0
        shown = json.loads(out)
        assert shown["mode"] == "metadata" and shown["marker"] == "v1:meta-token"
        assert shown["labels"] == [{"name": "拿铁", "confidence": 90}, {"name": "浓缩咖啡", "confidence": 60}]
    # Asked for tags only, the same object has none, and the user's metadata is not a label.
    code, out, _ = cli(capsys, "show", "cafe/latte.jpg", *where(), "--mode", "tags")
    assert code == 0 and "not labeled" in out and "summer" not in out
    code, out, _ = cli(capsys, "show", "cafe/unlabeled.jpg", *where())
    assert code == 0 and "not labeled" in out


def test_show_in_auto_mode_reads_the_metadata_only_when_the_tags_hold_no_label(cafe: Emulator) -> None:
    since = time.time()
    assert main(["show", "cafe/espresso.jpg", *where()]) == 0
    assert Counter(r.op for r in cafe.requests if r.timestamp >= since) == Counter({"GetObjectTagging": 1})
    since = time.time()
    assert main(["show", "cafe/latte.jpg", *where()]) == 0
    assert Counter(r.op for r in cafe.requests if r.timestamp >= since) == Counter(
        {"GetObjectTagging": 1, "HeadObject": 1}
    )


def test_show_says_what_to_do_about_a_missing_key_credentials_or_bucket(
    cafe: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "show", "cafe/Espresso.jpg", *where())
    assert code == 1 and "no object 'cafe/Espresso.jpg'" in err and "case-sensitive" in err
    code, _, err = cli(capsys, "show", "x.jpg", "--bucket", f"nope-{APPID}", "--region", REGION)
    assert code == 1 and "NoSuchBucket" in err and "check --bucket and --region" in err
    code, _, err = cli(capsys, "show", "x.jpg", "--bucket", "Not_A_Bucket", "--region", REGION)
    assert code == 2 and "<name>-<appid>" in err
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", "wrong-key")
    code, _, err = cli(capsys, "show", "cafe/espresso.jpg", *where())
    assert code == 1 and "SignatureDoesNotMatch" in err and "TENCENTCLOUD_SECRETID/SECRETKEY" in err
    assert "wrong-key" not in err
    monkeypatch.delenv("TENCENTCLOUD_SECRETKEY")
    code, _, err = cli(capsys, "show", "cafe/espresso.jpg", *where())
    assert code == 2 and "TENCENTCLOUD_SECRETKEY" in err


# --- find ---------------------------------------------------------------------------------


def test_find_lists_the_objects_carrying_a_chinese_label_in_both_modes(
    cafe: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0, err
    # tea.jpg has a user tag named 浓缩咖啡: not a label.
    assert out.splitlines() == ["cafe/espresso.jpg\t96", "cafe/latte.jpg\t60", "other/espresso2.jpg\t75"]
    assert "3 of 5 objects" in err


def test_find_filters_by_prefix_confidence_and_mode(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where(), "--prefix", "cafe/", "--min-confidence", "70")
    assert code == 0 and out.splitlines() == ["cafe/espresso.jpg\t96"]
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where(), "--prefix", "cafe/", "--mode", "metadata")
    assert code == 0 and out.splitlines() == ["cafe/latte.jpg\t60"]
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where(), "--prefix", "cafe/", "--mode", "tags")
    assert code == 0 and out.splitlines() == ["cafe/espresso.jpg\t96"]


def test_find_json_carries_each_match_with_its_labels(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "find", "拿铁", *where(), "--json")
    assert code == 0
    found = json.loads(out)
    assert found["scanned"] == 5 and found["failed"] == []
    assert [m["key"] for m in found["matches"]] == ["cafe/latte.jpg"]
    match = found["matches"][0]
    assert match["mode"] == "metadata" and match["confidence"] == 90
    assert match["labels"] == [{"name": "拿铁", "confidence": 90}, {"name": "浓缩咖啡", "confidence": 60}]
    assert "拿铁" in out  # UTF-8, not \\u escapes


def test_find_names_the_labels_there_when_none_matches(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "find", "狗", *where())
    assert code == 0 and out == ""
    assert "0 of 5 objects" in err and "浓缩咖啡 (3)" in err


def test_find_reads_every_listed_object_once_in_parallel_and_prints_in_key_order(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(emu)
    keys = [f"many/{i:03d}.jpg" for i in range(60)]
    for i, key in enumerate(keys):
        labels = {"autotag": f"v1:{i}", "autotag:猫": str(50 + i % 50)} if i % 3 == 0 else {"owner": "alice"}
        put_tagged(client, key, labels, seed=i)
    since = time.time()
    code, out, _ = cli(capsys, "find", "猫", *where(), "--concurrency", "8", "--mode", "tags")
    assert code == 0
    assert out.splitlines() == [f"{key}\t{50 + i % 50}" for i, key in enumerate(keys) if i % 3 == 0]
    seen = [r for r in emu.requests if r.timestamp >= since]
    assert Counter(r.op for r in seen) == Counter({"ListObjects": 1, "GetObjectTagging": len(keys)})
    assert Counter(r.key for r in seen if r.op == "GetObjectTagging") == Counter(keys)


def test_find_refuses_bad_input_with_what_to_do(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "find", "猫", *where(), "--min-confidence", "101")
    assert code == 2 and "--min-confidence must be 0 to 100" in err
    code, _, err = cli(capsys, "find", "猫", *where(), "--concurrency", "0")
    assert code == 2 and "--concurrency" in err
    code, _, err = cli(capsys, "find", " ", *where())
    assert code == 2 and "LABEL is empty" in err


# --- hostile values ---------------------------------------------------------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


@pytest.fixture
def hostile(emu: Emulator) -> Emulator:
    client = make_client(emu)
    put_tagged(client, "h/a.jpg", {"autotag": "v1:a", "autotag:猫": "²", "autotag:狗": "70"})
    put_tagged(client, "h/b.jpg", {"autotag": "v1:b", "autotag:猫": "9" * 200, "autotag:鸟": "high"}, seed=1)
    put_with_metadata(client, "h/c.jpg", [(ESCAPES, 90), ("猫", 80)], seed=2)
    put_tagged(client, "h/d.jpg", {"autotag": "v1:d", "autotag:猫": "88"}, seed=3)
    return emu


def test_show_survives_hostile_values_and_prints_no_escape_sequence(
    hostile: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "show", "h/a.jpg", *where())
    assert code == 0, err
    assert any(line.split() == ["狗", "70"] for line in out.splitlines()), out
    assert "unreadable" in out and "'²'" in out
    code, out, err = cli(capsys, "show", "h/c.jpg", *where())
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "pwned" not in out
    assert any(line.split() == ["\ufffd", "90"] for line in out.splitlines()), out
    code, out, _ = cli(capsys, "show", "h/c.jpg", *where(), "--json")
    assert code == 0 and "\x1b" not in out and json.loads(out)["labels"][0]["name"] == ESCAPES


def test_find_scans_on_past_values_it_cannot_read(hostile: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "find", "猫", *where())
    assert code == 0, err
    assert out.splitlines() == ["h/c.jpg\t80", "h/d.jpg\t88"]
    assert "4 objects" in err and "\x1b" not in out + err


# --- the query language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (["咖啡"], ["cafe/espresso.jpg\t96", "cafe/latte.jpg\t60", "other/espresso2.jpg\t75"]),
        (['="咖啡杯"'], ["cafe/espresso.jpg\t81"]),
        (["咖啡", "AND", "NOT", "拿铁"], ["cafe/espresso.jpg\t96", "other/espresso2.jpg\t75"]),
        (["拿铁 OR 茶"], ["cafe/latte.jpg\t90", "cafe/tea.jpg\t88"]),
        (["浓缩咖啡>=70 key:cafe/"], ["cafe/espresso.jpg\t96"]),
        (["NOT", "(咖啡 OR 茶)"], ["cafe/unlabeled.jpg\t-"]),
    ],
)
def test_find_runs_the_query_language(
    cafe: Emulator, capsys: pytest.CaptureFixture[str], query: list[str], expected: list[str]
) -> None:
    code, out, err = cli(capsys, "find", *query, *where())
    assert code == 0, err
    assert out.splitlines() == expected


def test_find_lists_only_under_the_query_key_prefix(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    since = time.time()
    code, out, _ = cli(capsys, "find", "key:other/", *where())
    assert code == 0 and out.splitlines() == ["other/espresso2.jpg\t-"]
    assert Counter(r.op for r in cafe.requests if r.timestamp >= since)["GetObjectTagging"] == 1


def test_find_explains_a_query_it_cannot_read(cafe: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "find", "(猫 AND", *where())
    assert code == 2 and out == ""
    assert "cannot read the query" in err and "label was expected" in err


# --- find reuses the local index ------------------------------------------------------------------


def label_reads(emu: Emulator, since: float) -> Counter[str]:
    return Counter(r.op for r in emu.requests if r.timestamp >= since and r.op in ("GetObjectTagging", "HeadObject"))


@pytest.fixture
def labeled(emu: Emulator) -> Emulator:
    """Every object labeled (an unlabeled one is read again until the function has had time)."""
    client = make_client(emu)
    put_tagged(client, "cafe/espresso.jpg", {"autotag": "v1:t1", "autotag:浓缩咖啡": "96", "autotag:咖啡杯": "81"})
    put_with_metadata(client, "cafe/latte.jpg", [("拿铁", 90), ("浓缩咖啡", 60)], seed=1)
    put_tagged(client, "cafe/tea.jpg", {"autotag": "v1:t3", "autotag:茶": "88"}, seed=2)
    # A label is a label whatever the key's extension: the gallery would not show it, find does.
    client.put_object(Bucket=BUCKET, Key="notes/menu.txt", Body=b"espresso", ContentType="text/plain")
    client.put_object_tagging(Bucket=BUCKET, Key="notes/menu.txt", Tagging={"TagSet": {"Tag": [
        {"Key": "autotag", "Value": "v1:t4"}, {"Key": "autotag:浓缩咖啡", "Value": "55"}]}})  # fmt: skip
    return emu


def test_a_second_find_reads_no_label_and_gives_the_same_answer(
    labeled: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = ["cafe/espresso.jpg\t96", "cafe/latte.jpg\t60", "notes/menu.txt\t55"]
    since = time.time()
    code, out, err = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0, err
    assert out.splitlines() == expected and "3 of 4 objects" in err
    assert label_reads(labeled, since) == Counter({"GetObjectTagging": 4, "HeadObject": 1})

    since = time.time()
    code, out, err = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0, err
    assert out.splitlines() == expected and "3 of 4 objects" in err
    assert label_reads(labeled, since) == Counter()
    assert Counter(r.op for r in labeled.requests if r.timestamp >= since) == Counter({"ListObjects": 1})
    assert "0 read, 4 unchanged" in err

    # --fresh reads every label again; --no-index reads them all and keeps nothing.
    since = time.time()
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where(), "--fresh")
    assert code == 0 and out.splitlines() == expected
    assert label_reads(labeled, since) == Counter({"GetObjectTagging": 4, "HeadObject": 1})
    since = time.time()
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where(), "--no-index")
    assert code == 0 and out.splitlines() == expected
    assert label_reads(labeled, since) == Counter({"GetObjectTagging": 4, "HeadObject": 1})


def test_find_sees_an_untag_from_this_machine_and_a_new_upload(
    labeled: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "find", "浓缩咖啡", *where())[0] == 0
    # untag rewrites tags in place (same ETag): it tells this machine's index what it touched.
    code, _, err = cli(capsys, "untag", *where(), "--prefix", "cafe/espresso", "--quiet")
    assert code == 0, err
    since = time.time()
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0 and out.splitlines() == ["cafe/latte.jpg\t60", "notes/menu.txt\t55"]
    assert label_reads(labeled, since)["GetObjectTagging"] == 1

    put_tagged(make_client(labeled), "cafe/ristretto.jpg", {"autotag": "v1:t9", "autotag:浓缩咖啡": "77"}, seed=9)
    since = time.time()
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0
    assert out.splitlines() == ["cafe/latte.jpg\t60", "cafe/ristretto.jpg\t77", "notes/menu.txt\t55"]
    # The new object, and the untagged one (no label now: read again while the function may label it).
    assert Counter(r.key for r in labeled.requests if r.timestamp >= since and r.op == "GetObjectTagging") == Counter(
        {"cafe/ristretto.jpg": 1, "cafe/espresso.jpg": 1}
    )


def test_find_and_the_gallery_share_one_index_without_losing_what_find_read(
    labeled: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from cos_autotag_tools.gallery import open_gallery

    assert cli(capsys, "find", "浓缩咖啡", *where())[0] == 0
    server = open_gallery([*where(), "--port", "0", "--no-progress", "--poll", "0"])
    server.server_close()
    page = server.gallery.page()
    assert [p["key"] for p in page["photos"]] == ["cafe/espresso.jpg", "cafe/latte.jpg", "cafe/tea.jpg"]  # type: ignore[index]
    since = time.time()
    code, out, _ = cli(capsys, "find", "浓缩咖啡", *where())
    assert code == 0 and "notes/menu.txt\t55" in out.splitlines()
    assert label_reads(labeled, since) == Counter()
