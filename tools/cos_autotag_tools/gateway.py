"""The tooling's COS adapter: the function's own, plus the calls only the tools make.

Listing (backfill, find, show, gallery, untag) and tag deletion (untag) go through the same
SDK client, credentials and error classification as the function's calls; the deployed
function carries neither.
"""

from __future__ import annotations

from typing import Any

from cos_autotag.cos_adapter import CosGateway


class ToolGateway(CosGateway):
    def list_objects(
        self, bucket: str, region: str, prefix: str = "", marker: str = "", max_keys: int = 1000
    ) -> dict[str, Any]:
        response = self.call(
            "ListObjects", region, "list_objects", Bucket=bucket, Prefix=prefix, Marker=marker, MaxKeys=max_keys
        )
        return dict(response or {})

    def delete_tags(self, bucket: str, region: str, key: str) -> None:
        self.call("DeleteObjectTagging", region, "delete_object_tagging", Bucket=bucket, Key=key)
