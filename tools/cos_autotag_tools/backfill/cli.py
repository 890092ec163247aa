"""`cos-autotag backfill`: label the objects already in a bucket.

Settings (mode, scenes, thresholds, AUTOTAG_COS_ENDPOINT) come from the same environment
variables as the function; credentials from TENCENTCLOUD_SECRETID/SECRETKEY/SESSIONTOKEN.
JSON log lines go to stdout, the progress bar and the final report to stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from cos_autotag import observability
from cos_autotag.events import MAX_RECORDS_PER_EVENT
from cos_autotag.settings import Settings

from ..bucket_args import add_walk_arguments, bucket_parser, parse_region, resolve_bucket
from ..command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, command, write_report
from .checkpoint import CheckpointError, CheckpointLock, CheckpointWriter, ResumeState, load
from .options import (
    DEFAULT_BATCH,
    DEFAULT_CONCURRENCY,
    DEFAULT_QPS,
    MAX_CONCURRENCY,
    OBJECT_DEADLINE_S,
    Options,
)
from .progress import Progress
from .report import Report
from .runner import Backfill, CountingGateway, run_local

# Where --via-scf sends its API calls instead of SCF's own endpoint (the local stand-in, in tests).
SCF_ENDPOINT_VAR = "AUTOTAG_SCF_ENDPOINT"


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser(
        "backfill",
        "Label the objects already in a bucket, through the same pipeline and guard as the "
        "function: an object already labeled costs one read and no detect-label call.",
    )
    add_walk_arguments(parser, DEFAULT_CONCURRENCY, MAX_CONCURRENCY)
    parser.add_argument(
        "--qps",
        type=float,
        default=DEFAULT_QPS,
        help=f"the account's detect-label quota, calls per second (default {DEFAULT_QPS:g}); "
        "the rate backs off when throttled and recovers",
    )
    parser.add_argument("--burst", type=float, default=1.0, help="calls allowed at once above the rate (default 1)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="make no paid call: read each object's marker and report what would be labeled and the cost",
    )
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="label every listed object again, ignoring the marker (after a change of AUTOTAG_SCENES, "
        "AUTOTAG_MIN_CONFIDENCE or AUTOTAG_MAX_LABELS); the function's old labels are replaced, the user's "
        "tags and metadata kept; with --resume no object is paid for twice in one run",
    )
    parser.add_argument(
        "--resume",
        metavar="FILE",
        type=Path,
        help="checkpoint file: record progress there (and each detect-label answer until its tags are written, "
        "so a crash does not pay for it twice), and continue from it if it exists",
    )
    parser.add_argument(
        "--object-timeout",
        metavar="SECONDS",
        type=float,
        default=OBJECT_DEADLINE_S,
        help=f"give up on an object after this long, retries included (default {OBJECT_DEADLINE_S:g})",
    )
    parser.add_argument("--report", metavar="FILE", type=Path, help="also write the final report there, as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none anyway if not a terminal)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and only warning/error log lines; the report stays"
    )
    scf = parser.add_argument_group("fan out to the deployed function")
    scf.add_argument(
        "--via-scf",
        metavar="FUNCTION",
        help="send the objects to this SCF function as COS events (asynchronous Invoke) instead of labeling here",
    )
    scf.add_argument("--scf-region", help="the function's region (default: --region)")
    scf.add_argument("--scf-namespace", default="default", help="the function's namespace (default: default)")
    scf.add_argument("--scf-qualifier", default="$LATEST", help="version or alias to invoke (default: $LATEST)")
    scf.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help=f"records per event (default {DEFAULT_BATCH}); keep batch x seconds per object under the "
        "function's timeout",
    )
    return parser


def scf_endpoint(env: Mapping[str, str]) -> tuple[str, str] | None:
    value = (env.get(SCF_ENDPOINT_VAR) or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise UsageError(f"{SCF_ENDPOINT_VAR}={value!r} is not valid: expected http://HOST:PORT or https://HOST:PORT")
    return parts.scheme, f"{parts.hostname}:{port}"


def parse_options(argv: list[str], env: Mapping[str, str]) -> Options:
    """The run's options from the command line (argparse exits 2 on a malformed one)."""
    return options_from_args(_parser().parse_args(argv), env)


def options_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    _, region = resolve_bucket(args, env)
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}, not {args.concurrency}")
    if not 0 < args.qps <= 10_000:
        raise UsageError(f"--qps must be above 0 (and at most 10000), not {args.qps:g}")
    if args.relabel and args.via_scf:
        raise UsageError(
            "--relabel runs here only: the deployed function keeps any labeled object as it is; "
            "drop --via-scf to relabel"
        )
    if args.burst < 1:
        raise UsageError(f"--burst must be at least 1, not {args.burst:g}")
    if not 1 <= args.object_timeout <= 900:
        raise UsageError(f"--object-timeout must be 1 to 900 seconds, not {args.object_timeout:g}")
    if not 1 <= args.batch <= MAX_RECORDS_PER_EVENT:
        raise UsageError(f"--batch must be 1 to {MAX_RECORDS_PER_EVENT}, not {args.batch}")
    if args.via_scf is not None and not args.via_scf.strip():
        raise UsageError("--via-scf needs a function name")
    return Options(
        bucket=args.bucket,
        region=region,
        prefix=args.prefix,
        concurrency=args.concurrency,
        qps=args.qps,
        burst=args.burst,
        dry_run=args.dry_run,
        relabel=args.relabel,
        resume=args.resume,
        progress=not (args.no_progress or args.quiet) and sys.stderr.isatty(),
        report_path=args.report,
        object_deadline_s=args.object_timeout,
        via_scf=args.via_scf.strip() if args.via_scf and not args.dry_run else None,
        scf_region=parse_region(args.scf_region, "--scf-region") if args.scf_region else region,
        scf_namespace=args.scf_namespace,
        scf_qualifier=args.scf_qualifier,
        batch=args.batch,
        scf_endpoint=scf_endpoint(env),
    )


def connect(
    bucket: str,
    env: Mapping[str, str],
    *,
    quiet: bool,
    gateway_class: type[CountingGateway] = CountingGateway,
) -> tuple[Settings, CountingGateway]:
    """The function's settings, logging and a counting gateway for a command on `bucket`, as every
    bucket-wide command sets them up. Raises SettingsError, ConfigurationError or UsageError."""
    settings = Settings.from_env(env)
    if settings.buckets and bucket not in settings.buckets:
        raise UsageError(f"{bucket} is not in AUTOTAG_BUCKETS: refused")
    observability.configure("WARNING" if quiet else settings.log_level)
    gateway = gateway_class(settings, env)
    creds = gateway.credentials()
    # Never printed, in any log line, whatever the level.
    observability.register_credentials(creds.secret_id, creds.secret_key, creds.token)
    return settings, gateway


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """`kill` (SIGTERM) stops the run like Ctrl-C: finish what is running, record it, report."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling run_backfill from a worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _backfill(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    options = options_from_args(args, env)
    settings, gateway = connect(options.bucket, env, quiet=args.quiet)
    if args.dry_run and args.via_scf:
        print("cos-autotag backfill: --dry-run invokes nothing: reporting what would be labeled", file=sys.stderr)

    run = "dry-run" if options.dry_run else ("via-scf" if options.via_scf else "label")
    scope = {
        "bucket": options.bucket,
        "region": options.region,
        "prefix": options.prefix,
        "mode": settings.mode,
        "via": f"scf:{options.scf_namespace}/{options.via_scf}" if options.via_scf else "local",
    }
    checkpoint: CheckpointWriter | None = None
    lock: CheckpointLock | None = None
    try:
        if options.resume and not options.dry_run:  # a dry run reads the checkpoint, never writes it
            # Locked before it is read: another run's lines cannot land after what this one read.
            lock = CheckpointLock(options.resume)
        resume = load(options.resume, scope) if options.resume else ResumeState()
        if lock is not None and options.resume:
            checkpoint = CheckpointWriter(options.resume, scope, lock=lock)
    except CheckpointError as error:
        if lock is not None:
            lock.release()
        print(f"cos-autotag backfill: {error}", file=sys.stderr)
        return EXIT_USAGE

    report = Report(options.bucket, options.region, options.prefix, run, scenes=settings.scenes)
    progress = Progress(options.progress, f"{run} {options.bucket}/{options.prefix}")
    backfill = Backfill(options, settings, gateway, report, progress, resume, checkpoint)
    log = observability.get_logger()
    log.info("backfill started", **{k: v for k, v in scope.items()}, run=run, qps=options.qps)
    try:
        with sigterm_interrupts():
            if options.via_scf:
                from .fanout import FanoutError, run_via_scf

                try:
                    run_via_scf(options, settings, backfill)
                except FanoutError as error:
                    print(f"cos-autotag backfill: {error}", file=sys.stderr)
                    return EXIT_USAGE
            else:
                run_local(options, settings, backfill)
    finally:
        if checkpoint is not None:
            checkpoint.close()
        if not options.dry_run:  # a gallery on this machine reads these labels again
            from ..gallery.index import mark_stale

            mark_stale(options.prefix, options.bucket, options.region, env)
    if options.resume and resume.finished and not report.listed:
        print(
            f"cos-autotag backfill: the checkpoint {options.resume} records a finished run over "
            f"{options.bucket}/{options.prefix}, and no object was uploaded after it: nothing to do "
            "(to go over every object again, run without --resume or with a new checkpoint file)",
            file=sys.stderr,
        )
    return _finish(report, options, log)


run_backfill = command(_parser, _backfill)


def _finish(report: Report, options: Options, log: Any) -> int:
    summary = report.as_dict()
    log.info("backfill report", **summary)
    print(report.render(), file=sys.stderr)
    if options.resume and (report.interrupted or report.aborted or report.failed):
        print(f"  continue with: --resume {options.resume}", file=sys.stderr)
    if options.report_path is not None:
        write_report(options.report_path, summary, "cos-autotag backfill")
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.failed or report.aborted else EXIT_OK
