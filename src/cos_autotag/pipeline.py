"""One record through the flow, top to bottom:

    eligibility → guard → marker → room → first bytes → detect-label → select → (re-check) → write

Each step lives in its own module; this file only orders them. The outside services come in
through the constructor as ports (`ObjectStore`, `LabelDetector`, an optional `StrictStore`),
so the trigger, the backfill and the unit tests run the same code. Every outcome is a
`RecordResult`; only a failure a retry could fix is marked retryable.
"""

from __future__ import annotations

from typing import Any

from . import cos_facts
from .detect import MAX_DETECT_REQUESTS, detect
from .eligibility import Verdict, check_record, confirm_by_bytes
from .errors import AlreadyInProgress, CosCallError, ObjectKeptChanging, StoreUnavailable
from .events import CosRecord
from .idempotency import Claim, StrictStore, marker_says_done
from .label import Label
from .modes import WriteBackMode, mode_for
from .outcome import Finished, Outcome, Reason, RecordResult
from .ports import LabelDetector, ObjectStore
from .retry import Deadline
from .run import RecordRun
from .selection import select_labels
from .settings import Settings


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        detector: LabelDetector,
        guard: StrictStore | None,
        log: Any,
        relabel: bool = False,
        detect_requests: int = MAX_DETECT_REQUESTS,
    ) -> None:
        self.settings, self.store, self.detector, self.guard, self.log = settings, store, detector, guard, log
        self.mode: WriteBackMode[Any] = mode_for(settings, store)
        # Label again even where the marker says done (a backfill after a change of settings).
        self.relabel = relabel
        # detect-label requests per record, retries included (the backfill paces itself and allows more).
        self.detect_requests = detect_requests

    def process(self, record: CosRecord, deadline: Deadline) -> RecordResult:
        run = RecordRun.start(record, deadline, self.log)
        claimed = False
        try:
            verdict = check_record(record, self.settings)
            if not verdict.eligible and not verdict.needs_sniff:
                run.finish(Outcome.SKIPPED, verdict.reason)
            claimed = self._claim(run)
            run.result.labels = [{"name": lb.name, "confidence": lb.confidence} for lb in self._label(run, verdict)]
            self._complete(run, claimed)
        except Finished as done:
            run.result.outcome, run.result.reason = done.outcome, done.reason
            # Skips and duplicates are final for this upload too: a retry would decide the same.
            self._complete(run, claimed)
        except CosCallError as error:
            self._release(run, claimed)
            self._failed_call(run.result, error)
        except (AlreadyInProgress, ObjectKeptChanging) as error:
            self._release(run, claimed)
            run.result.outcome, run.result.reason, run.result.retryable = Outcome.FAILED, str(error), True
        except BaseException:
            self._release(run, claimed)
            raise
        run.result.duration_ms = run.elapsed_ms()
        _log_result(run)
        return run.result

    def _label(self, run: RecordRun, verdict: Verdict) -> list[Label]:
        """The steps that read, pay and write; returns the labels written."""
        mode, record = self.mode, run.record
        if self._done(mode.marker_in_event(record), record):
            run.finish(Outcome.DUPLICATE, Reason.MARKER_IN_EVENT)  # the function's own echo costs no call
        state = mode.read(run)
        if self._done(mode.marker(state), record):
            run.finish(Outcome.DUPLICATE, Reason.MARKER_ON_OBJECT)
        if not mode.has_room(run, state):
            run.finish(Outcome.SKIPPED, mode.no_room_reason)  # checked before paying
        verdict = mode.refine(run, state, verdict)
        verdict = confirm_by_bytes(run, self.store, verdict, self.settings)
        labels = self._detect(run, verdict)
        fresh = mode.changed_since(run, state)
        if fresh is not None:
            # The object changed while Cloud Infinite labeled it: the user tagged it, or a new
            # upload replaced it (whose labels may already be on it). Label it as it is now.
            if self._done(mode.marker(fresh), record):
                run.finish(Outcome.DUPLICATE, Reason.LABELED_MEANWHILE)
            if not mode.has_room(run, fresh):
                run.finish(Outcome.SKIPPED, mode.no_room_reason)
            run.log.info("the tag set changed during detect-label: labeling the object as it is now")
            state, labels = fresh, self._detect(run, verdict)
            if mode.changed_since(run, state) is not None:
                raise ObjectKeptChanging(f"{record.key}: the object kept changing while it was being labeled")
        return mode.write(run, state, labels)

    def _done(self, marker: str | None, record: CosRecord) -> bool:
        return not self.relabel and marker_says_done(marker, record)

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

    def _claim(self, run: RecordRun) -> bool:
        if self.guard is None:
            return False
        try:
            claim = self.guard.claim(run.record, run.deadline)
        except StoreUnavailable as error:
            run.log.warning(
                "idempotency store unreachable; falling back to the object marker, so a concurrent "
                "duplicate delivery may pay for a second detect-label call",
                error=str(error),
            )
            return False
        if claim is Claim.DUPLICATE:
            run.finish(Outcome.DUPLICATE, Reason.COMPLETED_IN_STORE)
        if claim is Claim.IN_PROGRESS:
            raise AlreadyInProgress(f"{run.record.key}: another delivery of this upload is in progress")
        return True

    def _complete(self, run: RecordRun, claimed: bool) -> None:
        if not claimed or self.guard is None:
            return
        try:
            self.guard.complete(run.record, run.deadline)
        except StoreUnavailable as error:
            # The labels are written and the marker is on the object: a later duplicate costs a read.
            run.log.warning("could not mark the upload completed in the idempotency store", error=str(error))

    def _release(self, run: RecordRun, claimed: bool) -> None:
        if not claimed or self.guard is None:
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
            result.reason = Reason.misconfigured(error.code, error.operation)
        elif error.not_found:
            result.outcome, result.reason = Outcome.SKIPPED, Reason.OBJECT_GONE
        elif error.operation == "DetectLabel" and error.code in cos_facts.IMAGE_REJECTION_CODES:
            result.outcome, result.reason = Outcome.SKIPPED, Reason.rejected_by_detect_label(error.code)
        else:
            result.outcome, result.reason, result.retryable = Outcome.FAILED, str(error), error.retryable


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
