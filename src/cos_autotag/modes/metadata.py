"""Metadata mode: labels as x-cos-meta-* headers, by copying the object onto itself.

The copy keeps every header, the storage class and the tags, and is conditional on the ETag
read by HEAD: it never overwrites newer content. The copy fires ObjectCreated:Copy; the event
of that echo carries the marker, so it is recognised with no call at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Reason
from ..run import RecordRun
from ..writeback import marker_in_metadata, metadata_room, plan_metadata
from . import ChangedMeanwhile, Snapshot, WriteResult, Written

Head = dict[str, str]

# The smallest labels value worth a metadata rewrite ("x:0").
MIN_LABELS_META_BYTES = 3


if TYPE_CHECKING:
    from ..ports import ObjectStore


class MetadataMode:
    no_room_reason = Reason.NO_ROOM_FOR_METADATA

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def marker_in_event(self, record: CosRecord) -> str | None:
        return marker_in_metadata(record.user_meta)

    def read(self, run: RecordRun) -> Snapshot:
        record = run.record
        head = run.resolve("HeadObject", lambda key: self.store.head(record.bucket, record.region, key))
        length = head.get("content-length", "")
        return Snapshot(
            head,
            marker_in_metadata(head),
            metadata_room(head, record.upload_token) >= MIN_LABELS_META_BYTES,
            # HEAD is authoritative for the type and the size.
            content_type=head.get("content-type", ""),
            size=int(length) if length.isdigit() else None,
        )

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        record = run.record
        plan = plan_metadata(snapshot.state, labels, record.upload_token)
        etag = snapshot.state.get("etag", "")
        try:
            run.call(
                "CopyObject",
                lambda: self.store.copy_in_place(record.bucket, record.region, run.key, plan, if_match=etag),
            )
        except CosCallError as error:
            if error.status == 412:
                # Overwritten since the HEAD: the newer upload's own event labels the new content.
                return ChangedMeanwhile(None)
            raise
        if plan.left_out_for_room:
            run.log.warning(
                "fewer labels written: the object's metadata leaves no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        return Written(plan.written)
