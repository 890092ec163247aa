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

from typing import TYPE_CHECKING, Any, NamedTuple

from ..label import Label

if TYPE_CHECKING:  # interfaces and annotations: a record never needs them loaded
    from ..ports import ObjectStore
    from ..ports import WriteBackMode as WriteBackMode
    from ..settings import Settings
else:

    def __getattr__(name: str) -> Any:
        # `WriteBackMode` lives with the other ports; the tooling still imports it from here.
        if name == "WriteBackMode":
            from ..ports import WriteBackMode

            return WriteBackMode
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Snapshot(NamedTuple):
    state: Any  # the mode's own view of the object (the tag set, the headers), handed back to `write`
    marker: str | None  # the function's marker on the object; None: not labeled
    has_room: bool  # at least one label fits beside what the user keeps on the object
    content_type: str | None = None  # the content's type as the read told it; None: it did not
    size: int | None = None  # the object's size as the read told it
    # The object must be left alone, and why (e.g. the user's tag where the marker goes): a skip
    # decided before paying.
    skip_reason: str | None = None


class Written(NamedTuple):
    labels: list[Label]  # the labels actually written (room and COS's rules may leave some out)


class ChangedMeanwhile(NamedTuple):
    """The object changed since the snapshot; nothing was written."""

    now: Snapshot | None  # the object as it is now, to label again; None: a newer upload replaced it


WriteResult = Written | ChangedMeanwhile


def mode_for(settings: Settings, store: ObjectStore) -> WriteBackMode:
    # Only the configured mode is imported: tags mode's cold start never loads metadata mode (and carry).
    if settings.mode == "metadata":
        from .metadata import MetadataMode

        return MetadataMode(store)
    from .tags import TagsMode

    return TagsMode(store, settings.tag_text)
