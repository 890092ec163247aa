"""Metadata mode: labels as x-cos-meta-* headers, by copying the object onto itself.

The copy keeps every header, the storage class and the tags, and is conditional on the ETag
read by HEAD: it never overwrites newer content. The copy fires ObjectCreated:Copy; the event
of that echo carries the marker, so it is recognised with no call at all.
"""

from __future__ import annotations

from dataclasses import replace

from ..eligibility import Verdict, check_record
from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Outcome, Reason
from ..ports import ObjectStore
from ..run import RecordRun
from ..settings import Settings
from ..writeback import marker_in_metadata, metadata_room, plan_metadata

Head = dict[str, str]

# The smallest labels value worth a metadata rewrite ("x:0").
MIN_LABELS_META_BYTES = 3


class MetadataMode:
    name = "metadata"
    no_room_reason = Reason.NO_ROOM_FOR_METADATA

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def marker_in_event(self, record: CosRecord) -> str | None:
        return marker_in_metadata(record.user_meta)

    def read(self, run: RecordRun) -> Head:
        record = run.record
        return run.resolve("HeadObject", lambda key: self.store.head(record.bucket, record.region, key))

    def marker(self, state: Head) -> str | None:
        return marker_in_metadata(state)

    def has_room(self, run: RecordRun, state: Head) -> bool:
        return metadata_room(state, run.record.upload_token) >= MIN_LABELS_META_BYTES

    def refine(self, run: RecordRun, state: Head, verdict: Verdict) -> Verdict:
        if not verdict.needs_sniff:
            return verdict
        # HEAD is authoritative for the type and size: decide from it if it tells.
        length = state.get("content-length", "")
        from_head = replace(
            run.record,
            key=run.key,
            size=int(length) if length.isdigit() else run.record.size,
            content_type=state.get("content-type", ""),
        )
        reread = check_record(from_head, self.settings)
        if reread.needs_sniff:
            return verdict
        if not reread.eligible:
            run.finish(Outcome.SKIPPED, reread.reason)
        return reread

    def changed_since(self, run: RecordRun, state: Head) -> Head | None:
        return None  # the copy below is conditional on the ETag: it checks for itself

    def write(self, run: RecordRun, state: Head, labels: list[Label]) -> list[Label]:
        record = run.record
        plan = plan_metadata(state, labels, record.upload_token)
        etag = state.get("etag", "")
        try:
            run.call(
                "CopyObject",
                lambda: self.store.copy_in_place(record.bucket, record.region, run.key, plan, if_match=etag),
            )
        except CosCallError as error:
            if error.status == 412:
                # Overwritten since the HEAD: the newer upload's own event labels the new content.
                run.finish(Outcome.SKIPPED, Reason.CHANGED_DURING_PROCESSING)
            raise
        if plan.left_out_for_room:
            run.log.warning(
                "fewer labels written: the object's metadata leaves no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        return plan.written
