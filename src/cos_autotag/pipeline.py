"""One record through the flow, top to bottom (`_flow`):

    eligibility → guard → marker → room → first bytes → prepare (left alone?) → detect-label → select → write (→ again)

Each step lives in its own module; this file only orders them. The outside services come in
through the constructor as ports (`ObjectStore`, `LabelDetector`, an optional `StrictStore`,
and the write-back mode, chosen from the settings unless given), so the trigger, the backfill
and the unit tests run the same code. A step returns, it never ends the record: the record ends
in `process`, with one `RecordResult`; only a failure a retry could fix is marked retryable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import cos_facts
from .detect import MAX_DETECT_REQUESTS, detect
from .eligibility import SNIFF_BYTES, Verdict, check_bytes, check_object, check_record
from .errors import AlreadyInProgress, CosCallError, ObjectKeptChanging, StoreUnavailable, UnreadableReply
from .events import CosRecord
from .idempotency.marker import marker_says_done
from .label import Label
from .modes import ChangedMeanwhile, Snapshot, mode_for
from .outcome import Outcome, Reason, RecordResult
from .retry import Deadline
from .run import RecordRun
from .selection import select_labels
from .settings import Settings

if TYPE_CHECKING:  # interfaces, for the type checker only: a record never needs them loaded
    from .idempotency import StrictStore
    from .ports import LabelDetector, ObjectStore, WriteBackMode

Ending = tuple[Outcome, str]  # how a record ends: the outcome and why


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        detector: LabelDetector,
        guard: StrictStore | None,
        log: Any,
        mode: WriteBackMode | None = None,
        detect_requests: int = MAX_DETECT_REQUESTS,
    ) -> None:
        self.settings, self.store, self.detector, self.guard, self.log = settings, store, detector, guard, log
        self.mode: WriteBackMode = mode if mode is not None else mode_for(settings, store)
        # detect-label requests per record, retries included (the backfill paces itself and allows more).
        self.detect_requests = detect_requests

    def process(self, record: CosRecord, deadline: Deadline) -> RecordResult:
        """The record's result; the one place a record ends."""
        run = RecordRun(record, deadline, self.log)
        result = run.result
        settled = True  # decided for this upload: a retry would decide the same
        try:
            result.outcome, result.reason = self._flow(run)
        except CosCallError as error:
            settled = False
            self._failed_call(result, error)
        except (AlreadyInProgress, ObjectKeptChanging) as error:
            settled = False
            result.outcome, result.reason, result.retryable = Outcome.FAILED, str(error), True
        except BaseException:
            self._release(run)
            raise
        if settled:
            self._complete(run)
        else:
            self._release(run)
        result.duration_ms = run.elapsed_ms()
        _log_result(run)
        return result

    def _flow(self, run: RecordRun) -> Ending:
        record, mode = run.record, self.mode
        verdict = check_record(record, self.settings)
        if not verdict.eligible and not verdict.needs_sniff:
            return Outcome.SKIPPED, verdict.reason
        if self.guard is not None and self._completed_in_store(run, self.guard):
            return Outcome.DUPLICATE, Reason.COMPLETED_IN_STORE
        if marker_says_done(mode.marker_in_event(record), record):
            return Outcome.DUPLICATE, Reason.MARKER_IN_EVENT  # the function's own echo costs no call
        snapshot = mode.read(run)
        if marker_says_done(snapshot.marker, record):
            return Outcome.DUPLICATE, Reason.MARKER_ON_OBJECT
        if (ending := _not_writable(snapshot, mode)) is not None:
            return ending  # the object says to leave it, or has no room: decided before paying
        if verdict.needs_sniff:
            verdict = self._decide_from_object(run, snapshot)
            if not verdict.eligible:
                return Outcome.SKIPPED, verdict.reason
        snapshot = mode.prepare(run, snapshot)
        if (ending := _not_writable(snapshot, mode)) is not None:
            return ending  # the user's headers, or what a write could not keep
        written = mode.write(run, snapshot, self._detect(run, verdict))
        if isinstance(written, ChangedMeanwhile) and written.now is not None:
            # The object changed while Cloud Infinite labeled it: the user tagged it, or a new
            # upload replaced it (whose labels may already be on it). Label it as it is now.
            snapshot = written.now
            if marker_says_done(snapshot.marker, record):
                return Outcome.DUPLICATE, Reason.LABELED_MEANWHILE
            if (ending := _not_writable(snapshot, mode)) is not None:
                return ending
            snapshot = mode.prepare(run, snapshot)
            if (ending := _not_writable(snapshot, mode)) is not None:
                return ending
            run.log.info("the tag set changed during detect-label: labeling the object as it is now")
            written = mode.write(run, snapshot, self._detect(run, verdict))
            if isinstance(written, ChangedMeanwhile) and written.now is not None:
                raise ObjectKeptChanging(f"{record.key}: the object kept changing while it was being labeled")
        if isinstance(written, ChangedMeanwhile):
            # Overwritten by a newer upload: its own event labels the new content.
            return Outcome.SKIPPED, Reason.CHANGED_DURING_PROCESSING
        run.result.labels = [{"name": lb.name, "confidence": lb.confidence} for lb in written.labels]
        return Outcome.LABELED, ""

    def _decide_from_object(self, run: RecordRun, snapshot: Snapshot) -> Verdict:
        """Eligibility for a record whose event did not tell the type: from what the read told,
        else from the object's first bytes (a ranged GET)."""
        record = run.record
        verdict = check_object(record, run.key, snapshot.content_type, snapshot.size, self.settings)
        if not verdict.needs_sniff:
            return verdict
        first = run.call(
            "GetObject", lambda: self.store.read_first_bytes(record.bucket, record.region, run.key, SNIFF_BYTES)
        )
        return check_bytes(first, record.size if snapshot.size is None else snapshot.size, self.settings)

    def _detect(self, run: RecordRun, verdict: Verdict) -> list[Label]:
        found = detect(run, self.detector, self.store, verdict, self.settings.scenes, self.detect_requests)
        chosen = select_labels(found, self.settings.min_confidence, self.settings.max_labels)
        if not chosen:
            # The marker is still written (a redelivery costs a read), but say why there is no label.
            best = select_labels(found, 0, 3)
            run.log.warning(
                "no label reached AUTOTAG_MIN_CONFIDENCE; only the marker is written "
                "(lower it and relabel with `cos-autotag backfill --relabel`)",
                min_confidence=self.settings.min_confidence,
                best=[{"name": lb.name, "confidence": lb.confidence} for lb in best],
            )
        return chosen

    # --- the strict store (optional) --------------------------------------------------------

    @staticmethod
    def _completed_in_store(run: RecordRun, guard: StrictStore) -> bool:
        """Claim the upload in the strict store: True when it was completed already; raises
        AlreadyInProgress while another delivery holds it; False to go on (claimed, or the store
        is unreachable and the object marker guards alone)."""
        from .idempotency.guard import Claim

        try:
            claim = guard.claim(run.record, run.deadline)
        except StoreUnavailable as error:
            run.log.warning(
                "idempotency store unreachable; falling back to the object marker, so a concurrent "
                "duplicate delivery may pay for a second detect-label call",
                error=str(error),
            )
            return False
        if claim is Claim.IN_PROGRESS:
            raise AlreadyInProgress(f"{run.record.key}: another delivery of this upload is in progress")
        run.claimed = claim is Claim.NEW
        return claim is Claim.DUPLICATE

    def _complete(self, run: RecordRun) -> None:
        if not run.claimed or self.guard is None:
            return
        try:
            self.guard.complete(run.record, run.deadline)
        except StoreUnavailable as error:
            # The labels are written and the marker is on the object: a later duplicate costs a read.
            run.log.warning("could not mark the upload completed in the idempotency store", error=str(error))

    def _release(self, run: RecordRun) -> None:
        if not run.claimed or self.guard is None:
            return
        try:
            self.guard.release(run.record, run.deadline)
        except StoreUnavailable as error:
            run.log.warning("could not release the idempotency record; it expires by itself", error=str(error))

    @staticmethod
    def _failed_call(result: RecordResult, error: CosCallError) -> None:
        result.error_code, result.request_id = error.code, error.request_id
        fix = cos_facts.configuration_fix(error.operation, error.code, error.status)
        if fix is not None:
            result.outcome, result.fix = Outcome.FAILED, fix
            # An unreadable reply keeps its own words (it may also be a garbled reply).
            unreadable = isinstance(error, UnreadableReply)
            result.reason = str(error) if unreadable else Reason.misconfigured(error.code, error.operation)
        elif error.not_found:
            result.outcome, result.reason = Outcome.SKIPPED, Reason.OBJECT_GONE
        elif error.operation == "DetectLabel" and error.code in cos_facts.IMAGE_REJECTION_CODES:
            result.outcome, result.reason = Outcome.SKIPPED, Reason.rejected_by_detect_label(error.code)
        else:
            result.outcome, result.reason, result.retryable = Outcome.FAILED, str(error), error.retryable


def _not_writable(snapshot: Snapshot, mode: WriteBackMode) -> Ending | None:
    """Why the object is left as it is before any paid call: what it holds says so, or no room."""
    if snapshot.skip_reason:
        return Outcome.SKIPPED, snapshot.skip_reason
    if not snapshot.has_room:
        return Outcome.SKIPPED, mode.no_room_reason
    return None


def _log_result(run: RecordRun) -> None:
    result = run.result
    fields = result.as_dict()
    fields.pop("bucket"), fields.pop("key"), fields.pop("fix", None)
    if result.fix:
        # The handler says what to fix once per invocation, at ERROR; this line names the record.
        run.log.warning("record failed: the deployment is misconfigured", **fields)
    elif result.outcome == Outcome.FAILED:
        run.log.error("record failed", **fields)
    elif result.reason == Reason.OBJECT_GONE or result.error_code:
        run.log.warning(f"record {result.outcome}", **fields)
    else:
        run.log.info(f"record {result.outcome}", **fields)
