import pytest

from cos_autotag.detect import parse_detect_response
from cos_autotag.errors import UnreadableReply
from cos_autotag.label import Label
from cos_autotag.selection import select_labels


def test_top_level_labels_without_scenes():
    response = {"Labels": [{"Confidence": "91", "Name": "cat", "FirstCategory": "Animal", "SecondCategory": "Pet"}]}
    assert parse_detect_response(response) == [Label("cat", 91, "Animal", "Pet", "")]


def test_per_scene_labels_single_dict_list_and_empty():
    response = {
        "WebLabels": {"Labels": [{"Confidence": "87", "Name": "cat"}, {"Confidence": "60", "Name": "sofa"}]},
        "CameraLabels": {"Labels": {"Confidence": "90", "Name": "Cat"}},
        "NewsLabels": None,
        "AlbumLabels": {"Labels": [None, {}, {"Name": "", "Confidence": "50"}, {"Name": "x", "Confidence": "n/a"}]},
    }
    labels = parse_detect_response(response)
    assert [(lb.name, lb.confidence, lb.scene) for lb in labels] == [
        ("cat", 87, "web"),
        ("sofa", 60, "web"),
        ("Cat", 90, "camera"),
    ]


def test_root_element_and_odd_values_are_tolerated():
    assert parse_detect_response({"RecognitionResult": {"Labels": {"Name": "dog", "Confidence": "99.6"}}}) == [
        Label("dog", 100)
    ]


@pytest.mark.parametrize("reply", [b"raw bytes", None, [], {"body": {"h1": "502"}}, {"CameraLabels": "text"}])
def test_a_reply_not_of_the_documented_shape_is_unreadable_never_label_less(reply):
    with pytest.raises(UnreadableReply, match="unreadable reply from DetectLabel"):
        parse_detect_response(reply)


def test_labels_nested_deeper_than_the_documented_shape_are_unreadable():
    nested: dict = {"Name": "x", "Confidence": "50"}
    for _ in range(50):
        nested = {"Labels": nested}
    with pytest.raises(UnreadableReply):
        parse_detect_response({"CameraLabels": nested})


def test_select_merges_scenes_dedupes_filters_orders_and_caps():
    labels = [
        Label("cat", 87, scene="web"),
        Label("Cat", 90, scene="camera"),
        Label("sofa", 60),
        Label("blanket", 60),
        Label("noise", 10),
    ]
    chosen = select_labels(labels, min_confidence=50, max_labels=3)
    assert [(lb.name, lb.confidence) for lb in chosen] == [("Cat", 90), ("blanket", 60), ("sofa", 60)]
    assert select_labels(labels, min_confidence=95, max_labels=3) == []
    assert len(select_labels(labels, min_confidence=0, max_labels=2)) == 2
