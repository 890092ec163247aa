"""Where the labels go: a write-back mode reads a snapshot of the object, and writes onto it.

`read` makes one call and tells the pipeline all it decides on before paying: the function's
marker, whether a label fits beside what the user keeps, and what the read learned about the
content. `write` writes the labels and the marker, or reports that the object changed since
the snapshot: the pipeline then labels the object as it is now, or leaves it to the newer
upload's own event.

A snapshot keeps the mode's own view of the object (the tag set, or the headers) for `write`;
more of what the object says (which tags the function can show it wrote, the headers a copy
must carry) belongs there, so a mode can learn more without the pipeline changing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..events import CosRecord
from ..label import Label
from ..run import RecordRun
from ..settings import Settings

if TYPE_CHECKING:
    from ..ports import ObjectStore


class Snapshot(NamedTuple):
    state: Any  # the mode's own view of the object (the tag set, the headers), handed back to `write`
    marker: str | None  # the function's marker on the object; None: not labeled
    has_room: bool  # at least one label fits beside what the user keeps on the object
    content_type: str | None = None  # the content's type as the read told it; None: it did not
    size: int | None = None  # the object's size as the read told it
    # The object must be left alone, and why (e.g. the user's tag where the marker goes): a skip
    # decided before paying.
    skip_reason: str | None = None
    # Why the mode will not write this object at all (said in a WARNING by the mode's `prepare`):
    # skipped before paying. None: it can be written.
    left_alone: str | None = None


class Written(NamedTuple):
    labels: list[Label]  # the labels actually written (room and COS's rules may leave some out)


class ChangedMeanwhile(NamedTuple):
    """The object changed since the snapshot; nothing was written."""

    now: Snapshot | None  # the object as it is now, to label again; None: a newer upload replaced it


WriteResult = Written | ChangedMeanwhile


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
        `left_alone` set."""
        ...

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        """Write the labels and the marker onto the object as `snapshot` saw it, never over a change."""
        ...


def mode_for(settings: Settings, store: ObjectStore) -> WriteBackMode:
    from .metadata import MetadataMode
    from .tags import TagsMode

    if settings.mode == "metadata":
        return MetadataMode(store)
    return TagsMode(store, settings.tag_text)
