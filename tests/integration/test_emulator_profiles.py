"""The contested COS rules, played by the emulator's profiles and seen through the unmodified SDK:
tag characters (utf8 / strict), non-ASCII metadata on the way out (raw / percent), and what
detect-label answers on a bucket not bound to Cloud Infinite (403 / 404 / 200 with HTML)."""

from __future__ import annotations

import ast
from pathlib import Path
from urllib.parse import unquote

import pytest
from qcloud_cos import CosS3Client

import cos_autotag_tools.emulator as emulator_package
from cos_autotag_tools.emulator import Emulator, Profile, ci
from tests.support.constants import APPID, BUCKET
from tests.support.emulator import error_of, tagging
from tests.support.images import image_bytes
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

# The function's validators and rule constants for the contested rules: the emulator must have its own.
FUNCTION_RULE_NAMES = {
    "tag_text_is_valid",
    "TAG_KEY_MAX_CHARS",
    "TAG_VALUE_MAX_CHARS",
    "TAG_ALLOWED_PUNCTUATION",
    "TAGS_MAX_PER_OBJECT",
    "USER_META_MAX_BYTES",
    "CI_CODE_NOT_BOUND",
    "CI_STATUS_NOT_BOUND",
    "CI_MESSAGE_NOT_BOUND",
}


def test_the_emulator_has_its_own_rules_not_the_functions() -> None:
    used: dict[str, set[str]] = {}
    for path in Path(emulator_package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in FUNCTION_RULE_NAMES:
                used.setdefault(path.name, set()).add(node.attr)
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in FUNCTION_RULE_NAMES:
                        used.setdefault(path.name, set()).add(alias.name)
    assert used == {}


@pytest.mark.parametrize("tag_rule", ["utf8", "strict"])
def test_a_chinese_tag_under_each_tag_rule(tag_rule: str, emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_profile(tag_rule=tag_rule)
    cos_client.put_object(Bucket=BUCKET, Key="t.jpg", Body=b"x", Tagging="keep=me")
    call = lambda: cos_client.put_object_tagging(  # noqa: E731
        Bucket=BUCKET, Key="t.jpg", Tagging=tagging(("keep", "me"), ("autotag:意式浓缩咖啡", "87"))
    )
    if tag_rule == "utf8":
        call()
        assert cos_client.get_object_tagging(Bucket=BUCKET, Key="t.jpg")["TagSet"]["Tag"][1]["Key"] == (
            "autotag:意式浓缩咖啡"
        )
    else:
        err = error_of(call)
        assert (err.get_status_code(), err.get_error_code()) == (400, "InvalidTag")
        assert err.get_request_id() not in ("", "Unknown") and "strict" in err.get_error_msg()
        assert emulator.get_object_state(BUCKET, "t.jpg").tags == {"keep": "me"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pair", "utf8_ok", "strict_ok"),
    [
        (("a-b_c=d.e:f/g h+i", "v"), True, True),
        (("at@sign", "v"), True, False),
        (("k", ""), False, True),  # the API page: value shorter than 256 bytes, so empty is allowed
        (("k" * 127, "v"), True, True),
        (("k" * 128, "v"), False, False),
        (("k", "é" * 128), True, False),  # 128 characters, 256 bytes
        (("k", "v" * 255), True, True),
        (("k", "v" * 256), False, False),
        (("猫", "v"), True, False),
    ],
)
def test_each_rule_at_its_edges(pair: tuple[str, str], utf8_ok: bool, strict_ok: bool, emulator: Emulator) -> None:
    client = make_client(emulator)
    client.put_object(Bucket=BUCKET, Key="e", Body=b"x")
    for rule, ok in (("utf8", utf8_ok), ("strict", strict_ok)):
        emulator.set_profile(tag_rule=rule)
        if ok:
            client.put_object_tagging(Bucket=BUCKET, Key="e", Tagging=tagging(pair))
        else:
            err = error_of(lambda: client.put_object_tagging(Bucket=BUCKET, Key="e", Tagging=tagging(pair)))
            assert err.get_error_code() == "InvalidTag", rule


def test_the_strict_rule_also_governs_the_tagging_header(emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_profile(tag_rule="strict")
    err = error_of(lambda: cos_client.put_object(Bucket=BUCKET, Key="h", Body=b"x", Tagging="%E7%8C%AB=1"))
    assert err.get_error_code() == "InvalidTag"
    assert emulator.get_object_state(BUCKET, "h") is None


@pytest.mark.parametrize("encoding", ["raw", "percent"])
def test_non_ascii_metadata_comes_back_raw_or_percent_encoded(
    encoding: str, emulator: Emulator, cos_client: CosS3Client
) -> None:
    emulator.set_profile(metadata_encoding=encoding)
    cos_client.put_object(
        Bucket=BUCKET, Key="m", Body=b"x", Metadata={"x-cos-meta-label": "猫", "x-cos-meta-plain": "50%"}
    )
    head = cos_client.head_object(Bucket=BUCKET, Key="m")
    got = head["x-cos-meta-label"].encode("latin-1")
    if encoding == "raw":
        assert got.decode("utf-8") == "猫"
    else:
        assert got == b"%E7%8C%AB" and unquote(got.decode()) == "猫"
    assert head["x-cos-meta-plain"] == "50%"  # ASCII is answered as stored under both
    # Stored as sent under both: the profile changes only what is answered.
    assert emulator.get_object_state(BUCKET, "m").metadata["x-cos-meta-label"] == "猫"  # type: ignore[union-attr]
    body = cos_client.get_object(Bucket=BUCKET, Key="m")
    assert body["x-cos-meta-label"].encode("latin-1") == got


def test_percent_profile_stores_input_as_sent(emulator: Emulator, cos_client: CosS3Client) -> None:
    """Asymmetric on purpose: a client that sends back what it read stores the encoded text."""
    emulator.set_profile(metadata_encoding="percent")
    cos_client.put_object(Bucket=BUCKET, Key="m", Body=b"x", Metadata={"x-cos-meta-label": "%E7%8C%AB"})
    assert emulator.get_object_state(BUCKET, "m").metadata["x-cos-meta-label"] == "%E7%8C%AB"  # type: ignore[union-attr]


@pytest.mark.parametrize("answer", ["403", "404", "200"])
def test_detect_label_on_an_unbound_bucket(answer: str, emulator: Emulator, cos_client: CosS3Client) -> None:
    emulator.set_profile(unbound_answer=answer)
    emulator.set_ci_bound(BUCKET, False)
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes(seed=1))
    call = lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg")  # noqa: E731
    if answer == "200":
        result = call()  # the SDK hands a non-XML body back as bytes, not a dict
        assert isinstance(result, bytes) and result.startswith(b"<!DOCTYPE html>")
    else:
        err = error_of(call)
        code = ci.UNBOUND_CODE_403 if answer == "403" else ci.UNBOUND_CODE_404
        assert (err.get_status_code(), err.get_error_code()) == (int(answer), code)
        assert err.get_request_id() not in ("", "Unknown")
    emulator.set_ci_bound(BUCKET)
    assert cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg")["Labels"]


def test_profiled_emulator_plays_every_profile(profiled_emulator: Emulator) -> None:
    client = make_client(profiled_emulator)
    client.put_object(Bucket=BUCKET, Key="p", Body=b"x")
    call = lambda: client.put_object_tagging(Bucket=BUCKET, Key="p", Tagging=tagging(("猫", "1")))  # noqa: E731
    if profiled_emulator.profile.tag_rule == "strict":
        assert error_of(call).get_error_code() == "InvalidTag"
    else:
        call()


def test_a_profile_refuses_unknown_values() -> None:
    with pytest.raises(ValueError, match="tag_rule must be one of utf8, strict"):
        Profile(tag_rule="ascii")
    with pytest.raises(ValueError, match="unbound_answer"):
        Emulator(appid=APPID, profile=Profile(unbound_answer="500"))
    assert {p.name for p in (Profile(), Profile(tag_rule="strict"))} == {"utf8-raw-403", "strict-raw-403"}
