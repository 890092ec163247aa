"""--via-scf's synthetic COS events: what the function's parser reads back, and the batching."""

from __future__ import annotations

import json

import pytest

from cos_autotag.events import MAX_RECORDS_PER_EVENT, CosRecord, parse_event
from cos_autotag_tools import cos_facts
from cos_autotag_tools.backfill.fanout import EventBatcher, synthetic_record
from cos_autotag_tools.backfill.listing import ListedObject
from tests.support.scf import load_event

BUCKET, REGION = "photos-1250000000", "ap-guangzhou"


def record(key: str, size: int | None = 1234) -> dict[str, object]:
    return synthetic_record(BUCKET, REGION, key, size, function="cos-autotag", event_time=1732420000)


@pytest.mark.parametrize(
    "key",
    [
        "2024/holiday/beach.jpg",
        "with space.jpg",
        "plus+sign.jpg",
        "percent%20literal.jpg",
        "中文/照片.png",
        "query?and#hash.jpg",
        "a/b/c/deep name+mixed%2B.jpeg",
    ],
)
def test_the_function_reads_back_exactly_the_listed_key(key: str) -> None:
    (parsed,) = parse_event({"Records": [record(key)]})
    assert isinstance(parsed, CosRecord)
    assert parsed.key == key
    assert (parsed.bucket, parsed.region, parsed.size) == (BUCKET, REGION, 1234)
    assert parsed.event_name == cos_facts.EVENT_PUT and parsed.is_created


def test_a_synthetic_record_has_no_upload_identity() -> None:
    # So the guard treats any marker on the object as done: a labeled object costs one read.
    (parsed,) = parse_event({"Records": [record("a.jpg")]})
    assert isinstance(parsed, CosRecord)
    assert parsed.identity == "" and parsed.upload_token == ""
    assert parsed.content_type == ""  # eligibility from the extension or the bytes, as for a listing


def test_a_synthetic_record_has_the_shape_of_a_real_one() -> None:
    real = load_event("put.json")["Records"][0]
    fake = record("2024/holiday/beach.jpg", 48213)

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k not in ("meta", "requestHeaders")}
        return type(value).__name__

    assert shape(fake) == shape(real)
    assert fake["cos"]["cosObject"]["key"] == real["cos"]["cosObject"]["key"]  # type: ignore[index]
    assert fake["cos"]["cosObject"]["url"] == real["cos"]["cosObject"]["url"]  # type: ignore[index]
    assert fake["cos"]["cosBucket"]["region"] == "gz"  # type: ignore[index]


def test_an_unknown_size_is_left_out() -> None:
    (parsed,) = parse_event({"Records": [record("a.jpg", None)]})
    assert isinstance(parsed, CosRecord) and parsed.size is None


def test_a_bucket_without_an_appid_is_refused() -> None:
    with pytest.raises(ValueError, match="not a <name>-<appid>"):
        synthetic_record("photos", REGION, "a.jpg", 1, function="f")


def batches_of(batcher: EventBatcher, keys: list[str]) -> list[list[str]]:
    out = []
    for key in keys:
        out += [[o.key for o in b.objects] for b in batcher.add(ListedObject(key, 1), record(key))]
    out += [[o.key for o in b.objects] for b in batcher.flush()]
    return out


def test_records_are_batched_n_per_event() -> None:
    keys = [f"k{i:02d}.jpg" for i in range(23)]
    assert [len(b) for b in batches_of(EventBatcher(10), keys)] == [10, 10, 3]
    assert [k for b in batches_of(EventBatcher(10), keys) for k in b] == keys  # nothing lost, order kept


def test_an_event_never_exceeds_the_byte_limit() -> None:
    keys = [f"{'x' * 700}/{i:03d}.jpg" for i in range(40)]
    limit = 8 * 1024
    batcher = EventBatcher(100, max_bytes=limit)
    sent = []
    for key in keys:
        sent += batcher.add(ListedObject(key, 1), record(key))
    sent += batcher.flush()
    assert len(sent) > 1
    for batch in sent:
        payload = batch.payload()
        assert len(payload.encode()) <= limit
        assert batch.size == len(payload)  # the running size is exact
        event = json.loads(payload)
        assert [r["cos"]["cosObject"]["key"].split("/", 3)[3] for r in event["Records"]] == [
            o.key for o in batch.objects
        ]
    assert [o.key for b in sent for o in b.objects] == keys


def test_the_default_limit_is_scf_async_event_limit() -> None:
    assert EventBatcher(10).max_bytes == cos_facts.SCF_ASYNC_EVENT_MAX_BYTES


def test_payload_is_ascii_so_its_size_is_the_same_in_characters_and_bytes() -> None:
    batcher = EventBatcher(1)
    (batch,) = batcher.add(ListedObject("中文.jpg", 1), record("中文.jpg"))
    assert batch.payload().isascii()
    (parsed,) = parse_event(json.loads(batch.payload()))
    assert isinstance(parsed, CosRecord) and parsed.key == "中文.jpg"


@pytest.mark.parametrize("size", [0, MAX_RECORDS_PER_EVENT + 1])
def test_a_batch_size_the_handler_would_refuse_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="batch size"):
        EventBatcher(size)


def test_a_record_too_big_for_any_event_is_an_error() -> None:
    with pytest.raises(ValueError, match="over the"):
        EventBatcher(10, max_bytes=200).add(ListedObject("a.jpg", 1), record("a.jpg"))
