"""Where the labels go: each write-back mode implements the same few steps.

The pipeline runs them in this order: the marker the event already shows (if any), read the
object's state, find the marker in it, measure the room, refine the eligibility verdict from
what was read, check the state again right before writing, and write.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from ..eligibility import Verdict
from ..events import CosRecord
from ..label import Label
from ..ports import ObjectStore
from ..run import RecordRun
from ..settings import Settings

S = TypeVar("S")


class WriteBackMode(Protocol[S]):
    name: str
    no_room_reason: str

    def marker_in_event(self, record: CosRecord) -> str | None:
        """The marker the event itself carries, so a known echo costs no call."""
        ...

    def read(self, run: RecordRun) -> S:
        """The object's current state, as this mode needs it (one call)."""
        ...

    def marker(self, state: S) -> str | None: ...

    def has_room(self, run: RecordRun, state: S) -> bool:
        """Whether at least one label fits beside what the user keeps on the object."""
        ...

    def refine(self, run: RecordRun, state: S, verdict: Verdict) -> Verdict:
        """The eligibility verdict, sharpened by what `read` learned (type, size)."""
        ...

    def changed_since(self, run: RecordRun, state: S) -> S | None:
        """The new state if the object changed since `state` was read, else None.

        Needed where the write takes no condition; a conditional write checks for itself.
        """
        ...

    def write(self, run: RecordRun, state: S, labels: list[Label]) -> list[Label]:
        """Write the labels and the marker onto the object; the labels actually written."""
        ...


def mode_for(settings: Settings, store: ObjectStore) -> WriteBackMode[Any]:
    from .metadata import MetadataMode
    from .tags import TagsMode

    if settings.mode == "metadata":
        return MetadataMode(store, settings)
    return TagsMode(store)
