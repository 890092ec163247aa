"""XML bodies as the SDK's own parsers read them, and the XML the emulator accepts."""

from __future__ import annotations

import pytest
from qcloud_cos.cos_comm import xml_to_dict
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag_tools.emulator import xml_bodies
from cos_autotag_tools.emulator.errors import CosError

LABEL = {"Name": "cat", "Confidence": 87, "FirstCategory": "Animal", "SecondCategory": "Pet"}


def test_error_body_fills_every_sdk_getter() -> None:
    body = xml_bodies.error_body("NoSuchKey", "gone", "b.cos.r.myqcloud.com/k", "rid-1", "trace-1")
    err = CosServiceError("GET", body.decode(), 404)
    assert (err.get_error_code(), err.get_error_msg(), err.get_request_id()) == ("NoSuchKey", "gone", "rid-1")
    assert err.get_resource_location() == "b.cos.r.myqcloud.com/k"
    assert err.get_trace_id() == "trace-1"


def test_detect_body_without_scenes_has_top_level_labels() -> None:
    body = xml_bodies.detect_label_body({"camera": [LABEL, {**LABEL, "Name": "pet"}]}, None)
    parsed = xml_to_dict(body)
    assert [label["Name"] for label in parsed["Labels"]] == ["cat", "pet"]
    assert parsed["Labels"][0] == {
        "Confidence": "87",
        "Name": "cat",
        "FirstCategory": "Animal",
        "SecondCategory": "Pet",
    }


def test_detect_body_with_scenes_has_one_element_per_scene() -> None:
    body = xml_bodies.detect_label_body(
        {"web": [LABEL, LABEL], "camera": [LABEL], "news": []}, ["web", "camera", "news"]
    )
    assert body.startswith(b"<?xml") and b"<RecognitionResult>" in body
    parsed = xml_to_dict(body)
    assert set(parsed) == {"WebLabels", "CameraLabels", "NewsLabels"}
    assert isinstance(parsed["WebLabels"]["Labels"], list)
    assert parsed["CameraLabels"]["Labels"]["Name"] == "cat"  # a single <Labels> stays a dict
    assert parsed["NewsLabels"] is None  # an empty element


def test_text_is_escaped_and_control_characters_encoded() -> None:
    body = xml_bodies.tagging_body({"a<b": "x&y", "ctl": "\x01"})
    parsed = xml_to_dict(body)
    assert parsed["TagSet"]["Tag"][0] == {"Key": "a<b", "Value": "x&y"}
    assert parsed["TagSet"]["Tag"][1]["Value"] == "%01"


def test_parse_tagging_in_order_and_namespaced() -> None:
    body = (
        b'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>'
        b"<Tag><Key>b</Key><Value>2</Value></Tag><Tag><Key>a</Key><Value></Value></Tag>"
        b"</TagSet></Tagging>"
    )
    assert xml_bodies.parse_tagging(body) == [("b", "2"), ("a", "")]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Tagging>",
        b"<Other/>",
        b"<Tagging/>",
        b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
        b'<!DOCTYPE x [<!ENTITY a "b">]><Tagging><TagSet/></Tagging>',
    ],
)
def test_bad_tagging_xml_is_malformed(body: bytes) -> None:
    with pytest.raises(CosError) as err:
        xml_bodies.parse_tagging(body)
    assert (err.value.code, err.value.status) == ("MalformedXML", 400)


def test_parse_complete_multipart() -> None:
    body = (
        b'<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"e1"</ETag></Part></CompleteMultipartUpload>'
    )
    assert xml_bodies.parse_complete_multipart(body) == [(1, '"e1"')]
    with pytest.raises(CosError, match="not a number"):
        xml_bodies.parse_complete_multipart(body.replace(b">1<", b">one<"))
    with pytest.raises(CosError, match="no <Part>"):
        xml_bodies.parse_complete_multipart(b"<CompleteMultipartUpload/>")
