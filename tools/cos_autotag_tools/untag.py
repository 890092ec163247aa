"""`cos-autotag untag`: take the function's labels off a bucket's objects, and nothing else.

What the function wrote, and only that, is removed:
- tags mode: its marker tag `autotag` and the `autotag:*` label tags the marker shows it wrote
  (`writeback.read_tags`: a user's `autotag:note` stays, and a user's `autotag` tag that is not a
  marker is left and reported). The tag set is read and written back without them; when no tag
  of the user's is left, the tagging is deleted (DeleteObjectTagging, COS's documented way to
  clear it) rather than written empty. The set is read again after the write: tags someone set
  while it ran are kept, and when their write brought the function's tags back (a tool that read
  the set before untag wrote), those are taken off again; an object that still differs is
  reported as changed during the run.
- metadata mode: its `x-cos-meta-autotag` and `x-cos-meta-autotag-labels` headers, through the
  same copy onto itself the function writes them with (every other header, the user's metadata,
  the storage class and the tags kept, and the encryption and the ACL read with GET Object acl
  carried: `cos_autotag.carry`), conditional on the ETag read just before: an object
  overwritten meanwhile answers 412 and is reported, not clobbered. The headers are the
  function's only when `x-cos-meta-autotag` holds its marker; otherwise they are the user's,
  left and reported. An object whose encryption, ACL or metadata the copy cannot keep exactly
  is left untouched and reported failed, with the fix.
- auto (the default): both, whichever the object carries.

Settings and credentials come from the same environment variables as the function and the
backfill (TENCENTCLOUD_SECRETID/SECRETKEY/SESSIONTOKEN, AUTOTAG_COS_ENDPOINT). JSON log lines go
to stdout, the progress bar and the report to stderr.

Two things COS does not let a client rule out, and what this does about them:
- A tag write takes no condition. An object re-uploaded between the tag read and the write may
  get the old object's user tags; the ETag is checked after the write and such an object is
  reported as changed during the run, for you to look at.
- A metadata change that keeps the ETag (another copy onto itself) between the HEAD and the copy
  cannot be told by a condition COS offers; the object is read again after the copy, and one
  that no longer reads as untag wrote it is reported as changed during the run.
- A metadata copy onto itself is an upload event (cos:ObjectCreated:Copy). The deployed trigger
  subscribes to Put, Post and CompleteMultipartUpload only, so the function does not see it. A
  trigger on cos:ObjectCreated:* would see it and, the marker being gone, label the object again:
  disable such a trigger before untagging.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cos_autotag import carry, observability
from cos_autotag.errors import CosCallError
from cos_autotag.retry import Deadline, call_with_retry
from cos_autotag.writeback import (
    LABEL_TAG_PREFIX,
    LABELS_META,
    MARKER_META,
    metadata_not_ours,
    plan_metadata_without_labels,
    read_tags,
    user_metadata,
)
from cos_autotag_tools import cos_facts

from .backfill.cli import connect, sigterm_interrupts
from .backfill.listing import ListedObject, list_objects
from .backfill.progress import Progress
from .backfill.runner import CountingGateway
from .bucket_args import add_walk_arguments, bucket_parser, resolve_bucket
from .command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, command, write_report
from .object_labels import MAX_CONCURRENCY, MODES, check_concurrency

PROG = "cos-autotag untag"
DEFAULT_CONCURRENCY = 8
OBJECT_DEADLINE_S = 60.0  # per object, retries of throttled or failed calls included
MAX_KEYS_SHOWN = 20

# What happened to one object.
UNTAGGED = "untagged"
WOULD_UNTAG = "would-untag"  # --dry-run
NOTHING = "nothing to remove"
CHANGED = "changed during the run"
FAILED = "failed"
USERS_MARKER_TAG = "the object's own `autotag` tag is not the function's marker: left as is (the function skips it)"

COPY_WARNING = (
    "metadata is removed by a copy of each object onto itself, which COS announces as "
    "cos:ObjectCreated:Copy. The deployed trigger does not subscribe to it; if you subscribed the function to "
    "cos:ObjectCreated:* (or :Copy), it will label these objects again, and bill for it: disable that trigger first."
)

T = TypeVar("T")


class UntagGateway(CountingGateway):
    """The backfill's counting gateway, plus the one call only untag makes."""

    def delete_tags(self, bucket: str, region: str, key: str) -> None:
        self._count("DeleteObjectTagging", self.inner.delete_tags, bucket, region, key)


@dataclass
class Outcome:
    key: str
    result: str  # UNTAGGED, WOULD_UNTAG, NOTHING, CHANGED or FAILED
    removed: list[str] = field(default_factory=list)  # tag keys and header names (to be) removed
    reason: str = ""
    left_as_is: str = ""  # something named like the function's that is the user's: kept, and why


def own_tags(tags: list[tuple[str, str]]) -> list[str]:
    return [key for key, _ in read_tags(tags).ours]


def own_metadata(head: Mapping[str, str]) -> list[str]:
    return [name for name in (MARKER_META, LABELS_META) if name in head]


def _same_etag(a: str, b: str) -> bool:
    return a.strip().strip('"') == b.strip().strip('"')


class Untagger:
    """Takes the function's labels off one object at a time (called from several threads)."""

    def __init__(self, gateway: UntagGateway, bucket: str, region: str, mode: str, dry_run: bool) -> None:
        self.gateway, self.bucket, self.region = gateway, bucket, region
        self.mode, self.dry_run = mode, dry_run
        self.log = observability.get_logger()

    def _call(self, fn: Any, deadline: Deadline, *args: Any) -> Any:
        return call_with_retry(partial(fn, self.bucket, self.region, *args), deadline)

    def untag(self, obj: ListedObject) -> Outcome:
        outcome = Outcome(obj.key, NOTHING)
        deadline = Deadline(OBJECT_DEADLINE_S)
        try:
            wrote_tags = self.mode != "metadata" and self._tags(obj, outcome, deadline)
            if self.mode == "tags" and not wrote_tags:
                return outcome
            head = self._call(self.gateway.head, deadline, obj.key)
            if wrote_tags and obj.etag and not _same_etag(head.get("etag", ""), obj.etag):
                outcome.result = CHANGED
                outcome.reason = "overwritten while its tags were rewritten: check its tags"
                return outcome
            if self.mode != "tags":
                self._metadata(obj, head, outcome, deadline)
        except CosCallError as error:
            if error.not_found:
                outcome.result, outcome.reason = CHANGED, "deleted during the run"
            else:
                outcome.result, outcome.reason = FAILED, str(error)
        except Exception as error:  # a bug must cost one object, not the whole run
            self.log.exception("unexpected error", bucket=self.bucket, key=obj.key)
            outcome.result, outcome.reason = FAILED, f"unexpected error: {error!r}"
        return outcome

    def _tags(self, obj: ListedObject, outcome: Outcome, deadline: Deadline) -> bool:
        """Take the function's tags off; True when a write was made."""
        reading = read_tags(self._call(self.gateway.get_tags, deadline, obj.key))
        if reading.marker_taken:
            outcome.left_as_is = USERS_MARKER_TAG
        if not reading.ours:
            return False
        outcome.removed.extend(key for key, _ in reading.ours)
        if self.dry_run:
            outcome.result = WOULD_UNTAG
            return False
        self._write_tags(obj.key, reading.user, deadline)
        outcome.result = UNTAGGED
        # A tag write takes no condition: read the set again, as the function does around its own.
        after = read_tags(self._call(self.gateway.get_tags, deadline, obj.key))
        if after.ours:
            # Someone wrote the set meanwhile from a read made before ours, bringing the function's
            # tags back: take them off again and keep whatever they added.
            self._write_tags(obj.key, after.user, deadline)
            again = read_tags(self._call(self.gateway.get_tags, deadline, obj.key))
            if again.ours or sorted(again.user) != sorted(after.user):
                outcome.result = CHANGED
                outcome.reason = "its tags kept changing while untag rewrote them: check its tags"
                return True
            outcome.reason = "tags set during untag were kept"
        elif sorted(after.user) != sorted(reading.user):
            outcome.reason = "tags set during untag were kept"  # theirs landed after ours: on the object
        return True

    def _write_tags(self, key: str, kept: list[tuple[str, str]], deadline: Deadline) -> None:
        if kept:
            self._call(self.gateway.put_tags, deadline, key, kept)
        else:
            self._call(self.gateway.delete_tags, deadline, key)

    def _metadata(self, obj: ListedObject, head: Mapping[str, str], outcome: Outcome, deadline: Deadline) -> None:
        not_ours = metadata_not_ours(head)
        if not_ours is not None:
            outcome.left_as_is = not_ours  # the user's headers, named like the function's
            return
        ours = own_metadata(head)
        if not ours:
            return
        outcome.removed.extend(ours)
        if self.dry_run:
            outcome.result = WOULD_UNTAG
            return
        if obj.storage_class.upper() in cos_facts.ARCHIVE_STORAGE_CLASSES:
            outcome.result, outcome.reason = FAILED, "archived: restore it first (a copy of it fails until then)"
            return
        try:
            kept = carry.keep(head, user_metadata(head), lambda: self._call(self.gateway.get_acl, deadline, obj.key))
        except carry.CannotCarry as error:
            outcome.result, outcome.reason = FAILED, f"left untouched: {error.problem}; {error.fix}"
            return
        except CosCallError as error:
            if error.status != 403 and error.code != "AccessDenied":
                raise
            outcome.result = FAILED
            outcome.reason = (
                f"left untouched: its ACL could not be read ({error.code}): allow cos:GetObjectACL, "
                "or a copy would give it the bucket's ACL"
            )
            return
        plan = plan_metadata_without_labels(head, kept)
        etag = head.get("etag", "")
        try:
            self._call(self.gateway.copy_in_place, deadline, obj.key, plan, etag)
        except CosCallError as error:
            if error.status == 412:
                # Overwritten since the HEAD: the newer content and its metadata are left alone.
                outcome.result, outcome.reason = (
                    CHANGED,
                    "overwritten before its metadata could be rewritten: left as is",
                )
                return
            raise
        # A copy keeps the ETag, so a metadata change by another copy cannot be ruled out by the
        # condition: read it again, and report an object that no longer reads as untag wrote it.
        after = self._call(self.gateway.head, deadline, obj.key)
        if (
            not _same_etag(after.get("etag", ""), etag)
            or own_metadata(after)
            or user_metadata(after) != user_metadata(head)
        ):
            outcome.result = CHANGED
            outcome.reason = "its metadata changed while untag rewrote it: check its x-cos-meta-* headers"
            return
        outcome.result = UNTAGGED


@dataclass
class Report:
    bucket: str
    prefix: str
    mode: str
    dry_run: bool
    listed: int = 0
    untagged: int = 0
    would_untag: int = 0
    nothing: int = 0
    changed: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    left_as_is: list[dict[str, str]] = field(default_factory=list)  # the user's, named like the function's
    removed: dict[str, int] = field(default_factory=dict)  # tag key / header -> objects (to be) cleared of it
    calls: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    aborted: str = ""

    def add(self, outcome: Outcome) -> None:
        if outcome.result == UNTAGGED:
            self.untagged += 1
        elif outcome.result == WOULD_UNTAG:
            self.would_untag += 1
        elif outcome.result == NOTHING:
            self.nothing += 1
        elif outcome.result == CHANGED:
            self.changed.append({"key": outcome.key, "reason": outcome.reason})
        else:
            self.failed.append({"key": outcome.key, "reason": outcome.reason})
        if outcome.left_as_is:
            self.left_as_is.append({"key": outcome.key, "reason": outcome.left_as_is})
        if outcome.result in (UNTAGGED, WOULD_UNTAG):
            kinds = {LABEL_TAG_PREFIX + "*" if name.startswith(LABEL_TAG_PREFIX) else name for name in outcome.removed}
            for kind in kinds:
                self.removed[kind] = self.removed.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "listed": self.listed,
            "untagged": self.untagged,
            "nothing_to_remove": self.nothing,
            "changed_during_run": self.changed,
            "failed": self.failed,
            "left_as_is": self.left_as_is,
            "removed": self.removed,
            "calls": self.calls,
            "interrupted": self.interrupted,
        }
        if self.dry_run:
            out["would_untag"] = self.would_untag
        if self.aborted:
            out["aborted"] = self.aborted
        return out

    def render(self) -> str:
        title = f"untag{' --dry-run' if self.dry_run else ''} ({self.mode}) of cos://{self.bucket}/{self.prefix}"
        lines = [title + (": INTERRUPTED" if self.interrupted else "")]
        if self.aborted:
            lines.append(f"  stopped early: {self.aborted}")
        lines.append(f"  objects listed        {self.listed}")
        if self.dry_run:
            lines.append(f"  would untag           {self.would_untag}  (nothing was changed)")
        else:
            lines.append(f"  untagged              {self.untagged}")
        for name, count in sorted(self.removed.items()):
            lines.append(f"    {name:<26} {count}")
        lines.append(f"  nothing to remove     {self.nothing}")
        for heading, items in (
            ("changed during the run", self.changed),
            ("failed", self.failed),
            ("left as is (the user's)", self.left_as_is),
        ):
            lines.append(f"  {heading:<21} {len(items)}")
            for item in items[:MAX_KEYS_SHOWN]:
                lines.append(f"    {item['key']}: {item['reason']}")
            if len(items) > MAX_KEYS_SHOWN:
                lines.append(f"    ... and {len(items) - MAX_KEYS_SHOWN} more (see --report)")
        calls = ", ".join(f"{op} {n}" for op, n in sorted(self.calls.items())) or "none"
        lines.append(f"  API calls             {sum(self.calls.values())}: {calls}")
        return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser(
        "untag",
        "Remove the labels cos-autotag wrote (its marker and label tags, or its x-cos-meta-autotag* "
        "headers) from a bucket's objects, keeping everything else.",
        epilog="Metadata is rewritten by a copy of the object onto itself, which COS announces as "
        "cos:ObjectCreated:Copy. The deployed trigger subscribes only to Put, Post and CompleteMultipartUpload, so "
        "the function does not see these copies; if your trigger subscribes to cos:ObjectCreated:*, disable it first, "
        "or the function labels each object again (the marker it would recognise is gone).",
    )
    add_walk_arguments(parser, DEFAULT_CONCURRENCY, MAX_CONCURRENCY)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="what to remove: the function's tags, its metadata headers, or whichever an object carries "
        "(auto, the default: one tag read and one HEAD per object)",
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing: report what would be removed")
    parser.add_argument("--report", metavar="FILE", type=Path, help="also write the report there, as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none anyway if not a terminal)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and only warning/error log lines")
    return parser


def _drive(
    untagger: Untagger, objects: Iterator[ListedObject], report: Report, progress: Progress, workers: int
) -> None:
    """At most 2x`workers` objects waiting; the main thread does all the bookkeeping.
    On Ctrl-C nothing new starts and what is running finishes and is reported."""
    pending: dict[Future[Outcome], ListedObject] = {}

    def collect() -> None:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            pending.pop(future)
            if not future.cancelled():
                record(future.result())

    def record(outcome: Outcome) -> None:
        report.add(outcome)
        if outcome.result in (UNTAGGED, WOULD_UNTAG):
            message = "untagged" if outcome.result == UNTAGGED else "would untag"
            untagger.log.info(message, bucket=report.bucket, key=outcome.key, removed=outcome.removed)
        elif outcome.result in (CHANGED, FAILED):
            untagger.log.warning(outcome.result, bucket=report.bucket, key=outcome.key, reason=outcome.reason)
        if outcome.left_as_is:
            untagger.log.warning("left as is", bucket=report.bucket, key=outcome.key, reason=outcome.left_as_is)
        progress.update(untagged=report.untagged or report.would_untag, failed=len(report.failed))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="untag") as pool:
        try:
            try:
                for obj in objects:
                    report.listed += 1
                    while len(pending) >= 2 * workers:
                        collect()
                    pending[pool.submit(untagger.untag, obj)] = obj
            except (CosCallError, ValueError) as error:
                report.aborted = f"listing failed: {error}"
                untagger.log.error("listing failed; stopping after the objects in progress", error=str(error))
            while pending:
                collect()
        except KeyboardInterrupt:
            report.interrupted = True
            for future in pending:
                future.cancel()
            try:
                while pending:
                    collect()
            except KeyboardInterrupt:
                pass


def _untag(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, region = resolve_bucket(args, env)
    check_concurrency(args.concurrency)
    _, gateway = connect(args.bucket, env, quiet=args.quiet, gateway_class=UntagGateway)
    assert isinstance(gateway, UntagGateway)
    if args.mode != "tags":
        print(f"{PROG}: {'with --dry-run nothing is copied; ' if args.dry_run else ''}{COPY_WARNING}", file=sys.stderr)

    report = Report(args.bucket, args.prefix, args.mode, args.dry_run)
    progress = Progress(
        not (args.no_progress or args.quiet) and sys.stderr.isatty(),
        f"untag{' --dry-run' if args.dry_run else ''} {args.bucket}/{args.prefix}",
    )
    untagger = Untagger(gateway, args.bucket, region, args.mode, args.dry_run)
    try:
        with sigterm_interrupts():
            _drive(
                untagger, list_objects(gateway, args.bucket, region, args.prefix), report, progress, args.concurrency
            )
    finally:
        progress.close()
        if not args.dry_run:  # a gallery on this machine reads these labels again
            from .gallery.index import mark_stale

            mark_stale(args.prefix, args.bucket, region, env)
    report.calls = dict(sorted(gateway.calls.items()))
    summary = report.as_dict()
    untagger.log.info("untag report", **summary)
    print(report.render(), file=sys.stderr)
    if args.report is not None:
        write_report(args.report, summary, PROG)
    if report.interrupted:
        return EXIT_INTERRUPTED
    # An object changed during the run may still carry labels (or need its tags checked): not done.
    return EXIT_FAILED if report.failed or report.changed or report.aborted else EXIT_OK


run_untag = command(_parser, _untag)
