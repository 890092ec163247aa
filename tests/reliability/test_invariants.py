"""The checks themselves: each one flags the damage it exists for, and passes a correct object.

Without these a scenario reporting 0 violations could mean a check that never fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import SimpleNamespace

import pytest

from cos_autotag.settings import Settings
from cos_autotag.writeback import LABELS_META, MARKER_META
from cos_autotag_tools.labels import DeterministicEngine
from tests.reliability import invariants
from tests.reliability.invariants import Expected, check_object, expected_labels, find_secrets, parse_log_lines
from tests.reliability.runner import _loops
from tests.support.images import jpeg

pytestmark = pytest.mark.reliability

SETTINGS = Settings(min_confidence=10)
BODY = jpeg(5)
TOKEN = invariants.upload_token("request-1")


def _expected(**changes: object) -> Expected:
    base = Expected(
        key="k.jpg",
        body=BODY,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-cache"},
        metadata={"x-cos-meta-owner": "alice"},
        tags={"team": "x"},
        upload_token=TOKEN,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _labels() -> list[invariants.Label]:
    labels = expected_labels(BODY, "image/jpeg", DeterministicEngine(), SETTINGS)
    assert labels, "a small real JPEG always has labels from the deterministic engine"
    return labels


def _state(mode: str = "tags", changes: Mapping[str, object] | None = None) -> invariants.ObjectState:
    """What a correct run leaves on the object."""
    labels = _labels()
    tags = {"team": "x"}
    metadata = {"x-cos-meta-owner": "alice"}
    if mode == "tags":
        tags |= {"autotag": f"v1:{TOKEN}", **{f"autotag:{lb.name}": str(lb.confidence) for lb in labels}}
    else:
        metadata |= {
            MARKER_META: f"v1:{TOKEN}",
            LABELS_META: ",".join(f"{lb.name}:{lb.confidence}" for lb in labels),
        }
    state = invariants.ObjectState(
        bucket="b-1250000000",
        key="k.jpg",
        body=BODY,
        headers={"Content-Type": "image/jpeg", "Cache-Control": "no-cache"},
        metadata=metadata,
        tags=tags,
        storage_class="STANDARD",
        etag='"e"',
        size=len(BODY),
        last_modified=0.0,
        request_id="request-1",
    )
    return replace(state, **(changes or {}))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_a_correctly_labeled_object_passes(mode: str) -> None:
    assert check_object(_expected(), _state(mode), mode, _labels()) == []


@pytest.mark.parametrize(
    ("damage", "flagged"),
    [
        ({"body": b"other"}, "body changed"),
        ({"headers": {"Content-Type": "image/png", "Cache-Control": "no-cache"}}, "Content-Type"),
        ({"headers": {"Content-Type": "image/jpeg"}}, "Cache-Control"),
        ({"storage_class": "STANDARD_IA"}, "storage class"),
        ({"metadata": {}}, "user metadata"),
    ],
)
def test_lost_content_or_user_data_is_flagged(damage: dict[str, object], flagged: str) -> None:
    problems = check_object(_expected(), _state("tags", damage), "tags", _labels())
    assert any(flagged in p for p in problems), problems


def test_a_changed_user_tag_is_flagged() -> None:
    state = _state()
    problems = check_object(_expected(), replace(state, tags={**state.tags, "team": "y"}), "tags", _labels())
    assert any("user tags" in p for p in problems), problems


def test_more_than_ten_tags_or_an_invalid_tag_is_flagged() -> None:
    state = _state()
    crowded = {**state.tags, **{f"extra{i}": "v" for i in range(10)}}
    assert any("more than 10" in p for p in invariants.check_tag_rules("k", crowded))
    assert any("breaks COS's rules" in p for p in invariants.check_tag_rules("k", {"a,b": "(x)"}))


def test_labels_of_other_content_are_flagged_in_both_modes() -> None:
    other = expected_labels(jpeg(6), "image/jpeg", DeterministicEngine(), SETTINGS)
    assert other and other != _labels()
    assert any("do not describe" in p for p in check_object(_expected(), _state("tags"), "tags", other))
    assert any("do not describe" in p for p in check_object(_expected(), _state("metadata"), "metadata", other))


def test_labels_on_unlabelable_content_and_labels_without_marker_are_flagged() -> None:
    assert any("cannot be labeled" in p for p in check_object(_expected(), _state(), "tags", None))
    state = _state()
    unmarked = {k: v for k, v in state.tags.items() if k != "autotag"}
    problems = check_object(_expected(), replace(state, tags=unmarked), "tags", _labels())
    assert any("without the marker" in p for p in problems), problems


def test_missing_labels_on_a_labelable_object_are_flagged() -> None:
    state = _state()
    bare = replace(state, tags={"team": "x"})
    assert any("do not describe" in p for p in check_object(_expected(), bare, "tags", _labels()))


def test_labels_are_capped_by_the_room_the_user_tags_leave() -> None:
    nine = _expected(tags={f"t{i}": "v" for i in range(9)})
    assert invariants.labels_that_fit(nine, _labels(), "tags", TOKEN) == []
    eight = _expected(tags={f"t{i}": "v" for i in range(8)})
    assert invariants.labels_that_fit(eight, _labels(), "tags", TOKEN) == _labels()[:1]


def test_a_deleted_object_must_stay_gone_and_a_kept_one_must_exist() -> None:
    assert check_object(Expected(key="k.jpg", deleted=True), None, "tags", None) == []
    assert check_object(Expected(key="k.jpg", deleted=True), _state(), "tags", None)
    assert check_object(_expected(), None, "tags", _labels()) == ["k.jpg: the object is gone"]


def test_the_oracle_says_text_and_corrupt_jpegs_cannot_be_labeled() -> None:
    engine = DeterministicEngine()
    assert expected_labels(b"hello" * 100, "image/jpeg", engine, SETTINGS) is None
    assert expected_labels(BODY[:4] + bytes(2000), "image/jpeg", engine, SETTINGS) is None
    assert expected_labels(BODY, "text/plain", engine, SETTINGS) is None  # declared as something else


def test_secrets_and_signatures_are_found_and_redacted_ones_are_not() -> None:
    found = find_secrets(
        ["ok line", "key=s3cr3t-value here", "Authorization: q-sign-algorithm=sha1&q-signature=0123456789abcdef"],
        ["s3cr3t-value"],
    )
    assert found == ["log text #1 holds secret #0", "log text #2 holds a request signature"]
    assert find_secrets(['{"url": "...&q-signature=***"}'], ["s3cr3t-value"]) == []


def test_a_line_that_is_not_json_is_reported() -> None:
    lines, bad = parse_log_lines('{"level": "info"}\nplain text\n[1, 2]\n')
    assert lines == [{"level": "info"}] and bad == ["plain text", "[1, 2]"]


def test_processing_the_functions_own_write_again_is_a_loop() -> None:
    labeled_again = SimpleNamespace(
        outcome="ok", result={"results": [{"key": "k.jpg", "outcome": "labeled", "calls": {"DetectLabel": 1}}]}
    )
    assert _loops(labeled_again, ["copy-1"], {}, {"copy-1": "k.jpg"})
    recognised = SimpleNamespace(
        outcome="ok", result={"results": [{"key": "k.jpg", "outcome": "duplicate", "calls": {}}]}
    )
    assert _loops(recognised, ["copy-1"], {}, {"copy-1": "k.jpg"}) == []
    # A user's upload is not the function's own write.
    assert _loops(labeled_again, ["upload-1"], {"upload-1": "k.jpg"}, {}) == []
