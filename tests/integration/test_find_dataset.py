"""`find --dataset` (MetaInsight) answers as `find` by listing does, over one bucket in both modes.

Through the CLI entry point and the real SDK against the emulator, which serves the dataset APIs
on the account's CI host: `cos-autotag dataset` creates, binds and indexes; objects uploaded or
re-tagged after the binding are indexed without CreateFileMetaIndex.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cos_autotag.writeback import encoded_label_key, tag_marker_value
from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import REGION
from tests.support.emulator import started_emulator, use_emulator_env
from tests.support.sdk import make_client

from .test_show_find import BUCKET, USER_TAGS, put_tagged, put_with_metadata

pytestmark = pytest.mark.integration

QUERIES = [
    "浓缩咖啡",
    "咖啡",
    '="浓缩咖啡"',
    "浓缩咖啡>=70",
    "咖啡 AND NOT 拿铁",
    "茶 OR 拿铁",
    "NOT 浓缩咖啡",
    "key:cafe/ 咖啡",
    '="咖啡杯" OR ="茶"',
    "(浓缩咖啡<70 OR 茶) AND key:cafe/",
]


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with started_emulator(BUCKET) as emu:
        use_emulator_env(monkeypatch, emu, COS_BUCKET=BUCKET, COS_REGION=REGION)
        client = make_client(emu)
        put_tagged(client, "cafe/espresso.jpg", {**USER_TAGS, "autotag": "v1:t1", "autotag:浓缩咖啡": "96",
                                                 "autotag:咖啡杯": "81"})  # fmt: skip
        put_with_metadata(client, "cafe/latte.jpg", [("拿铁", 90), ("浓缩咖啡", 60)], seed=1)
        put_tagged(client, "cafe/tea.jpg", {"autotag": "v1:t3", "autotag:茶": "88", "浓缩咖啡": "no"}, seed=2)
        put_with_metadata(client, "cafe/unlabeled.jpg", None, seed=3)
        put_tagged(client, "other/espresso2.jpg", {"autotag": "v1:t5", "autotag:浓缩咖啡": "65"}, seed=4)
        put_tagged(client, "other/mocha.jpg", {"autotag:摩卡咖啡": "70"}, seed=5)  # labels, marker left out
        yield emu


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def answers(capsys: pytest.CaptureFixture[str], query: str, mode: str, *extra: str) -> list[tuple[str, object]]:
    code, out, err = run(capsys, "find", query, "--mode", mode, "--json", "--no-progress", *extra)
    assert code == 0, err
    document = json.loads(out)
    return sorted((m["key"], m["confidence"]) for m in document["matches"])


def test_dataset_command_creates_binds_indexes_and_reports_cost(
    bucket: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "dataset", "photos", "--qps", "500")
    assert code == 0, err
    assert "created" in err and f"bound cos://{BUCKET}" in err
    assert "indexed 6 existing objects with 6 CreateFileMetaIndex requests" in out
    assert "the dataset answers for 6 files now" in out
    assert "智能检索费用" in out
    assert bucket.count(op="CreateFileMetaIndex") == 6
    # Again: the dataset is kept, the binding too, and nothing breaks.
    code, out, err = run(capsys, "dataset", "photos", "--no-index")
    assert code == 0, err
    assert "exists already" in err and "indexed 0 existing objects" in out


@pytest.mark.parametrize("mode", ["auto", "tags", "metadata"])
def test_find_by_dataset_answers_as_find_by_listing(
    bucket: Emulator, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    assert run(capsys, "dataset", "photos", "--qps", "500")[0] == 0
    for query in QUERIES:
        listed = answers(capsys, query, mode)
        by_dataset = answers(capsys, query, mode, "--dataset", "photos")
        assert by_dataset == listed, query
    assert answers(capsys, "咖啡", "auto") != []  # the queries do find something


def test_find_by_dataset_pages_with_next_token_and_sends_no_cos_reads(
    bucket: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(bucket)
    assert run(capsys, "dataset", "photos", "--no-index")[0] == 0
    # Uploaded after the binding: indexed by the binding, no CreateFileMetaIndex needed.
    for i in range(230):
        put_tagged(client, f"many/{i:03}.jpg", {"autotag": "v1:m", "autotag:猫": str(i % 101)}, seed=i % 7)
    bucket.clear_logs()
    found = answers(capsys, "猫>=50", "tags", "--dataset", "photos")
    assert len(found) == sum(1 for i in range(230) if i % 101 >= 50)
    queries = bucket.count(op="DatasetSimpleQuery")
    assert queries == 3  # 230 candidates, 100 per page
    assert bucket.count(op="GetObjectTagging") == 0 and bucket.count(op="ListObjects") == 0


def test_binding_indexes_new_uploads_and_tag_changes_but_not_what_was_there(
    bucket: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "dataset", "photos", "--no-index")[0] == 0
    assert answers(capsys, "浓缩咖啡", "tags", "--dataset", "photos") == []  # existing: not indexed yet
    client = make_client(bucket)
    put_tagged(client, "new/espresso.jpg", {"autotag": "v1:n", "autotag:浓缩咖啡": "77"})
    put_tagged(client, "other/espresso2.jpg", {"autotag": "v1:t5", "autotag:浓缩咖啡": "66"}, seed=4)  # re-tagged
    assert answers(capsys, "浓缩咖啡", "tags", "--dataset", "photos") == [
        ("new/espresso.jpg", 77),
        ("other/espresso2.jpg", 66),
    ]


def test_find_by_dataset_says_what_to_do_when_the_dataset_is_missing(
    bucket: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "find", "猫", "--dataset", "nosuch", "--no-progress")
    assert code == 1
    assert "DatasetNotFound" in err and "cos-autotag dataset NAME" in err


def test_the_dataset_apis_check_the_signature(
    bucket: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", "wrong-key")
    code, _, err = run(capsys, "dataset", "photos")
    assert code == 1
    assert "SignatureDoesNotMatch" in err or "AccessDenied" in err
    assert bucket.count(op="CreateDataset", status=200) == 0


def test_a_label_written_in_the_encoded_form_is_found_by_dataset_as_by_listing(
    bucket: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Where COS's strict tag rule refused the readable key, the function wrote `autotag:b64:...`:
    # the dataset's exact-label narrowing must ask for that key too, or it would miss the photo.
    key = encoded_label_key("浓缩咖啡")
    assert key is not None
    put_tagged(
        make_client(bucket), "strict/espresso.jpg", {"autotag": tag_marker_value("t9", [key]), key: "77"}, seed=6
    )
    assert run(capsys, "dataset", "photos", "--qps", "500")[0] == 0
    for query in ('="浓缩咖啡"', "浓缩咖啡>=70"):
        listed = answers(capsys, query, "tags")
        assert ("strict/espresso.jpg", 77) in listed, query
        assert answers(capsys, query, "tags", "--dataset", "photos") == listed, query
