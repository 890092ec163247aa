from cos_autotag.label import Label
from cos_autotag.writeback import (
    LABELS_META,
    MARKER_META,
    clean_tag_text,
    decode_labels_meta,
    label_room_in_tags,
    marker_in_tags,
    plan_metadata,
    plan_tags,
)
from cos_autotag_tools import cos_facts

LABELS = [Label("cat", 90), Label("sofa", 70), Label("T-shirt (red), cotton", 65), Label("猫", 60)]


def valid_tags(tags):
    return len(tags) <= cos_facts.TAGS_MAX_PER_OBJECT and all(
        cos_facts.tag_text_is_valid(k, cos_facts.TAG_KEY_MAX_CHARS)
        and cos_facts.tag_text_is_valid(v, cos_facts.TAG_VALUE_MAX_CHARS)
        for k, v in tags
    )


def test_user_tags_kept_own_labels_replaced():
    existing = [("owner", "alice"), ("autotag", "v1:old"), ("autotag:dog", "80")]
    plan = plan_tags(existing, LABELS[:2], "abc")
    assert plan.tags == [("owner", "alice"), ("autotag", "v1:abc"), ("autotag:cat", "90"), ("autotag:sofa", "70")]
    assert valid_tags(plan.tags)


def test_label_names_are_cleaned_to_cos_rules():
    plan = plan_tags([], LABELS, "abc")
    keys = [k for k, _ in plan.tags]
    assert "autotag:T-shirt red cotton" in keys
    assert valid_tags(plan.tags)
    assert clean_tag_text("(),,,", 100) == ""
    assert len(clean_tag_text("x" * 500, 127)) == 127


def test_ascii_only_fallback_drops_non_ascii_names():
    plan = plan_tags([], LABELS, "abc", ascii_only=True)
    assert all(k.isascii() for k, _ in plan.tags)
    assert "猫" in plan.left_out_invalid


def test_never_more_than_ten_tags_and_never_a_users_tag_dropped():
    existing = [(f"user{i}", "v") for i in range(7)]
    plan = plan_tags(existing, LABELS, "abc")
    assert len(plan.tags) == 10
    assert plan.tags[:7] == existing
    assert [lb.name for lb in plan.written] == ["cat", "sofa"]
    assert len(plan.left_out_for_room) == 2


def test_room_and_marker():
    assert label_room_in_tags([(f"u{i}", "v") for i in range(9)]) == 0
    assert label_room_in_tags([("autotag", "v1"), ("autotag:cat", "9")]) == 9
    assert marker_in_tags([("autotag", "v1:zz")]) == "v1:zz"
    assert marker_in_tags([("autotagx", "v1:zz")]) is None


def test_metadata_plan_keeps_everything_and_encodes_labels():
    head = {
        "Content-Type": "image/jpeg",
        "Cache-Control": "max-age=60",
        "Content-Disposition": "inline",
        "Expires": "Wed, 21 Oct 2030 07:28:00 GMT",
        "x-cos-storage-class": "STANDARD_IA",
        "x-cos-meta-camera": "pixel",
        "X-Cos-Meta-Owner": "bob",
        "x-cos-meta-autotag": "v1:old",
        "ETag": '"abc"',
    }
    plan = plan_metadata(head, LABELS, "tok")
    assert plan.metadata["x-cos-meta-camera"] == "pixel" and plan.metadata["x-cos-meta-owner"] == "bob"
    assert plan.metadata[MARKER_META] == "v1:tok"
    assert plan.headers == {
        "ContentType": "image/jpeg",
        "CacheControl": "max-age=60",
        "ContentDisposition": "inline",
        "Expires": "Wed, 21 Oct 2030 07:28:00 GMT",
    }
    assert plan.storage_class == "STANDARD_IA"
    assert plan.metadata[LABELS_META].isascii()
    assert decode_labels_meta(plan.metadata[LABELS_META]) == [(lb.name, lb.confidence) for lb in LABELS]


def test_metadata_plan_stays_within_two_kilobytes():
    head = {"Content-Type": "image/png", "x-cos-meta-big": "x" * 1950}
    many = [Label(f"label number {i}", 90 - i) for i in range(9)]
    plan = plan_metadata(head, many, "tok")
    size = sum(len(k) + len(v) for k, v in plan.metadata.items())
    assert size <= cos_facts.USER_META_MAX_BYTES
    assert plan.metadata["x-cos-meta-big"] == "x" * 1950
    assert plan.left_out_for_room
