"""Label a bucket's existing objects here, through the function's own pipeline and guard.

The main thread lists, hands objects to a pool of workers and does all the bookkeeping
(report, checkpoint, progress bar) as their results come back, so none of it needs a lock.
Each object becomes the record an upload event would give, without an upload identity, so the
guard treats any marker on the object as "done": an object already labeled costs one read.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from cos_autotag import observability
from cos_autotag.errors import CosCallError
from cos_autotag.events import CosRecord
from cos_autotag.modes import mode_for
from cos_autotag.outcome import Outcome, Reason, RecordResult
from cos_autotag.pipeline import Pipeline
from cos_autotag.ports import LabelDetector
from cos_autotag.retry import MAX_ATTEMPTS, Deadline
from cos_autotag.settings import Settings
from cos_autotag_tools import cos_facts

from .checkpoint import AnswerCache, CheckpointWriter, ResumeState, Watermark
from .listing import ListedObject, list_objects
from .options import Options
from .ports import CheckpointedDetector, CountingGateway, DryRun, DryRunDetector, PacedDetector, Relabel
from .progress import Progress
from .rate import TokenBucket
from .report import WOULD_LABEL, BackfillResult, Report


class _StopCounting(Exception):
    pass


class Backfill:
    """One run's shared state: which objects to do, and what to record when each is done."""

    def __init__(
        self,
        options: Options,
        settings: Settings,
        gateway: CountingGateway,
        report: Report,
        progress: Progress,
        resume: ResumeState,
        checkpoint: CheckpointWriter | None,
    ) -> None:
        self.options, self.settings, self.gateway = options, settings, gateway
        self.report, self.progress, self.resume, self.checkpoint = report, progress, resume, checkpoint
        self.watermark = Watermark()
        # Detect-label answers kept in the checkpoint (set by run_local when there is one).
        self.answers: AnswerCache | None = None
        self.log = observability.get_logger()
        self._stop_counting = threading.Event()

    # --- what to do ---------------------------------------------------------------------------

    def objects(self) -> Iterator[ListedObject]:
        """Earlier failures first, then the listing after the checkpoint's mark."""
        for key, size in list(self.resume.retry.items()):
            self.report.retried += 1
            self.report.listed += 1
            yield ListedObject(key, size)
        opts = self.options
        for obj in list_objects(self.gateway, opts.bucket, opts.region, opts.prefix, after=self.resume.after):
            self.report.listed += 1
            if self.resume.skip(obj.key):
                self.report.resumed_skipped += 1
                self.progress.update()
                continue
            self.watermark.listed(obj.key)
            yield obj

    def start_counting(self) -> None:
        """List once more in the background, counting only, so the bar has a total and an ETA."""
        if not self.progress.enabled:
            return
        self.progress.add_total(len(self.resume.retry))

        def on_page(count: int) -> None:
            if self._stop_counting.is_set():
                raise _StopCounting()
            self.progress.add_total(count)

        def count() -> None:
            opts = self.options
            try:
                for _ in list_objects(
                    self.gateway, opts.bucket, opts.region, opts.prefix, after=self.resume.after, on_page=on_page
                ):
                    pass
            except _StopCounting:
                pass
            except Exception as error:  # the bar just has no total; the real listing reports errors
                self.log.warning("could not count the objects for the progress bar", error=str(error))

        threading.Thread(target=count, name="backfill-count", daemon=True).start()

    def stop_counting(self) -> None:
        self._stop_counting.set()

    def record_for(self, obj: ListedObject) -> CosRecord:
        # No content type and no upload identity: eligibility from the extension (or the bytes),
        # and any marker on the object counts as done.
        return CosRecord(self.options.bucket, self.options.region, obj.key, cos_facts.EVENT_PUT, size=obj.size)

    def precheck(self, obj: ListedObject) -> RecordResult | None:
        """A result decided from the listing alone, with no call."""
        if obj.storage_class.upper() in cos_facts.ARCHIVE_STORAGE_CLASSES:
            return RecordResult(self.options.bucket, obj.key, Outcome.SKIPPED, reason=Reason.ARCHIVED)
        return None

    # --- what to record -------------------------------------------------------------------------

    def finish(self, obj: ListedObject, result: RecordResult | BackfillResult) -> None:
        self.report.add(result)
        if self.checkpoint is not None:
            if result.outcome == Outcome.FAILED:
                self.checkpoint.failed(obj.key, obj.size, result.reason)
            else:
                self.checkpoint.done(obj.key, result.outcome)
        if self.answers is not None:
            self.answers.finished(obj.key)
        mark = self.watermark.finished(obj.key)
        if mark is not None and self.checkpoint is not None:
            self.checkpoint.mark(mark)
        self.progress.update(
            labeled=self.report.labeled, done=self.report.already_labeled, failed=len(self.report.failed)
        )

    def close(self, completed: bool) -> None:
        self.stop_counting()
        self.report.calls.update(self.gateway.calls)
        self.report.detect_answered = self.gateway.detect_answered
        if self.answers is not None:
            self.report.detect_reused = self.answers.reused
        if self.checkpoint is not None:
            if completed:
                self.checkpoint.end()
            self.checkpoint.close()
        self.progress.close()
        self.report.stop_clock()


def drive(
    backfill: Backfill,
    submit: Callable[[ThreadPoolExecutor, ListedObject], Future[Any]],
    on_result: Callable[[ListedObject, Any], None],
    workers: int,
) -> bool:
    """Feed objects to a pool, at most 2x`workers` waiting; True when the listing was exhausted.

    On Ctrl-C, nothing new starts, what is running finishes and is recorded, and the run stops.
    """
    report = backfill.report
    pending: dict[Future[Any], ListedObject] = {}

    def collect(block_until: str) -> None:
        done, _ = wait(list(pending), return_when=block_until)
        for future in done:
            obj = pending.pop(future)
            if not future.cancelled():
                on_result(obj, future.result())

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
        try:
            try:
                for obj in backfill.objects():
                    early = backfill.precheck(obj)
                    if early is not None:
                        backfill.finish(obj, early)
                        continue
                    while len(pending) >= 2 * workers:
                        collect(FIRST_COMPLETED)
                    pending[submit(pool, obj)] = obj
            except (CosCallError, ValueError) as error:
                # The listing failed for good: finish what is running, report, keep the checkpoint.
                report.aborted = f"listing failed: {error}"
                backfill.log.error("listing failed; stopping after the objects in progress", error=str(error))
            while pending:
                collect(FIRST_COMPLETED)
        except KeyboardInterrupt:
            report.interrupted = True
            backfill.stop_counting()
            for future in pending:
                future.cancel()  # not started yet: a resumed run does them
            try:
                while pending:
                    collect(FIRST_COMPLETED)
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: stop waiting; the checkpoint still has everything recorded
            return False
    return not report.aborted


def run_local(options: Options, settings: Settings, backfill: Backfill) -> None:
    """Label the objects here: `concurrency` workers, detect-label paced by the token bucket.

    The pipeline is the function's own; the backfill's needs wrap its ports: the detector
    (paced, checkpointed, or not called in a dry run) and the write-back mode (relabel, dry run).
    """
    gateway = backfill.gateway
    detector: LabelDetector
    bucket: TokenBucket | None = None
    mode = mode_for(settings, gateway)
    if options.relabel:
        mode = Relabel(mode)
    if options.dry_run:
        detector, mode = DryRunDetector(), DryRun(mode)
    else:
        bucket = TokenBucket(options.qps, options.burst)
        detector = PacedDetector(gateway, bucket)
    if backfill.checkpoint is not None and not options.dry_run:
        # --resume: an answer is on disk before the object's tags are written, and a resumed run
        # reuses it, so a crash in between does not pay for the object twice.
        backfill.answers = AnswerCache(backfill.checkpoint, backfill.resume.answers, backfill.log)
        detector = CheckpointedDetector(detector, backfill.answers, backfill.log)
    answers = backfill.answers
    log = backfill.log.bind(dry_run=True) if options.dry_run else backfill.log
    # No SCF retry stands behind the backfill, and it paces itself to the quota: a throttled record
    # may take as many attempts as the retry policy allows, not the function's 3 per invocation.
    pipeline = Pipeline(settings, gateway, detector, None, log, mode=mode, detect_requests=MAX_ATTEMPTS)
    run_id = uuid.uuid4().hex[:12]

    def work(obj: ListedObject) -> RecordResult | BackfillResult:
        record = backfill.record_for(obj)
        if answers is not None:
            answers.begin(obj)
        with observability.bound(backfill_run=run_id):
            try:
                result = pipeline.process(record, Deadline(options.object_deadline_s))
            except Exception as error:  # a bug must cost one object, not the whole run
                backfill.log.exception("unexpected error", bucket=record.bucket, key=record.key)
                return RecordResult(record.bucket, record.key, Outcome.FAILED, reason=f"unexpected error: {error!r}")
        if options.dry_run and result.outcome is Outcome.LABELED:
            # It reached the paid call, which the dry run does not make.
            backfill.log.info("would label", bucket=record.bucket, key=record.key, size=record.size)
            return BackfillResult(record.bucket, record.key, WOULD_LABEL)
        return result

    backfill.start_counting()
    completed = False
    try:
        completed = drive(
            backfill,
            lambda pool, obj: pool.submit(work, obj),
            backfill.finish,
            options.concurrency,
        )
    finally:
        if bucket is not None:
            backfill.report.rate = bucket.stats()
        backfill.close(completed)
