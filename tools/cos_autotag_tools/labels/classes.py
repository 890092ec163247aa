"""ImageNet-1000 class names and the CI-style category of each class, in Chinese or English.

Real Cloud Infinite names its labels in Chinese, so Chinese is the default language: each class
and category has a Chinese name in a data file next to the English one (sources in SOURCES.md).

Cloud Infinite answers every label with a `FirstCategory` and a `SecondCategory`; ImageNet has
neither, so each class index is mapped here by hand: the animal, food, scenery and plant
blocks of ImageNet are contiguous index ranges, the objects (398-923) are listed by group,
and whatever is not listed is ("Object", "Item").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

NUM_CLASSES = 1000
DEFAULT_CATEGORY = ("Object", "Item")
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


def check_language(language: str) -> str:
    """`language` normalised, or a ValueError naming the choices."""
    key = language.strip().lower()
    if key not in LANGUAGES:
        raise ValueError(f"unknown label language {language!r}; expected one of {', '.join(LANGUAGES)}")
    return key


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    name: str
    first_category: str
    second_category: str


def _r(start: int, stop_inclusive: int) -> tuple[int, ...]:
    return tuple(range(start, stop_inclusive + 1))


# (FirstCategory, SecondCategory) -> class indices. Each index appears at most once (tested).
# fmt: off
CATEGORY_INDICES: dict[tuple[str, str], tuple[int, ...]] = {
    # Animals: ImageNet keeps each kind in one or a few contiguous blocks.
    ("Animal", "Fish"): _r(0, 6) + _r(389, 397),
    ("Animal", "Bird"): _r(7, 24) + _r(80, 100) + _r(127, 146),
    ("Animal", "Amphibian"): _r(25, 32),
    ("Animal", "Reptile"): _r(33, 68),
    ("Animal", "Invertebrate"): _r(69, 79) + _r(107, 126) + _r(327, 329),
    ("Animal", "Mammal"): (101, *_r(102, 106), 298, 299, *_r(356, 364), *_r(385, 388)),
    ("Animal", "Marine mammal"): _r(147, 150),
    ("Animal", "Dog"): _r(151, 268),
    ("Animal", "Wild dog"): _r(269, 280),
    ("Animal", "Cat"): _r(281, 285),
    ("Animal", "Big cat"): _r(286, 293),
    ("Animal", "Bear"): _r(294, 297),
    ("Animal", "Insect"): _r(300, 326),
    ("Animal", "Rabbit and rodent"): _r(330, 338),
    ("Animal", "Hoofed mammal"): _r(339, 355),
    ("Animal", "Primate"): _r(365, 384),
    # Vehicles.
    ("Vehicle", "Car"): (407, 436, 468, 511, 573, 575, 609, 627, 656, 661, 717, 751, 757, 817),
    ("Vehicle", "Truck"): (555, 561, 569, 586, 595, 675, 734, 803, 847, 864, 866, 867),
    ("Vehicle", "Bus"): (654, 779, 874),
    ("Vehicle", "Motorcycle"): (665, 670),
    ("Vehicle", "Bicycle"): (444, 671, 870, 880),
    ("Vehicle", "Train"): (466, 547, 565, 705, 820, 829),
    ("Vehicle", "Ship"): (
        403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914,
    ),
    ("Vehicle", "Aircraft"): (404, 405, 657, 744, 812, 895, 908),
    ("Vehicle", "Other vehicle"): (408, 450, 537, 603, 612, 690, 802),
    ("Vehicle", "Vehicle part"): (475, 479, 535, 581, 685, 785),
    # Buildings and structures.
    ("Building", "Shop"): (415, 424, 454, 467, 509, 582, 762, 788, 860, 865),
    ("Building", "Landmark"): (
        437, 442, 483, 497, 498, 538, 562, 624, 649, 663, 668, 682, 698, 727, 743, 755, 832,
        863, 873, 900,
    ),
    ("Building", "House"): (410, 425, 449, 500, 580, 634, 660, 672, 706, 853, 858, 884, 915),
    ("Building", "Bridge"): (821, 839, 888),
    ("Building", "Structure"): (421, 460, 489, 525, 536, 540, 557, 716, 718, 825, 912),
    # Objects.
    ("Object", "Musical instrument"): (
        401, 402, 420, 432, 486, 494, 513, 541, 542, 546, 558, 566, 577, 579, 593, 594, 641,
        642, 683, 684, 687, 699, 714, 776, 822, 875, 881, 889,
    ),
    ("Object", "Clothing"): (
        399, 400, 411, 433, 439, 443, 445, 451, 452, 457, 459, 461, 465, 474, 490, 496, 501,
        502, 514, 515, 518, 524, 529, 552, 560, 568, 578, 601, 608, 610, 614, 615, 617, 630,
        638, 639, 652, 655, 658, 667, 689, 697, 715, 735, 770, 774, 775, 793, 796, 806, 808,
        824, 834, 841, 842, 869, 887, 903, 906,
    ),
    ("Object", "Accessory"): (414, 464, 584, 636, 679, 748, 836, 837, 879, 893),
    ("Object", "Furniture"): (
        423, 431, 453, 492, 493, 495, 516, 520, 526, 532, 539, 548, 553, 559, 564, 619, 648,
        703, 721, 741, 750, 765, 789, 794, 797, 831, 846, 854, 857, 894, 905,
    ),
    ("Object", "Electronics"): (
        409, 480, 481, 482, 485, 487, 508, 527, 528, 530, 531, 545, 590, 592, 598, 605, 613,
        620, 632, 650, 662, 664, 673, 681, 688, 707, 713, 732, 742, 745, 754, 759, 761, 782,
        800, 810, 844, 848, 851, 878, 886, 892, 916,
    ),
    ("Object", "Appliance"): (521, 534, 550, 589, 606, 651, 753, 760, 766, 786, 811, 827, 859, 882, 891, 897),
    ("Object", "Tableware"): (
        438, 440, 441, 469, 473, 499, 503, 504, 505, 512, 544, 567, 572, 618, 647, 653, 659,
        666, 725, 729, 737, 773, 809, 813, 828, 849, 868, 883, 898, 899, 901, 907, 909, 910,
        968,
    ),
    ("Object", "Tool"): (
        426, 428, 462, 477, 488, 491, 507, 587, 596, 600, 621, 633, 635, 677, 695, 696, 726,
        730, 731, 740, 769, 778, 783, 784, 792, 798, 826, 840, 872,
    ),
    ("Object", "Medical"): (419, 523, 570, 678, 691, 823, 830, 845),
    ("Object", "Sports equipment"): (
        416, 422, 429, 430, 522, 543, 574, 602, 693, 701, 702, 722, 736, 746, 747, 752, 758,
        768, 795, 801, 805, 852, 890,
    ),
    ("Object", "Weapon"): (413, 456, 471, 583, 597, 763, 764, 777, 787),
    ("Object", "Stationery"): (398, 418, 446, 549, 563, 623, 709, 710, 749, 767, 917, 918, 921, 922),
    ("Object", "Toy"): (417, 476, 611, 719, 723, 843, 850),
    ("Object", "Container"): (412, 427, 455, 463, 478, 519, 588, 692, 720, 728, 738, 756, 790, 791),
    ("Object", "Household"): (434, 435, 533, 551, 585, 591, 629, 631, 700, 711, 804, 838, 861, 876, 896, 999),
    ("Object", "Sign"): (458, 571, 637, 640, 704, 781, 919, 920),
    # Food and drink.
    ("Food", "Dish"): (923, 924, 925, 926, 933, 934, 935, 959, 961, 962, 963, 964, 965),
    ("Food", "Dessert"): (927, 928, 929, 960),
    ("Food", "Bread"): (930, 931, 932),
    ("Food", "Vegetable"): _r(936, 947),
    ("Food", "Fruit"): _r(948, 957),
    ("Food", "Beverage"): (966, 967, 969),
    # Scenery, people, plants.
    ("Scenery", "Landscape"): (970, *_r(972, 980)),
    ("Person", "Person"): _r(981, 983),
    ("Plant", "Flower"): (984, 985, 986),
    ("Plant", "Plant"): (958, 987, 988, 989, 990, 998),
    ("Plant", "Fungus"): _r(991, 997),
}
# fmt: on


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in index order (from the packaged data file)."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected {NUM_CLASSES}")
    return names


def _tsv_rows(name: str, columns: int) -> list[list[str]]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]  # first line: header
    for number, row in enumerate(rows, start=2):
        if len(row) != columns or not all(cell.strip() for cell in row):
            raise RuntimeError(f"{name} line {number}: expected {columns} non-empty tab-separated columns")
    return rows


@functools.cache
def chinese_class_names() -> tuple[str, ...]:
    """The Chinese name of every class in index order (from `imagenet_classes.zh.tsv`).

    Each row repeats the English name, so a shifted row is caught here rather than mislabeling.
    """
    rows = _tsv_rows("imagenet_classes.zh.tsv", 3)
    english = class_names()
    if [int(row[0]) for row in rows] != list(range(NUM_CLASSES)):
        raise RuntimeError(f"imagenet_classes.zh.tsv must list indices 0..{NUM_CLASSES - 1} in order")
    for index, name, _ in rows:
        if name != english[int(index)]:
            raise RuntimeError(f"imagenet_classes.zh.tsv row {index}: {name!r} is not {english[int(index)]!r}")
    return tuple(row[2].strip() for row in rows)


@functools.cache
def chinese_category_names() -> dict[str, str]:
    """English category name -> Chinese (from `imagenet_categories.zh.tsv`)."""
    return {english: chinese.strip() for english, chinese in _tsv_rows("imagenet_categories.zh.tsv", 2)}


def category_name(english: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A category's name in `language`; KeyError if the Chinese table lacks it (tested)."""
    return english if check_language(language) == "en" else chinese_category_names()[english]


@functools.cache
def _category_by_index() -> dict[int, tuple[str, str]]:
    table: dict[int, tuple[str, str]] = {}
    for category, indices in CATEGORY_INDICES.items():
        for index in indices:
            table.setdefault(index, category)
    return table


@functools.cache
def imagenet_classes(language: str = DEFAULT_LANGUAGE) -> tuple[ImageNetClass, ...]:
    """Every class with its name and CI-style categories in `language`, in index order."""
    language = check_language(language)
    table = _category_by_index()
    names = chinese_class_names() if language == "zh" else class_names()
    out = []
    for i, name in enumerate(names):
        first, second = table.get(i, DEFAULT_CATEGORY)
        out.append(ImageNetClass(i, name, category_name(first, language), category_name(second, language)))
    return tuple(out)
