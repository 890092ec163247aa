"""Metadata mode: labels as x-cos-meta-* headers, by copying the object onto itself.

The copy keeps every header, the storage class and the tags, and is conditional on the ETag
read by HEAD: it never overwrites newer content. A copy keeps only what it sends (436/10881), so
`prepare` works out what must go with it (`carry.keep`: the encryption, the ACL read with GET
Object acl, the user's metadata as HEAD will read it back); what cannot be kept exactly leaves
the object untouched, with a WARNING that says the fix. The function's two headers are written
only when they are the function's (`writeback.metadata_not_ours`).

The copy fires ObjectCreated:Copy; the event of that echo carries the marker, so it is
recognised with no call at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import carry
from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Reason
from ..run import RecordRun
from ..writeback import (
    LABELS_META,
    marker_in_metadata,
    metadata_not_ours,
    metadata_room,
    plan_metadata,
    user_metadata,
)
from . import ChangedMeanwhile, Snapshot, WriteResult, Written

# The smallest labels value worth a metadata rewrite ("x:0").
MIN_LABELS_META_BYTES = 3

ACL_FIX = (
    "allow the role cos:GetObjectACL on the bucket (the policy `cos-autotag policy --mode metadata` prints): "
    "without the object's ACL a copy would give it the bucket's ACL"
)


@dataclass(frozen=True)
class Head:
    headers: dict[str, str]  # as HEAD answered, names lower-cased
    kept: carry.Kept | None = None  # what the copy carries; None when the object will not be written


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
            Head(head),
            marker_in_metadata(head),
            metadata_room(head, record.upload_token) >= MIN_LABELS_META_BYTES,
            # HEAD is authoritative for the type and the size.
            content_type=head.get("content-type", ""),
            size=int(length) if length.isdigit() else None,
        )

    def prepare(self, run: RecordRun, snapshot: Snapshot) -> Snapshot:
        """Whether the headers are the function's, and what the copy must carry (one GET Object
        acl): the snapshot ready to write, or with `skip_reason` set."""
        head = snapshot.state.headers
        left_alone = self._not_ours(run, head)
        if left_alone is None:
            kept_or_reason = self._keep(run, head)
            if not isinstance(kept_or_reason, str):
                return snapshot._replace(state=Head(head, kept_or_reason))
            left_alone = kept_or_reason
        return snapshot._replace(skip_reason=left_alone)

    @staticmethod
    def _not_ours(run: RecordRun, head: dict[str, str]) -> str | None:
        problem = metadata_not_ours(head)
        if problem is None:
            return None
        run.log.warning("object left untouched: " + problem)
        return Reason.LABELS_HEADER_TAKEN if problem.startswith(LABELS_META) else Reason.MARKER_HEADER_TAKEN

    def _keep(self, run: RecordRun, head: dict[str, str]) -> carry.Kept | str:
        """What the copy must carry, or the reason the object is left untouched (said in a WARNING)."""
        record = run.record
        try:
            return carry.keep(
                head,
                user_metadata(head),
                lambda: run.call("GetObjectACL", lambda: self.store.get_acl(record.bucket, record.region, run.key)),
                record.user_meta,
            )
        except carry.CannotCarry as error:
            run.log.warning("object left untouched: " + error.problem, fix=error.fix)
            return Reason.CANNOT_KEEP
        except CosCallError as error:
            if error.status == 403 or error.code == "AccessDenied":
                run.log.warning(
                    "object left untouched: its ACL could not be read",
                    error_code=error.code,
                    request_id=error.request_id,
                    fix=ACL_FIX,
                )
                return Reason.ACL_UNREADABLE
            raise

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        record = run.record
        head = snapshot.state
        if head.kept is None:  # `prepare` decides; a snapshot it left alone is never written
            raise AssertionError("metadata mode: write of a snapshot `prepare` did not make ready")
        plan = plan_metadata(head.headers, labels, record.upload_token, head.kept)
        etag = head.headers.get("etag", "")
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
