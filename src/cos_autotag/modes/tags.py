"""Tags mode: labels as object tags, by a read-merge-write of the whole tag set.

Tagging fires no COS event, so this is the loop-safe write. A tag PUT replaces the whole set
and takes no condition, so `write` reads the set once more right before the PUT: tags set
meanwhile, by the user or a new upload, are reported and merged into, never overwritten.

Only the tags the marker shows the function wrote are replaced (`writeback.read_tags`); a user's
`autotag` tag that is not a marker makes the object a skip, read before paying.

COS's pages disagree on the characters a tag may hold (`AUTOTAG_TAG_TEXT`): `auto` writes labels
readable until COS answers InvalidTag to a set holding characters the strict rule refuses, then
rewrites that set in the encoded form at once and keeps the encoded form for the warm
container, with one WARNING; `utf8` never encodes (an InvalidTag fails the record with the fix);
`ascii-safe` encodes from the start.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .. import cos_facts
from ..errors import CosCallError
from ..events import CosRecord
from ..label import Label
from ..outcome import Reason
from ..run import RecordRun
from ..writeback import TagPlan, label_room, plan_tags, read_tags
from . import ChangedMeanwhile, Snapshot, WriteResult, Written

Tags = list[tuple[str, str]]

SWITCHED_TO_ENCODED = (
    "COS refused non-ASCII label tags (InvalidTag): it applies the strict tag rule, so labels it refuses are "
    "written in the encoded form autotag:b64:<base64 of the label> from now on in this container "
    "(`cos-autotag show` and `find` read them back). Set AUTOTAG_TAG_TEXT=ascii-safe to choose this "
    "from the start, or AUTOTAG_TAG_TEXT=utf8 to write labels only as read"
)


if TYPE_CHECKING:
    from ..ports import ObjectStore


class TagsMode:
    no_room_reason = Reason.NO_ROOM_FOR_TAGS

    def __init__(self, store: ObjectStore, tag_text: str = "auto") -> None:
        self.store = store
        self.tag_text = tag_text
        # The warm container's choice: encode the labels the strict rule refuses.
        self.encode = tag_text == "ascii-safe"
        self._switch_lock = threading.Lock()

    def marker_in_event(self, record: CosRecord) -> str | None:
        return None  # events carry metadata, not tags

    def read(self, run: RecordRun) -> Snapshot:
        record = run.record
        tags = run.resolve("GetObjectTagging", lambda key: self.store.get_tags(record.bucket, record.region, key))
        return _snapshot(tags)  # a tag set says nothing about the content

    def prepare(self, run: RecordRun, snapshot: Snapshot) -> Snapshot:
        return snapshot  # the tag set read is all the write needs

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        record = run.record
        fresh = run.call("GetObjectTagging", lambda: self.store.get_tags(record.bucket, record.region, run.key))
        if sorted(fresh) != sorted(snapshot.state):
            return ChangedMeanwhile(_snapshot(fresh))
        plan = plan_tags(snapshot.state, labels, record.upload_token, encode=self.encode)
        try:
            self._put(run, plan)
        except CosCallError as error:
            refused = error.status == 400 and error.code == cos_facts.CODE_INVALID_TAG
            if not (refused and plan.strict_unsafe and self.tag_text == "auto"):
                raise  # utf8: the record fails with the fix (cos_facts.configuration_fix)
            self._switch_to_encoded(run, error)
            plan = plan_tags(snapshot.state, labels, record.upload_token, encode=True)
            self._put(run, plan)
        if plan.left_out_for_room:
            run.log.warning(
                "fewer labels written: the object's own tags leave no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        if plan.left_out_invalid:
            run.log.info("labels COS would reject were left out", left_out=plan.left_out_invalid)
        return Written(plan.written)

    def _switch_to_encoded(self, run: RecordRun, error: CosCallError) -> None:
        with self._switch_lock:
            first = not self.encode
            self.encode = True
        if first:  # one WARNING per container: every later record goes straight to the encoded form
            run.log.warning(SWITCHED_TO_ENCODED, error_code=error.code, request_id=error.request_id)

    def _put(self, run: RecordRun, plan: TagPlan) -> None:
        record = run.record
        run.call("PutObjectTagging", lambda: self.store.put_tags(record.bucket, record.region, run.key, plan.tags))


def _snapshot(tags: Tags) -> Snapshot:
    reading = read_tags(tags)
    return Snapshot(
        tags,
        reading.marker_text,
        label_room(reading) >= 1,
        skip_reason=Reason.MARKER_TAG_TAKEN if reading.marker_taken else None,
    )
