"""Paginated listing: pages, markers and the shapes the SDK hands back."""

from __future__ import annotations

from typing import Any

import pytest

from cos_autotag.errors import CosCallError
from cos_autotag_tools.backfill.listing import ListedObject, list_objects, parse_page


class PagedGateway:
    """A fake of CosGateway.list_objects over a sorted key list (pure logic, no SDK)."""

    def __init__(self, keys: list[str], fail_first: int = 0, next_marker: bool = True) -> None:
        self.keys = sorted(keys, key=str.encode)
        self.calls: list[dict[str, Any]] = []
        self.fail_first, self.next_marker = fail_first, next_marker

    def list_objects(self, bucket: str, region: str, prefix: str = "", marker: str = "", max_keys: int = 1000) -> Any:
        self.calls.append({"prefix": prefix, "marker": marker, "max_keys": max_keys})
        if self.fail_first:
            self.fail_first -= 1
            raise CosCallError("ListObjects", "SlowDown", "slow down", 503, "req-1", True)
        matching = [k for k in self.keys if k.startswith(prefix) and k.encode() > marker.encode()]
        page = matching[:max_keys]
        out: dict[str, Any] = {
            "Contents": [{"Key": k, "Size": str(len(k)), "StorageClass": "STANDARD"} for k in page],
            "IsTruncated": "true" if len(matching) > max_keys else "false",
        }
        if out["IsTruncated"] == "true" and self.next_marker:
            out["NextMarker"] = page[-1]
        return out


def keys(n: int) -> list[str]:
    return [f"img/{i:04d}.jpg" for i in range(n)]


@pytest.mark.parametrize("next_marker", [True, False])
def test_every_page_is_listed_in_order(next_marker: bool) -> None:
    gw = PagedGateway([*keys(25), "other/x.jpg"], next_marker=next_marker)
    listed = list(list_objects(gw, "b-1250000000", "ap-guangzhou", "img/", page_size=10))  # type: ignore[arg-type]
    assert [o.key for o in listed] == keys(25)
    assert listed[3] == ListedObject("img/0003.jpg", len("img/0003.jpg"), "STANDARD")
    assert [c["marker"] for c in gw.calls] == ["", "img/0009.jpg", "img/0019.jpg"]


def test_listing_starts_after_the_given_key() -> None:
    gw = PagedGateway(keys(25))
    listed = list(list_objects(gw, "b-1250000000", "ap-guangzhou", after="img/0019.jpg", page_size=10))  # type: ignore[arg-type]
    assert [o.key for o in listed] == keys(25)[20:]


def test_a_throttled_page_is_retried() -> None:
    gw = PagedGateway(keys(3), fail_first=1)
    assert len(list(list_objects(gw, "b-1250000000", "ap-guangzhou"))) == 3  # type: ignore[arg-type]
    assert len(gw.calls) == 2


def test_on_page_is_told_each_page_size() -> None:
    seen: list[int] = []
    gw = PagedGateway(keys(12))
    list(list_objects(gw, "b-1250000000", "ap-guangzhou", page_size=5, on_page=seen.append))  # type: ignore[arg-type]
    assert seen == [5, 5, 2]


def test_a_single_object_page_and_an_empty_bucket() -> None:
    assert parse_page({"Contents": {"Key": "a.jpg", "Size": "3"}, "IsTruncated": "false"}) == (
        [ListedObject("a.jpg", 3)],
        None,
    )
    assert parse_page({"IsTruncated": "false"}) == ([], None)


def test_a_truncated_page_with_no_way_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        parse_page({"Contents": [], "IsTruncated": "true"})


def test_a_listing_that_does_not_advance_stops_instead_of_looping() -> None:
    class Stuck:
        def list_objects(self, *args: Any, **kwargs: Any) -> Any:
            return {"Contents": [{"Key": "a.jpg", "Size": "1"}], "IsTruncated": "true", "NextMarker": "a.jpg"}

    with pytest.raises(ValueError, match="did not advance"):
        list(list_objects(Stuck(), "b-1250000000", "ap-guangzhou", after="a.jpg"))  # type: ignore[arg-type]


def test_a_bad_size_is_unknown_not_an_error() -> None:
    objects, _ = parse_page({"Contents": [{"Key": "a.jpg", "Size": "n/a"}], "IsTruncated": "false"})
    assert objects == [ListedObject("a.jpg", None)]


def test_each_object_keeps_its_etag_as_listed() -> None:
    page = {"Contents": [{"Key": "a.jpg", "Size": "3", "ETag": '"9a0364b9e99bb480dd25e1f0284c8555"'}]}
    objects, _ = parse_page({**page, "IsTruncated": "false"})
    assert objects == [ListedObject("a.jpg", 3, "", '"9a0364b9e99bb480dd25e1f0284c8555"')]
