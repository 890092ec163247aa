"""What a backfill needs around the function's ports, as wrappers: the core knows none of it.

- `CountingGateway`: the SDK adapter with every request counted by operation, for the report.
  It counts below the pipeline, so it sees the listing, retries and a dry run's reads too, and
  tells the detect-label calls Cloud Infinite answered (billed) from those it refused.
- `PacedDetector`: detect-label calls paced by the run's token bucket, which backs off on throttling.
- `CheckpointedDetector`: answers kept in the checkpoint, so a crash between detect-label and
  the write-back does not pay for the same object twice.
- `Relabel`: the write-back mode with the marker unseen, so objects labeled before are labeled
  again (their old labels replaced), as after a change of settings.
- `DryRun`: the write-back mode that writes nothing, with `DRY_RUN_DETECTOR` standing in for the
  paid call: an object that reaches it is one a real run would label.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from cos_autotag.cos_adapter import Credentials
from cos_autotag.errors import CosCallError
from cos_autotag.events import CosRecord
from cos_autotag.label import Label
from cos_autotag.modes import ChangedMeanwhile, Snapshot, WriteBackMode, WriteResult, Written
from cos_autotag.ports import OPERATIONS, LabelDetector
from cos_autotag.run import RecordRun
from cos_autotag.settings import Settings
from cos_autotag.writeback import MetadataPlan
from cos_autotag_tools.gateway import ToolGateway

from .checkpoint import AnswerCache
from .rate import TokenBucket

T = TypeVar("T")


class CountingGateway:
    """Object storage, label detection and listing, over the SDK adapter, every request counted."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.inner = ToolGateway(settings, env)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.detect_answered = 0

    def _count(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            self.calls[operation] += 1
        try:
            response = fn(*args, **kwargs)
        except CosCallError as error:
            with self._lock:
                self.errors[f"{operation} {error.code}"] += 1
            raise
        if operation == "DetectLabel":
            with self._lock:
                self.detect_answered += 1
        return response

    def credentials(self) -> Credentials:
        return self.inner.credentials()

    def get_tags(self, bucket: str, region: str, key: str) -> list[tuple[str, str]]:
        return self._count(OPERATIONS["get_tags"], self.inner.get_tags, bucket, region, key)

    def put_tags(self, bucket: str, region: str, key: str, tags: Sequence[tuple[str, str]]) -> None:
        self._count(OPERATIONS["put_tags"], self.inner.put_tags, bucket, region, key, tags)

    def head(self, bucket: str, region: str, key: str) -> dict[str, str]:
        return self._count(OPERATIONS["head"], self.inner.head, bucket, region, key)

    def read_first_bytes(self, bucket: str, region: str, key: str, count: int) -> bytes:
        return self._count(OPERATIONS["read_first_bytes"], self.inner.read_first_bytes, bucket, region, key, count)

    def get_acl(self, bucket: str, region: str, key: str) -> Any:
        return self._count(OPERATIONS["get_acl"], self.inner.get_acl, bucket, region, key)

    def copy_in_place(self, bucket: str, region: str, key: str, plan: MetadataPlan, if_match: str) -> None:
        self._count(OPERATIONS["copy_in_place"], self.inner.copy_in_place, bucket, region, key, plan, if_match=if_match)

    def thumbnail_url(self, bucket: str, region: str, key: str, rule: str) -> str:
        return self.inner.thumbnail_url(bucket, region, key, rule)  # signs locally: no request

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        return self._count(
            OPERATIONS["detect_labels"], self.inner.detect_labels, bucket, region, key, scenes, detect_url=detect_url
        )

    def list_objects(
        self, bucket: str, region: str, prefix: str = "", marker: str = "", max_keys: int = 1000
    ) -> dict[str, Any]:
        return self._count("ListObjects", self.inner.list_objects, bucket, region, prefix, marker, max_keys)


class PacedDetector:
    def __init__(self, inner: LabelDetector, bucket: TokenBucket) -> None:
        self.inner, self.bucket = inner, bucket

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        self.bucket.acquire()
        try:
            return self.inner.detect_labels(bucket, region, key, scenes, detect_url=detect_url)
        except CosCallError as error:
            if error.retryable:
                self.bucket.throttled()
            raise


class CheckpointedDetector:
    """The first detect-label of an object in this run may be answered from the checkpoint.

    `AnswerCache.lookup` hands an answer out once, so when the object changes during the
    run and the pipeline labels it again, that second call goes to Cloud Infinite.
    """

    def __init__(self, inner: LabelDetector, answers: AnswerCache, log: Any) -> None:
        self.inner, self.answers, self.log = inner, answers, log

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        response = self.answers.lookup(bucket, key)
        if response is not None:
            self.log.info("detect-label answer reused from the checkpoint", bucket=bucket, key=key)
            return response
        response = self.inner.detect_labels(bucket, region, key, scenes, detect_url=detect_url)
        self.answers.store(bucket, key, response)
        return response


class Relabel:
    """The mode as if no marker were on the object: the write replaces the function's old labels."""

    def __init__(self, inner: WriteBackMode) -> None:
        self.inner, self.no_room_reason = inner, inner.no_room_reason

    def marker_in_event(self, record: CosRecord) -> str | None:
        return None

    def read(self, run: RecordRun) -> Snapshot:
        return self.inner.read(run)._replace(marker=None)

    def prepare(self, run: RecordRun, snapshot: Snapshot) -> Snapshot:
        return self.inner.prepare(run, snapshot)

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        written = self.inner.write(run, snapshot, labels)
        if isinstance(written, ChangedMeanwhile) and written.now is not None:
            return ChangedMeanwhile(written.now._replace(marker=None))
        return written


class DryRun:
    """The mode that reads as the real one and writes nothing: `--dry-run`."""

    def __init__(self, inner: WriteBackMode) -> None:
        self.inner, self.no_room_reason = inner, inner.no_room_reason

    def marker_in_event(self, record: CosRecord) -> str | None:
        return self.inner.marker_in_event(record)

    def read(self, run: RecordRun) -> Snapshot:
        return self.inner.read(run)

    def prepare(self, run: RecordRun, snapshot: Snapshot) -> Snapshot:
        return self.inner.prepare(run, snapshot)  # reads as the real run would: an object it leaves alone is reported

    def write(self, run: RecordRun, snapshot: Snapshot, labels: list[Label]) -> WriteResult:
        return Written([])


class DryRunDetector:
    """Answers in place of detect-label, with no call: a dry run's object that gets here would be labeled."""

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        # One label above any threshold, so the pipeline has no "nothing confident" warning to give.
        return {"Labels": [{"Name": "dry-run", "Confidence": "100"}]}
