"""Tags mode: labels as object tags, by a read-merge-write of the whole tag set.

Tagging fires no COS event, so this is the loop-safe write. A tag PUT replaces the whole set
and takes no condition, so `write` reads the set once more right before the PUT: tags set
meanwhile, by the user or a new upload, are reported and merged into, never overwritten.
"""

from __future__ import annotations

from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Reason
from ..ports import ObjectStore
from ..run import RecordRun
from ..writeback import TagPlan, label_room_in_tags, marker_in_tags, plan_tags
from . import ChangedMeanwhile, Snapshot, WriteResult, Written

Tags = list[tuple[str, str]]


class TagsMode:
    no_room_reason = Reason.NO_ROOM_FOR_TAGS

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def marker_in_event(self, record: CosRecord) -> str | None:
        return None  # events carry metadata, not tags

    def read(self, run: RecordRun) -> Snapshot[Tags]:
        record = run.record
        tags = run.resolve("GetObjectTagging", lambda key: self.store.get_tags(record.bucket, record.region, key))
        return _snapshot(tags)  # a tag set says nothing about the content

    def prepare(self, run: RecordRun, snapshot: Snapshot[Tags]) -> Snapshot[Tags]:
        return snapshot  # the tag set read is all the write needs

    def write(self, run: RecordRun, snapshot: Snapshot[Tags], labels: list[Label]) -> WriteResult:
        record = run.record
        fresh = run.call("GetObjectTagging", lambda: self.store.get_tags(record.bucket, record.region, run.key))
        if sorted(fresh) != sorted(snapshot.state):
            return ChangedMeanwhile(_snapshot(fresh))
        plan = plan_tags(snapshot.state, labels, record.upload_token)
        try:
            self._put(run, plan)
        except CosCallError as error:
            # COS's docs disagree on non-ASCII tags; if COS refuses them, keep the ASCII labels.
            if error.retryable or error.status != 400 or all(k.isascii() for k, _ in plan.tags):
                raise
            run.log.warning("COS refused non-ASCII tags; writing ASCII labels only", error_code=error.code)
            plan = plan_tags(snapshot.state, labels, record.upload_token, ascii_only=True)
            self._put(run, plan)
        if plan.left_out_for_room:
            run.log.warning(
                "fewer labels written: the object's own tags leave no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        if plan.left_out_invalid:
            run.log.info("labels COS would reject were left out", left_out=plan.left_out_invalid)
        return Written(plan.written)

    def _put(self, run: RecordRun, plan: TagPlan) -> None:
        record = run.record
        run.call("PutObjectTagging", lambda: self.store.put_tags(record.bucket, record.region, run.key, plan.tags))


def _snapshot(tags: Tags) -> Snapshot[Tags]:
    return Snapshot(tags, marker_in_tags(tags), label_room_in_tags(tags) >= 1)
