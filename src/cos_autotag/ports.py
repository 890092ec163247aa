"""The two outside services the pipeline needs, and its write-back mode, as small interfaces.

`cos_adapter.CosGateway` implements both over the SDK. Anything else that speaks these
interfaces can stand in: in-memory fakes in the unit tests, and the backfill's wrappers that
pace, count, cache or stop detect-label calls around the real adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # only for the annotations: writeback is pure planning and imports nothing back
    from .events import CosRecord
    from .label import Label
    from .modes import Snapshot, WriteResult
    from .run import RecordRun
    from .writeback import MetadataPlan

# The COS/CI operation name of each port method: retries, counts and logs use these names.
OPERATIONS = {
    "get_tags": "GetObjectTagging",
    "put_tags": "PutObjectTagging",
    "head": "HeadObject",
    "get_acl": "GetObjectACL",
    "read_first_bytes": "GetObject",
    "copy_in_place": "CopyObject",
    "detect_labels": "DetectLabel",
}


class ObjectStore(Protocol):
    """Object storage: read and write one object's tags, headers and first bytes."""

    def get_tags(self, bucket: str, region: str, key: str) -> list[tuple[str, str]]: ...

    def put_tags(self, bucket: str, region: str, key: str, tags: Sequence[tuple[str, str]]) -> None: ...

    def head(self, bucket: str, region: str, key: str) -> dict[str, str]:
        """The object's headers, names lower-cased."""
        ...

    def get_acl(self, bucket: str, region: str, key: str) -> Any:
        """The object's ACL as GET Object acl answers it (metadata mode carries it on its copy)."""
        ...

    def read_first_bytes(self, bucket: str, region: str, key: str, count: int) -> bytes: ...

    def copy_in_place(self, bucket: str, region: str, key: str, plan: MetadataPlan, if_match: str) -> None:
        """Rewrite the object's metadata; fail with 412 if its ETag is no longer `if_match`."""
        ...

    def thumbnail_url(self, bucket: str, region: str, key: str, rule: str) -> str:
        """A short-lived signed URL of a Cloud Infinite rendition of the object (no call made)."""
        ...


class LabelDetector(Protocol):
    """Label detection: Cloud Infinite's detect-label, answering its raw response."""

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any: ...


class WriteBackMode(Protocol):
    no_room_reason: str  # why a record is skipped when the snapshot has no room

    def marker_in_event(self, record: CosRecord) -> str | None:
        """The marker the event itself carries, so a known echo costs no call."""
        ...

    def read(self, run: RecordRun) -> Snapshot:
        """The object as this mode needs it (one call)."""
        ...

    def prepare(self, run: RecordRun, snapshot: Snapshot) -> Snapshot:
        """What the write needs beyond the read, learnt once the object is known to need labels
        and before the paid call (metadata mode: what its copy must carry); or the snapshot with
        `skip_reason` set."""
        ...

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        """Write the labels and the marker onto the object as `snapshot` saw it, never over a change."""
        ...
