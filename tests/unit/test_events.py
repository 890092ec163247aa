import pytest

from cos_autotag.errors import EventError
from cos_autotag.events import CosRecord, MalformedRecord, parse_event
from tests.support.scf import load_event


def only(event_name: str) -> CosRecord:
    records = parse_event(load_event(event_name))
    assert len(records) == 1
    record = records[0]
    assert isinstance(record, CosRecord), record
    return record


def test_tencent_sample_resolves_full_bucket_region_and_key():
    record = only("tencent-sample.json")
    assert record.bucket == "testpic-1253970026"
    assert record.region == "ap-chengdu"  # from the URL host, not the short code "cd"
    assert record.key == "testfile"
    assert record.size == 1029
    assert record.content_type == ""
    assert record.user_meta == {"x-cos-meta-mykey": "myvalue"}
    assert record.upload_request_id == "NWMxOWY4MGFfMjViMjU4NjRfMTUyMVxxxxxxxxx="
    assert record.is_created and not record.is_copy


def test_short_region_code_is_mapped_when_nothing_else_tells():
    event = load_event("tencent-sample.json")
    obj = event["Records"][0]["cos"]["cosObject"]
    del obj["url"]
    record = parse_event(event)[0]
    assert isinstance(record, CosRecord)
    assert record.region == "ap-chengdu"
    assert record.key == "testfile"


def test_put_event_fields():
    record = only("put.json")
    assert (record.bucket, record.region, record.key) == ("photos-1250000000", "ap-guangzhou", "2024/holiday/beach.jpg")
    assert record.event_name == "cos:ObjectCreated:Put"
    assert record.content_type == "image/jpeg"
    assert record.user_meta["x-cos-meta-camera"] == "pixel-8"
    assert record.identity == record.upload_request_id
    assert len(record.upload_token) == 16


def test_copy_event_is_a_copy():
    assert only("copy.json").is_copy


@pytest.mark.parametrize(
    ("fixture", "key"),
    [
        ("key-space-raw.json", "my photos/summer day.jpg"),
        ("key-space-encoded.json", "my photos/summer day.jpg"),
        ("key-space-plus.json", "my photos/summer day.jpg"),
        ("key-plus-raw.json", "a+b/c+d.jpg"),
        ("key-plus-encoded.json", "a+b/c+d.jpg"),
        ("key-chinese-raw.json", "相册/猫 咪.jpg"),
        ("key-chinese-encoded.json", "相册/猫 咪.jpg"),
        ("key-percent-raw.json", "100%/50%25.jpg"),
        ("key-percent-encoded.json", "100%/50%25.jpg"),
    ],
)
def test_odd_keys_resolve_whichever_way_the_event_encodes_them(fixture, key):
    record = only(fixture)
    assert record.key == key
    assert record.key_alternatives == ()


def test_ambiguous_key_without_url_keeps_alternatives():
    event = load_event("key-plus-raw.json")
    del event["Records"][0]["cos"]["cosObject"]["url"]
    record = parse_event(event)[0]
    assert isinstance(record, CosRecord)
    assert record.key == "a+b/c+d.jpg"
    assert "a b/c d.jpg" in record.key_alternatives


def test_several_records_in_one_event():
    records = parse_event(load_event("multi-records.json"))
    assert [r.key for r in records if isinstance(r, CosRecord)] == ["a/one.jpg", "b/two.png", "c/notes.txt"]


def test_remove_event_is_parsed_but_not_created():
    record = only("remove.json")
    assert not record.is_created


def test_malformed_record_names_what_is_missing():
    (record,) = parse_event(load_event("malformed-missing-key.json"))
    assert isinstance(record, MalformedRecord)
    assert "cosObject.key" in record.problem


def test_one_malformed_record_does_not_stop_the_others():
    records = parse_event(load_event("malformed-mixed.json"))
    assert isinstance(records[0], MalformedRecord) and "eventName" in records[0].problem
    assert isinstance(records[1], MalformedRecord) and records[1].index == 1
    assert isinstance(records[2], CosRecord) and records[2].key == "ok/fine.jpg"


@pytest.mark.parametrize("event", [None, [], "x", {"hello": "world"}, {"Records": "nope"}])
def test_not_an_event_raises_event_error(event):
    with pytest.raises(EventError):
        parse_event(event)


def test_absurd_key_is_refused():
    event = load_event("put.json")
    obj = event["Records"][0]["cos"]["cosObject"]
    obj["key"] = "/1250000000/photos/" + "k" * 5000
    obj["url"] = "http://photos-1250000000.cos.ap-guangzhou.myqcloud.com/" + "k" * 5000
    (record,) = parse_event(event)
    assert isinstance(record, MalformedRecord) and "850" in record.problem


def test_bad_size_is_malformed():
    event = load_event("put.json")
    event["Records"][0]["cos"]["cosObject"]["size"] = "lots"
    (record,) = parse_event(event)
    assert isinstance(record, MalformedRecord) and "size" in record.problem
