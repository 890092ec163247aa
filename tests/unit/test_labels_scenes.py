"""Scene policies and class categories: pure logic on made-up probabilities."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from cos_autotag.cos_facts import DETECT_DEFAULT_SCENES, DETECT_SCENES
from cos_autotag_tools.labels.classes import CATEGORY_INDICES, NUM_CLASSES, ImageNetClass, class_names, imagenet_classes
from cos_autotag_tools.labels.scenes import (
    NOISE_FLOOR,
    SCENE_POLICIES,
    labels_for_scene,
    labels_for_scenes,
    normalise_scenes,
)

CLASSES = [
    ImageNetClass(0, "tabby cat", "Animal", "Cat"),
    ImageNetClass(1, "tiger cat", "Animal", "Cat"),
    ImageNetClass(2, "espresso", "Food", "Beverage"),
    ImageNetClass(3, "moped", "Vehicle", "Motorcycle"),
    ImageNetClass(4, "pug", "Animal", "Dog"),
    ImageNetClass(5, "daisy", "Plant", "Flower"),
]


def _probs(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


# --- scene policies --------------------------------------------------------------------------


def test_every_ci_scene_has_a_policy() -> None:
    assert set(SCENE_POLICIES) == set(DETECT_SCENES)
    assert all(policy.min_confidence >= NOISE_FLOOR for policy in SCENE_POLICIES.values())


def test_camera_reports_classes_above_the_floor_best_first() -> None:
    labels = labels_for_scene(_probs(0.30, 0.45, 0.05, 0.15, 0.03, 0.02), CLASSES, "camera")

    assert labels == [
        {"Name": "tiger cat", "Confidence": 45, "FirstCategory": "Animal", "SecondCategory": "Cat"},
        {"Name": "tabby cat", "Confidence": 30, "FirstCategory": "Animal", "SecondCategory": "Cat"},
    ]


def test_confidence_is_the_probability_in_percent_rounded() -> None:
    labels = labels_for_scene(_probs(0.0, 0.0, 0.956, 0.0, 0.0, 0.0), CLASSES, "camera")

    assert labels[0]["Confidence"] == 96


def test_a_flat_distribution_gives_no_label() -> None:
    flat = np.full(len(CLASSES), 1 / len(CLASSES), dtype=np.float32)

    assert labels_for_scenes(flat, CLASSES, DETECT_SCENES) == {scene: [] for scene in DETECT_SCENES}


def test_album_keeps_fewer_and_surer_labels_than_camera() -> None:
    probs = _probs(0.22, 0.24, 0.26, 0.28, 0.0, 0.0)

    camera = labels_for_scene(probs, CLASSES, "camera")
    album = labels_for_scene(probs, CLASSES, "album")

    assert [lb["Name"] for lb in camera] == ["moped", "espresso", "tiger cat", "tabby cat"]
    assert album == []  # all below album's 30 % floor
    sure = labels_for_scene(_probs(0.35, 0.33, 0.32, 0.31, 0.0, 0.0), CLASSES, "album")
    assert [lb["Name"] for lb in sure] == ["tabby cat", "tiger cat", "espresso"]  # top 3 only


def test_web_adds_the_second_category_with_the_summed_confidence() -> None:
    labels = labels_for_scene(_probs(0.40, 0.35, 0.0, 0.25, 0.0, 0.0), CLASSES, "web")

    assert [(lb["Name"], lb["Confidence"]) for lb in labels] == [
        ("Cat", 75),
        ("tabby cat", 40),
        ("tiger cat", 35),
        ("moped", 25),
        ("Motorcycle", 25),  # ties: the class first, then its category
    ]


def test_news_adds_the_first_category() -> None:
    labels = labels_for_scene(_probs(0.0, 0.0, 0.0, 0.0, 0.60, 0.30), CLASSES, "news")

    assert ("Animal", 60) in [(lb["Name"], lb["Confidence"]) for lb in labels]
    assert ("Plant", 30) in [(lb["Name"], lb["Confidence"]) for lb in labels]
    animal = next(lb for lb in labels if lb["Name"] == "Animal")
    assert (animal["FirstCategory"], animal["SecondCategory"]) == ("Animal", "Animal")


def test_a_category_label_never_repeats_a_class_name() -> None:
    classes = [ImageNetClass(0, "cat", "Animal", "Cat"), ImageNetClass(1, "x", "Object", "Item")]

    labels = labels_for_scene(_probs(0.9, 0.1), classes, "web")

    assert [lb["Name"] for lb in labels] == ["cat"]


def test_ties_keep_probability_order() -> None:
    labels = labels_for_scene(_probs(0.0, 0.0, 0.0, 0.301, 0.299, 0.0), CLASSES, "camera")

    assert [lb["Name"] for lb in labels] == ["moped", "pug"]  # both round to 30


# --- scene names -----------------------------------------------------------------------------


def test_scenes_are_normalised_deduplicated_and_kept_in_order() -> None:
    assert normalise_scenes([" Web", "camera", "web"]) == ("web", "camera")


def test_a_comma_separated_string_is_split_not_iterated_by_character() -> None:
    assert normalise_scenes("web,album") == ("web", "album")


def test_no_scene_means_cis_default() -> None:
    assert normalise_scenes([]) == tuple(DETECT_DEFAULT_SCENES)
    assert normalise_scenes("") == tuple(DETECT_DEFAULT_SCENES)


def test_an_unknown_scene_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="web, camera, album, news"):
        normalise_scenes(["web", "portrait"])


# --- class names and categories ----------------------------------------------------------------


def test_there_are_1000_unique_class_names_in_imagenet_order() -> None:
    names = class_names()

    assert len(names) == NUM_CLASSES == len(set(names))
    assert (names[0], names[1], names[281], names[665], names[967], names[999]) == (
        "tench",
        "goldfish",
        "tabby cat",
        "moped",
        "espresso",
        "toilet paper",
    )


def test_no_class_is_in_two_categories_and_every_index_exists() -> None:
    counts = collections.Counter(i for indices in CATEGORY_INDICES.values() for i in indices)

    assert [i for i, n in counts.items() if n > 1] == []
    assert all(0 <= i < NUM_CLASSES for i in counts)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (207, ("Animal", "Dog")),  # Golden Retriever
        (285, ("Animal", "Cat")),  # Egyptian Mau
        (967, ("Food", "Beverage")),  # espresso
        (665, ("Vehicle", "Motorcycle")),  # moped
        (817, ("Vehicle", "Car")),  # sports car
        (985, ("Plant", "Flower")),  # daisy
        (978, ("Scenery", "Landscape")),  # beach
        (971, ("Object", "Item")),  # bubble: not listed, so the default
    ],
)
def test_classes_carry_ci_style_categories(index: int, expected: tuple[str, str]) -> None:
    cls = imagenet_classes("en")[index]

    assert cls.index == index
    assert (cls.first_category, cls.second_category) == expected
