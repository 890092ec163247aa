"""`cos-autotag event`: events shaped like Tencent's sample and the shipped fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cos_autotag.events import CosRecord, parse_event
from cos_autotag_tools.cli import main
from cos_autotag_tools.event import EVENT_NAMES, build_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def shape(value: Any) -> Any:
    """The nested keys of a JSON value, without its data."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k != "meta"}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_the_event_has_the_shape_of_the_fixtures_and_tencents_sample() -> None:
    fixture = json.loads((FIXTURES / "put.json").read_text(encoding="utf-8"))

    event = build_event("put", "photos-1250000000", "2024/holiday/beach.jpg", size=48213)

    assert shape(event) == shape(fixture)
    ours, theirs = event["Records"][0], fixture["Records"][0]
    assert ours["cos"]["cosObject"]["key"] == theirs["cos"]["cosObject"]["key"]
    assert ours["cos"]["cosObject"]["url"] == theirs["cos"]["cosObject"]["url"]
    assert ours["cos"]["cosBucket"] == theirs["cos"]["cosBucket"]
    assert ours["event"]["eventQueue"] == theirs["event"]["eventQueue"]


def test_a_chinese_key_is_encoded_as_in_the_raw_fixture() -> None:
    fixture = json.loads((FIXTURES / "key-chinese-raw.json").read_text(encoding="utf-8"))["Records"][0]

    record = build_event("put", "photos-1250000000", "相册/猫 咪.jpg")["Records"][0]

    assert record["cos"]["cosObject"]["key"] == fixture["cos"]["cosObject"]["key"]
    assert record["cos"]["cosObject"]["url"] == fixture["cos"]["cosObject"]["url"]
    (parsed,) = parse_event({"Records": [record]})
    assert isinstance(parsed, CosRecord) and parsed.key == "相册/猫 咪.jpg" and parsed.bucket == "photos-1250000000"


@pytest.mark.parametrize("kind", sorted(EVENT_NAMES))
def test_each_kind_prints_its_event_name(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["event", kind, "--bucket", "pics-1250000000", "--key", "a/b.png", "--region", "ap-shanghai"]
    assert main([*argv, "--size", "7", "--etag", '"abc"']) == 0

    record = json.loads(capsys.readouterr().out)["Records"][0]
    assert record["event"]["eventName"] == EVENT_NAMES[kind]
    assert record["cos"]["cosBucket"]["s3Region"] == "ap-shanghai"
    assert record["cos"]["cosBucket"]["region"] == "sh"
    if kind != "remove":
        assert record["cos"]["cosObject"]["size"] == 7
        assert record["cos"]["cosObject"]["meta"]["Content-Type"] == "image/png"
    assert record["cos"]["cosObject"]["meta"]["ETag"] == '"abc"'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bucket", "photos", "--key", "a.jpg"], "must be <name>-<appid>"),
        (["--bucket", "photos-1250000000", "--key", "/"], "--key must name an object"),
        (["--bucket", "photos-1250000000", "--key", "a.jpg", "--region", "Guangzhou"], "not a COS region"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["event", "put", *args]) == 2
    assert message in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("cos-autotag 0.")
