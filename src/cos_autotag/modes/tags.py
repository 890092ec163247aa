"""Tags mode: labels as object tags, by a read-merge-write of the whole tag set.

Tagging fires no COS event, so this is the loop-safe write. A tag PUT replaces the whole set
and takes no condition, so the set is read once more right before the write (`changed_since`):
tags set meanwhile, by the user or a new upload, are merged into, never overwritten.
"""

from __future__ import annotations

from ..eligibility import Verdict
from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Reason
from ..ports import ObjectStore
from ..run import RecordRun
from ..writeback import TagPlan, label_room_in_tags, marker_in_tags, plan_tags

Tags = list[tuple[str, str]]


class TagsMode:
    name = "tags"
    no_room_reason = Reason.NO_ROOM_FOR_TAGS

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def marker_in_event(self, record: CosRecord) -> str | None:
        return None  # events carry metadata, not tags

    def read(self, run: RecordRun) -> Tags:
        record = run.record
        return run.resolve("GetObjectTagging", lambda key: self.store.get_tags(record.bucket, record.region, key))

    def marker(self, state: Tags) -> str | None:
        return marker_in_tags(state)

    def has_room(self, run: RecordRun, state: Tags) -> bool:
        return label_room_in_tags(state) >= 1

    def refine(self, run: RecordRun, state: Tags, verdict: Verdict) -> Verdict:
        return verdict  # a tag set says nothing about the content

    def changed_since(self, run: RecordRun, state: Tags) -> Tags | None:
        record = run.record
        fresh = run.call("GetObjectTagging", lambda: self.store.get_tags(record.bucket, record.region, run.key))
        return None if sorted(fresh) == sorted(state) else fresh

    def write(self, run: RecordRun, state: Tags, labels: list[Label]) -> list[Label]:
        record = run.record
        plan = plan_tags(state, labels, record.upload_token)
        try:
            self._put(run, plan)
        except CosCallError as error:
            # COS's docs disagree on non-ASCII tags; if COS refuses them, keep the ASCII labels.
            if error.retryable or error.status != 400 or all(k.isascii() for k, _ in plan.tags):
                raise
            run.log.warning("COS refused non-ASCII tags; writing ASCII labels only", error_code=error.code)
            plan = plan_tags(state, labels, record.upload_token, ascii_only=True)
            self._put(run, plan)
        if plan.left_out_for_room:
            run.log.warning(
                "fewer labels written: the object's own tags leave no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        if plan.left_out_invalid:
            run.log.info("labels COS would reject were left out", left_out=plan.left_out_invalid)
        return plan.written

    def _put(self, run: RecordRun, plan: TagPlan) -> None:
        record = run.record
        run.call("PutObjectTagging", lambda: self.store.put_tags(record.bucket, record.region, run.key, plan.tags))
