"""The deterministic engine (canned table + hash fallback) and the engine factory."""

from __future__ import annotations

import hashlib

import pytest

from cos_autotag_tools.labels import (
    DeterministicEngine,
    EfficientNetEngine,
    ImageDecodeError,
    fallback_name,
    make_engine,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"pretend pixels"
JPEG = b"\xff\xd8\xff\xe0" + b"pretend pixels"
CAT = {"Name": "cat", "Confidence": 87, "FirstCategory": "Animal", "SecondCategory": "Pet"}
DOG = {"Name": "dog", "Confidence": 60, "FirstCategory": "Animal", "SecondCategory": "Pet"}


def test_registered_content_gets_its_canned_labels_sorted_by_confidence() -> None:
    engine = DeterministicEngine()
    engine.register(PNG, {"web": [DOG, CAT]})

    assert engine.detect(PNG, ["web"]) == {"web": [CAT, DOG]}


def test_a_scene_not_registered_for_the_content_answers_no_labels() -> None:
    engine = DeterministicEngine()
    engine.register(PNG, {"web": [CAT]})

    assert engine.detect(PNG, ["camera", "web"]) == {"camera": [], "web": [CAT]}


def test_content_can_be_registered_by_its_sha256() -> None:
    engine = DeterministicEngine()
    digest = engine.register(hashlib.sha256(JPEG).hexdigest().upper(), {"album": [CAT]})

    assert digest == hashlib.sha256(JPEG).hexdigest()
    assert engine.detect(JPEG, ["album"]) == {"album": [CAT]}


def test_unknown_content_gets_labels_named_after_its_hash() -> None:
    digest = hashlib.sha256(PNG).hexdigest()

    labels = DeterministicEngine().detect(PNG, ["camera"])["camera"]

    assert [lb["Name"] for lb in labels] == [f"标签-{digest[:6]}", f"标签-{digest[6:12]}"]
    assert labels[0]["Name"] == fallback_name(PNG)
    assert (labels[0]["FirstCategory"], labels[0]["SecondCategory"]) == ("物品", "测试标签")
    assert int(labels[0]["Confidence"]) > int(labels[1]["Confidence"])
    assert all(0 <= int(lb["Confidence"]) <= 100 for lb in labels)


def test_the_fallback_answers_in_english_on_request() -> None:
    digest = hashlib.sha256(PNG).hexdigest()
    chinese = DeterministicEngine().detect(PNG, ["camera"])["camera"]

    labels = DeterministicEngine(language="en").detect(PNG, ["camera"])["camera"]

    assert [lb["Name"] for lb in labels] == [f"label-{digest[:6]}", f"label-{digest[6:12]}"]
    assert labels[0]["Name"] == fallback_name(PNG, "en")
    assert (labels[0]["FirstCategory"], labels[0]["SecondCategory"]) == ("Object", "Deterministic")
    assert [lb["Confidence"] for lb in labels] == [lb["Confidence"] for lb in chinese]


def test_the_fallback_is_the_same_across_engines_and_differs_between_contents() -> None:
    other = PNG + b"!"

    first = DeterministicEngine().detect(PNG, ["web", "news"])
    again = DeterministicEngine().detect(PNG, ["web", "news"])
    different = DeterministicEngine().detect(other, ["web"])

    assert first == again
    assert different["web"][0]["Name"] != first["web"][0]["Name"]


def test_no_scenes_means_the_default_scene() -> None:
    assert list(DeterministicEngine().detect(PNG, [])) == ["camera"]


def test_bytes_without_an_image_signature_raise_image_decode_error() -> None:
    with pytest.raises(ImageDecodeError):
        DeterministicEngine().detect(b"plain text", ["web"])


def test_the_signature_check_can_be_switched_off_and_skips_registered_content() -> None:
    relaxed = DeterministicEngine(require_image_signature=False)
    strict = DeterministicEngine()
    strict.register(b"plain text", {"web": [CAT]})

    assert relaxed.detect(b"plain text", ["web"])["web"][0]["Name"].startswith("标签-")  # type: ignore[union-attr]
    assert strict.detect(b"plain text", ["web"]) == {"web": [CAT]}


def test_the_engine_records_which_contents_it_labeled() -> None:
    engine = DeterministicEngine()
    engine.detect(PNG, ["web"])
    engine.detect(JPEG, ["web"])

    assert engine.seen == [hashlib.sha256(PNG).hexdigest(), hashlib.sha256(JPEG).hexdigest()]


def test_editing_an_answer_does_not_change_the_table() -> None:
    engine = DeterministicEngine()
    engine.register(PNG, {"web": [CAT]})

    engine.detect(PNG, ["web"])["web"][0]["Name"] = "edited"

    assert engine.detect(PNG, ["web"]) == {"web": [CAT]}


@pytest.mark.parametrize(
    "bad_label",
    [
        {**CAT, "Confidence": 101},
        {**CAT, "Confidence": True},
        {**CAT, "Confidence": "87"},
        {**CAT, "Name": ""},
        {"Name": "cat", "Confidence": 50},
        {**CAT, "Extra": "x"},
    ],
    ids=["over-100", "bool", "string-confidence", "empty-name", "missing-keys", "extra-key"],
)
def test_malformed_canned_labels_are_refused(bad_label: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="web"):
        DeterministicEngine().register(PNG, {"web": [bad_label]})


def test_a_malformed_hash_or_scene_is_refused() -> None:
    engine = DeterministicEngine()

    with pytest.raises(ValueError, match="sha256"):
        engine.register("abc123", {"web": [CAT]})
    with pytest.raises(ValueError, match="unknown detect-label scene"):
        engine.register(PNG, {"portrait": [CAT]})
    with pytest.raises(ValueError, match="empty scene"):
        engine.register(PNG, {" ": [CAT]})


def test_make_engine_builds_each_named_engine() -> None:
    assert isinstance(make_engine("efficientnet"), EfficientNetEngine)
    assert isinstance(make_engine(" Deterministic "), DeterministicEngine)


def test_make_engine_passes_the_language_and_refuses_an_unknown_one() -> None:
    assert make_engine("efficientnet", language="en").language == "en"  # type: ignore[attr-defined]
    assert make_engine("deterministic").language == "zh"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="zh, en"):
        make_engine("deterministic", language="fr")


def test_make_engine_refuses_an_unknown_name_with_the_choices() -> None:
    with pytest.raises(ValueError, match="efficientnet, deterministic"):
        make_engine("clip")
