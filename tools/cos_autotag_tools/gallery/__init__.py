"""`cos-autotag gallery`: a bucket's photos and their labels, in a web page on 127.0.0.1.

The labels come from a local SQLite index (`index.py`, one per endpoint, bucket, region and
mode), so opening a large bucket again costs one listing and reads only what changed; while the
page is open the index is re-synced every --poll seconds and labels older than --labels-max-age
are read again. The page's search box takes `find`'s query language and is evaluated by the
server, page by page. The thumbnails are Cloud Infinite renditions through short-lived signed
URLs (`server.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import webbrowser
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from cos_autotag.errors import CosCallError

from ..backfill.progress import Progress
from ..bucket_args import ENV_NOTE, bucket_parser
from ..command import EXIT_OK, FlagError, UsageError, command
from ..object_labels import (
    Bucket,
    add_mode_argument,
    check_concurrency,
    clean,
    explain,
    open_bucket,
    sdk_quiet,
)
from .dataset import DatasetPages
from .index import IndexUnusable, LabelIndex, SyncStats, default_index_path
from .server import Gallery, GalleryServer

DEFAULT_PORT = 8765
DEFAULT_CONCURRENCY = 16
DEFAULT_POLL_S = 30.0
DEFAULT_LABELS_MAX_AGE_S = 600.0

__all__ = ["Gallery", "GalleryServer", "LabelIndex", "open_gallery", "run_gallery"]


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser(
        "gallery",
        "Serve a page on 127.0.0.1 with the bucket's photos as Cloud Infinite thumbnails, their labels, a label "
        f"cloud and a search box. {ENV_NOTE}",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="no bucket of yours: label the demo's photos with the real function in a local emulator "
        "(as `cos-autotag demo` does) and show them",
    )
    parser.add_argument("--prefix", default="", help="only keys starting with this")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free one)"
    )
    parser.add_argument(
        "--index",
        type=Path,
        metavar="PATH",
        help="the SQLite label index (default: ~/.cache/cos-autotag/<bucket>-<hash of endpoint, region, mode>.sqlite)",
    )
    parser.add_argument(
        "--reindex", action="store_true", help="read every photo's labels again, e.g. after a relabeling"
    )
    add_mode_argument(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"label reads at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_S,
        metavar="S",
        help="re-list the bucket every S seconds while serving, so new uploads appear "
        f"(default {DEFAULT_POLL_S:g}; 0: never)",
    )
    parser.add_argument(
        "--labels-max-age",
        type=float,
        default=DEFAULT_LABELS_MAX_AGE_S,
        metavar="S",
        help="read a photo's labels again once they are S seconds old: a tag write (untag, relabel) changes "
        f"no ETag (default {DEFAULT_LABELS_MAX_AGE_S:g})",
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="answer the page from Cloud Infinite MetaInsight's dataset NAME (made by `cos-autotag dataset NAME`) "
        "instead of listing the bucket and keeping a local index; see docs/deploy.md",
    )
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while indexing")
    return parser


def _open(args: argparse.Namespace, env: Mapping[str, str]) -> GalleryServer:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, not {args.port}")
    if args.poll < 0 or args.labels_max_age < 0:
        raise UsageError("--poll and --labels-max-age take seconds, 0 or more")
    concurrency = check_concurrency(args.concurrency)
    bucket = open_bucket(args, env)
    if args.dataset:
        return _open_dataset(args, bucket)
    endpoint = env.get("AUTOTAG_COS_ENDPOINT", "")
    path = args.index or default_index_path(bucket.name, env, endpoint, bucket.region, args.mode)
    index = LabelIndex(path, bucket.name, bucket.region, endpoint, args.mode, check_same_thread=False)

    def sync(reread_all: bool, first: bool = False) -> SyncStats:
        progress = Progress(
            first and not args.no_progress and sys.stderr.isatty(), f"index {bucket.name}/{args.prefix}"
        )
        # The poller's own connection: the server reads through `index` meanwhile.
        own = index if first else LabelIndex(path, bucket.name, bucket.region, endpoint, args.mode)
        try:
            return own.sync(
                bucket, args.prefix, args.mode, concurrency, progress,
                reindex=reread_all, max_age_s=args.labels_max_age,
            )  # fmt: skip
        finally:
            progress.close()
            if own is not index:
                own.close()

    try:
        stats = sync(args.reindex, first=True)
    except CosCallError as error:
        index.close()
        raise UsageError(explain(error, bucket)) from error
    gallery = Gallery(bucket, args.prefix, index, stats, sync)
    first = gallery.page(limit=1)
    print(
        f"{first['shown']} photos in {bucket.name}/{args.prefix}: read {stats.read}, "
        f"unchanged {stats.reused}, gone {stats.removed}; index {index.path}",
        file=sys.stderr,
    )
    for key, reason in stats.failed[:5]:
        print(f"  could not read {clean(key)}: {clean(reason)}", file=sys.stderr)
    try:
        return GalleryServer(gallery, args.port, poll_s=args.poll)
    except OSError as error:
        index.close()
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {error}; pick another with --port N") from error


def _open_dataset(args: argparse.Namespace, bucket: Bucket) -> GalleryServer:
    """The gallery answered by a MetaInsight dataset: no listing, no local index (`dataset.py`)."""
    from ..metainsight import MetaInsight, MetaInsightError

    if args.index is not None or args.reindex:
        raise FlagError("--dataset keeps no local index: drop --index and --reindex")
    pages = DatasetPages(MetaInsight(bucket.gateway, bucket.name, bucket.region), args.dataset, bucket, args.mode)

    def sync(reread_all: bool) -> SyncStats:
        pages.reset()  # the next answers ask the dataset afresh: new uploads and tag changes appear
        return SyncStats()

    gallery = Gallery(bucket, args.prefix, pages, None, sync)
    try:
        first = gallery.page(limit=1)
    except MetaInsightError as error:
        raise UsageError(str(error)) from error
    print(
        f"{first['shown']} files in dataset {clean(args.dataset)} under {bucket.name}/{args.prefix} "
        f"({pages.client.requests} MetaInsight requests)",
        file=sys.stderr,
    )
    try:
        return GalleryServer(gallery, args.port, poll_s=args.poll)
    except OSError as error:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {error}; pick another with --port N") from error


def open_gallery(argv: list[str], env: Mapping[str, str] | None = None) -> GalleryServer:
    """Sync the index and bind the server, not yet serving. Raises UsageError or IndexUnusable."""
    return _open(_parser().parse_args(argv), os.environ if env is None else env)


def _check_demo(args: argparse.Namespace) -> None:
    if args.demo and (args.bucket or args.region):
        raise FlagError("--demo brings its own bucket: drop --bucket and --region")
    # Without --demo, the bucket and region come from the flags or COS_BUCKET / COS_REGION (open_bucket).


def _gallery(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _check_demo(args)
    with ExitStack() as stack:
        if args.demo:
            from .demo import DEMO_BUCKET, DEMO_REGION, demo_bucket

            env = stack.enter_context(demo_bucket())
            args.bucket, args.region = DEMO_BUCKET, DEMO_REGION
            if args.index is None:  # the demo's bucket lives as long as this command: so does its index
                args.index = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "demo.sqlite"
        try:
            with sdk_quiet():
                server = _open(args, env)
        except IndexUnusable as error:
            raise UsageError(str(error)) from error
        print(f"Gallery: {server.url}  (Ctrl-C to stop)", flush=True)
        if args.open:
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return EXIT_OK


run_gallery = command(_parser, _gallery)
