"""The Chinese names of the ImageNet classes and categories: complete, unique, really Chinese."""

from __future__ import annotations

import re

import pytest

from cos_autotag_tools.labels.classes import (
    CATEGORY_INDICES,
    DEFAULT_CATEGORY,
    NUM_CLASSES,
    category_name,
    check_language,
    chinese_category_names,
    chinese_class_names,
    class_names,
    imagenet_classes,
)
from cos_autotag_tools.labels.deterministic import FALLBACK_CATEGORY

# CJK Unified Ideographs (and Extension A): every Chinese name must contain at least one.
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def test_every_class_has_a_unique_nonempty_chinese_name() -> None:
    names = chinese_class_names()

    assert len(names) == NUM_CLASSES == len(set(names))
    assert all(name and name == name.strip() for name in names)
    # A brand name is written the same in Chinese; that is the only exception.
    assert [(i, name) for i, name in enumerate(names) if not CJK.search(name)] == [(605, "iPod")]


def test_chinese_names_are_valid_cos_tag_text() -> None:
    # Letters and digits only (isalnum is true for CJK): nothing for the tag writer to blank out.
    assert [name for name in chinese_class_names() if not name.isalnum()] == []


def test_the_table_rows_are_aligned_with_the_english_names() -> None:
    # chinese_class_names() checks that every row's English column matches; spot-check too.
    zh, en = chinese_class_names(), class_names()
    assert (en[967], zh[967]) == ("espresso", "意式浓缩咖啡")
    assert (en[281], zh[281]) == ("tabby cat", "虎斑猫")
    assert (en[985], zh[985]) == ("daisy", "雏菊")
    assert (en[0], zh[0]) == ("tench", "丁鲷")


def test_every_category_the_engines_emit_has_a_chinese_name() -> None:
    emitted = {name for pair in [*CATEGORY_INDICES, DEFAULT_CATEGORY, FALLBACK_CATEGORY] for name in pair}
    table = chinese_category_names()

    assert sorted(emitted - set(table)) == []
    assert all(CJK.search(table[name]) for name in emitted)
    assert len({table[name] for name in emitted}) == len(emitted)  # no two categories share a name


def test_classes_in_each_language() -> None:
    zh, en = imagenet_classes("zh")[967], imagenet_classes("en")[967]

    assert (zh.name, zh.first_category, zh.second_category) == ("意式浓缩咖啡", "食物", "饮品")
    assert (en.name, en.first_category, en.second_category) == ("espresso", "Food", "Beverage")
    assert imagenet_classes() == imagenet_classes("zh")
    assert category_name("Animal") == "动物" and category_name("Animal", "en") == "Animal"


def test_an_unknown_language_is_refused_with_the_choices() -> None:
    assert check_language(" ZH ") == "zh"
    with pytest.raises(ValueError, match="zh, en"):
        imagenet_classes("ja")
