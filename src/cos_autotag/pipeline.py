"""One record through the flow: eligibility → guard → detect → select → write back.

The pipeline receives its outside services (the COS gateway, an optional strict store) in
its constructor, so tests swap the cloud for the local emulator without flags deep inside.
Every outcome is a `RecordResult`; only a failure a retry could fix is marked retryable.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from . import cos_facts
from .cos_adapter import CosGateway
from .detect import Label, parse_detect_response
from .eligibility import SNIFF_BYTES, Verdict, check_bytes, check_record
from .errors import AlreadyInProgress, CosCallError, ObjectKeptChanging, StoreUnavailable
from .events import CosRecord
from .idempotency import Claim, StrictStore, marker_says_done
from .retry import Deadline, call_with_retry
from .selection import select_labels
from .settings import Settings
from .writeback import (
    label_room_in_tags,
    marker_in_metadata,
    marker_in_tags,
    metadata_room,
    plan_metadata,
    plan_tags,
)

T = TypeVar("T")

# The rendition detect-label sees for a photo over its 3 MB limit: a JPEG at most 1280 px a side.
THUMBNAIL_RULE = "imageMogr2/thumbnail/1280x1280/format/jpg"
# The smallest labels value worth a metadata rewrite ("x:0").
MIN_LABELS_META_BYTES = 3


@dataclass
class RecordResult:
    bucket: str
    key: str
    outcome: str  # labeled | skipped | duplicate | failed
    reason: str = ""
    labels: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    error_code: str = ""
    request_id: str = ""
    retryable: bool = False
    duration_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "outcome": self.outcome}
        if self.reason:
            out["reason"] = self.reason
        if self.labels:
            out["labels"] = self.labels
        out["calls"] = dict(self.calls)
        if self.error_code:
            out["error_code"], out["request_id"] = self.error_code, self.request_id
        out["duration_ms"] = self.duration_ms
        return out


class _Done(Exception):
    """Ends a record early with its result (skipped, duplicate)."""

    def __init__(self, outcome: str, reason: str = "") -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


class DetectGate(Protocol):
    """Paces detect-label calls (a backfill's token bucket); the trigger path needs none."""

    def acquire(self) -> None: ...

    def throttled(self) -> None: ...


class DetectCache(Protocol):
    """Answers kept outside the process (a backfill's checkpoint), so a crash between detect-label
    and the write-back does not pay for the same object twice."""

    def lookup(self, record: CosRecord) -> Any | None: ...

    def store(self, record: CosRecord, response: Any) -> None: ...


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        gateway: CosGateway,
        strict_store: StrictStore | None,
        log: Any,
        detect_gate: DetectGate | None = None,
        detect_cache: DetectCache | None = None,
    ) -> None:
        self.settings, self.gateway, self.store, self.log = settings, gateway, strict_store, log
        self.detect_gate, self.detect_cache = detect_gate, detect_cache

    def process(self, record: CosRecord, deadline: Deadline) -> RecordResult:
        started = time.monotonic()
        result = RecordResult(record.bucket, record.key, "labeled")
        log = self.log.bind(bucket=record.bucket, key=record.key, event_name=record.event_name)
        claimed = False
        try:
            verdict = check_record(record, self.settings)
            if not verdict.eligible and not verdict.needs_sniff:
                raise _Done("skipped", verdict.reason)
            claimed = self._claim(record, deadline, log)
            if self.settings.mode == "tags":
                self._tags_flow(record, verdict, deadline, result, log)
            else:
                self._metadata_flow(record, verdict, deadline, result, log)
            if claimed and self.store is not None:
                self._complete(record, deadline, log)
        except _Done as done:
            result.outcome, result.reason = done.outcome, done.reason
            if claimed and self.store is not None:
                # Skips are final for this upload too: a retry would decide the same.
                self._complete(record, deadline, log)
        except CosCallError as error:
            self._release(record, claimed, deadline, log)
            result.error_code, result.request_id = error.code, error.request_id
            if error.not_found:
                result.outcome, result.reason = "skipped", "object gone"
            elif error.operation == "DetectLabel" and not error.retryable and error.status in (400, 415):
                result.outcome, result.reason = "skipped", f"rejected by detect-label ({error.code})"
            else:
                result.outcome, result.reason, result.retryable = "failed", str(error), error.retryable
        except (AlreadyInProgress, ObjectKeptChanging) as error:
            self._release(record, claimed, deadline, log)
            result.outcome, result.reason, result.retryable = "failed", str(error), True
        except BaseException:
            self._release(record, claimed, deadline, log)
            raise
        result.duration_ms = round((time.monotonic() - started) * 1000)
        self._log_result(result, log)
        return result

    # --- guard ------------------------------------------------------------------------------

    def _claim(self, record: CosRecord, deadline: Deadline, log: Any) -> bool:
        if self.store is None:
            return False
        try:
            claim = self.store.claim(record, deadline)
        except StoreUnavailable as error:
            log.warning(
                "idempotency store unreachable; falling back to the object marker, so a concurrent "
                "duplicate delivery may pay for a second detect-label call",
                error=str(error),
            )
            return False
        if claim is Claim.DUPLICATE:
            raise _Done("duplicate", "completed in the idempotency store")
        if claim is Claim.IN_PROGRESS:
            raise AlreadyInProgress(f"{record.key}: another delivery of this upload is in progress")
        return True

    def _complete(self, record: CosRecord, deadline: Deadline, log: Any) -> None:
        assert self.store is not None
        try:
            self.store.complete(record, deadline)
        except StoreUnavailable as error:
            # The labels are written and the marker is on the object: a later duplicate costs a read.
            log.warning("could not mark the upload completed in the idempotency store", error=str(error))

    def _release(self, record: CosRecord, claimed: bool, deadline: Deadline, log: Any) -> None:
        if claimed and self.store is not None:
            try:
                self.store.release(record, deadline)
            except StoreUnavailable as error:
                log.warning("could not release the idempotency record; it expires by itself", error=str(error))

    # --- calls --------------------------------------------------------------------------------

    def _call(self, op: str, fn: Callable[[], T], deadline: Deadline, result: RecordResult, log: Any) -> T:
        def attempt() -> T:
            result.calls[op] += 1
            return fn()

        def on_retry(error: BaseException, attempt_no: int, delay: float) -> None:
            log.warning(
                "retrying after a retryable error",
                operation=op,
                attempt=attempt_no,
                delay_s=round(delay, 3),
                error_code=getattr(error, "code", ""),
                request_id=getattr(error, "request_id", ""),
            )

        return call_with_retry(attempt, deadline, on_retry=on_retry)

    def _resolve(
        self, record: CosRecord, read: Callable[[str], T], op: str, deadline: Deadline, result: RecordResult, log: Any
    ) -> tuple[str, T]:
        """Read the object's state under the first reading of its key that exists."""
        keys = (record.key, *record.key_alternatives)
        for index, key in enumerate(keys):
            try:
                state = self._call(op, lambda k=key: read(k), deadline, result, log)  # type: ignore[misc]
            except CosCallError as error:
                if error.not_found and index + 1 < len(keys):
                    continue
                raise
            if key != record.key:
                log.info("resolved the key through another reading of the event", resolved_key=key)
                result.key = key
            return key, state
        raise AssertionError("unreachable: keys is never empty")

    def _sniff(
        self, record: CosRecord, key: str, verdict: Verdict, deadline: Deadline, result: RecordResult, log: Any
    ) -> Verdict:
        if not verdict.needs_sniff:
            return verdict
        head = self._call(
            "GetObject",
            lambda: self.gateway.read_first_bytes(record.bucket, record.region, key, SNIFF_BYTES),
            deadline,
            result,
            log,
        )
        sniffed = check_bytes(head, record.size, self.settings)
        if not sniffed.eligible:
            raise _Done("skipped", sniffed.reason)
        return sniffed

    def _detect(
        self,
        record: CosRecord,
        key: str,
        verdict: Verdict,
        deadline: Deadline,
        result: RecordResult,
        log: Any,
        reuse: bool = True,
    ) -> list[Label]:
        detect_url = None
        if verdict.large:
            if record.size is not None and record.size > cos_facts.CI_PROCESS_MAX_BYTES:
                raise _Done("skipped", "too large")
            detect_url = self.gateway.thumbnail_url(record.bucket, record.region, key, THUMBNAIL_RULE)

        def detect() -> Any:
            if self.detect_gate is not None:
                self.detect_gate.acquire()
            try:
                return self.gateway.detect_labels(
                    record.bucket, record.region, key, self.settings.scenes, detect_url=detect_url
                )
            except CosCallError as error:
                if self.detect_gate is not None and error.retryable:
                    self.detect_gate.throttled()
                raise

        response = self.detect_cache.lookup(record) if self.detect_cache is not None and reuse else None
        if response is None:
            response = self._call("DetectLabel", detect, deadline, result, log)
            if self.detect_cache is not None:
                self.detect_cache.store(record, response)
        else:
            log.info("detect-label answer reused from the checkpoint")
        return select_labels(parse_detect_response(response), self.settings.min_confidence, self.settings.max_labels)

    # --- the two write-back modes ---------------------------------------------------------------

    def _tags_flow(
        self, record: CosRecord, verdict: Verdict, deadline: Deadline, result: RecordResult, log: Any
    ) -> None:
        key, tags = self._resolve(
            record,
            lambda k: self.gateway.get_tags(record.bucket, record.region, k),
            "GetObjectTagging",
            deadline,
            result,
            log,
        )
        if marker_says_done(marker_in_tags(tags), record):
            raise _Done("duplicate", "marker on the object")
        if label_room_in_tags(tags) < 1:
            # Checked before paying: the user's own tags leave no room for a marker and a label.
            raise _Done("skipped", "no room for tags")
        verdict = self._sniff(record, key, verdict, deadline, result, log)
        labels = self._detect(record, key, verdict, deadline, result, log)
        # A tag PUT replaces the whole set and takes no condition, so read the set again right
        # before writing and merge into that: tags set meanwhile are never overwritten.
        fresh = self._get_tags(record, key, deadline, result, log)
        if sorted(fresh) != sorted(tags):
            # The object changed while CI was labeling it: the user tagged it, or a new upload
            # replaced it (whose labels may already be on it). Label it once more as it is now.
            self._recheck_tags(record, fresh, log)
            tags = fresh
            labels = self._detect(record, key, verdict, deadline, result, log, reuse=False)
            fresh = self._get_tags(record, key, deadline, result, log)
            if sorted(fresh) != sorted(tags):
                raise ObjectKeptChanging(f"{record.key}: the object kept changing while it was being labeled")
        tags = fresh
        plan = plan_tags(tags, labels, record.upload_token)
        try:
            self._put_tags(record, key, plan.tags, deadline, result, log)
        except CosCallError as error:
            # COS's docs disagree on non-ASCII tags; if COS refuses them, keep the ASCII labels.
            if error.retryable or error.status != 400 or all(k.isascii() for k, _ in plan.tags):
                raise
            log.warning("COS refused non-ASCII tags; writing ASCII labels only", error_code=error.code)
            plan = plan_tags(tags, labels, record.upload_token, ascii_only=True)
            self._put_tags(record, key, plan.tags, deadline, result, log)
        if plan.left_out_for_room:
            log.warning(
                "fewer labels written: the object's own tags leave no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        if plan.left_out_invalid:
            log.info("labels COS would reject were left out", left_out=plan.left_out_invalid)
        result.labels = [{"name": lb.name, "confidence": lb.confidence} for lb in plan.written]

    def _get_tags(
        self, record: CosRecord, key: str, deadline: Deadline, result: RecordResult, log: Any
    ) -> list[tuple[str, str]]:
        return self._call(
            "GetObjectTagging",
            lambda: self.gateway.get_tags(record.bucket, record.region, key),
            deadline,
            result,
            log,
        )

    def _recheck_tags(self, record: CosRecord, fresh: list[tuple[str, str]], log: Any) -> None:
        if marker_says_done(marker_in_tags(fresh), record):
            raise _Done("duplicate", "labeled by another delivery of this upload meanwhile")
        if label_room_in_tags(fresh) < 1:
            raise _Done("skipped", "no room for tags")
        log.info("the tag set changed during detect-label: labeling the object as it is now")

    def _put_tags(
        self,
        record: CosRecord,
        key: str,
        tags: list[tuple[str, str]],
        deadline: Deadline,
        result: RecordResult,
        log: Any,
    ) -> None:
        self._call(
            "PutObjectTagging",
            lambda: self.gateway.put_tags(record.bucket, record.region, key, tags),
            deadline,
            result,
            log,
        )

    def _metadata_flow(
        self, record: CosRecord, verdict: Verdict, deadline: Deadline, result: RecordResult, log: Any
    ) -> None:
        # The event carries the object's metadata: the function's own copy is known for free.
        if marker_says_done(marker_in_metadata(record.user_meta), record):
            raise _Done("duplicate", "marker in the event")
        key, head = self._resolve(
            record,
            lambda k: self.gateway.head(record.bucket, record.region, k),
            "HeadObject",
            deadline,
            result,
            log,
        )
        if marker_says_done(marker_in_metadata(head), record):
            raise _Done("duplicate", "marker on the object")
        if metadata_room(head, record.upload_token) < MIN_LABELS_META_BYTES:
            raise _Done("skipped", "no room for metadata")
        if verdict.needs_sniff:
            # HEAD is authoritative for the type and size: decide from it if it tells.
            length = head.get("content-length", "")
            from_head = replace(
                record,
                key=key,
                size=int(length) if length.isdigit() else record.size,
                content_type=head.get("content-type", ""),
            )
            reread = check_record(from_head, self.settings)
            if not reread.needs_sniff:
                verdict = reread
                if not verdict.eligible:
                    raise _Done("skipped", verdict.reason)
        verdict = self._sniff(record, key, verdict, deadline, result, log)
        labels = self._detect(record, key, verdict, deadline, result, log)
        plan = plan_metadata(head, labels, record.upload_token)
        etag = head.get("etag", "")
        try:
            self._call(
                "CopyObject",
                lambda: self.gateway.copy_in_place(record.bucket, record.region, key, plan, if_match=etag),
                deadline,
                result,
                log,
            )
        except CosCallError as error:
            if error.status == 412:
                # Overwritten since the HEAD: the newer upload's own event labels the new content.
                raise _Done("skipped", "object changed during processing") from None
            raise
        if plan.left_out_for_room:
            log.warning(
                "fewer labels written: the object's metadata leaves no more room",
                left_out=[label.name for label in plan.left_out_for_room],
            )
        result.labels = [{"name": lb.name, "confidence": lb.confidence} for lb in plan.written]

    # --- log ------------------------------------------------------------------------------------

    def _log_result(self, result: RecordResult, log: Any) -> None:
        fields = result.as_dict()
        fields.pop("bucket"), fields.pop("key")
        if result.outcome == "failed":
            log.error("record failed", **fields)
        elif result.reason == "object gone" or result.error_code:
            log.warning("record " + result.outcome, **fields)
        else:
            log.info("record " + result.outcome, **fields)
