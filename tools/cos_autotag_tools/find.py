"""`cos-autotag find QUERY`: the objects whose labels match a query (`query.py`).

By default the answer comes from the local label index the gallery keeps too
(`gallery/index.py`, one per endpoint, bucket, region and mode): one listing, and label reads
only for what the index cannot vouch for (a new or changed ETag, a key `untag` or `backfill`
on this machine touched, labels older than --labels-max-age); --fresh reads every label
again. The query itself runs in SQL there (`query_sql.py`). --no-index reads every listed
object in parallel instead, and --dataset asks MetaInsight.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping

from cos_autotag.errors import CosCallError

from .backfill.listing import ListedObject, list_objects
from .backfill.progress import Progress
from .bucket_args import ENV_NOTE, bucket_parser
from .command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, command
from .object_labels import (
    Bucket,
    ObjectLabels,
    ReadResult,
    add_mode_argument,
    check_concurrency,
    clean,
    explain,
    json_text,
    label_key,
    open_bucket,
    read_many,
)
from .query import HELP, Query, QueryError, best_confidence, key_prefix, matches, parse

DEFAULT_CONCURRENCY = 16
DEFAULT_LABELS_MAX_AGE_S = 600.0


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser(
        "find",
        "List the objects whose labels match a query. One listing of the bucket, and labels read "
        "(one GET tagging, or HEAD, per object) only where the local index cannot vouch for them. "
        f"Query: {HELP}. {ENV_NOTE}",
    )
    parser.add_argument(
        "label",
        metavar="QUERY",
        nargs="+",
        help="a label or a query, e.g. 浓缩咖啡, 猫>=60, '猫 AND NOT 狗' (several words are joined with spaces)",
    )
    parser.add_argument("--prefix", default="", help="only keys starting with this")
    parser.add_argument(
        "--min-confidence",
        type=int,
        default=0,
        metavar="C",
        help="only objects whose label confidence is at least C (0-100; default 0)",
    )
    add_mode_argument(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"objects read at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="ask Cloud Infinite MetaInsight's dataset NAME (made by `cos-autotag dataset NAME`) instead of "
        "listing the bucket: one request per 100 answers; see docs/deploy.md",
    )
    parser.add_argument(
        "--labels-max-age",
        type=float,
        default=DEFAULT_LABELS_MAX_AGE_S,
        metavar="S",
        help="read an object's labels again once the index's copy is S seconds old: a tag write elsewhere "
        f"(untag, relabel) changes no ETag (default {DEFAULT_LABELS_MAX_AGE_S:g})",
    )
    parser.add_argument("--fresh", action="store_true", help="read every object's labels again (and keep them)")
    parser.add_argument(
        "--no-index",
        action="store_true",
        help="use no local index: read every listed object's labels, and keep nothing",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (UTF-8) instead of lines")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none anyway if not a terminal)")
    return parser


def _find(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not 0 <= args.min_confidence <= 100:
        raise UsageError(f"--min-confidence must be 0 to 100, not {args.min_confidence}")
    args.label = " ".join(args.label)
    if not label_key(args.label):
        raise UsageError("LABEL is empty: give the label or query to look for, e.g. 浓缩咖啡 or '猫 AND NOT 狗'")
    try:
        query = parse(args.label)
    except QueryError as error:
        raise UsageError(f"cannot read the query: {error}") from error
    concurrency = check_concurrency(args.concurrency)
    bucket = open_bucket(args, env)

    if args.labels_max_age < 0:
        raise UsageError("--labels-max-age takes seconds, 0 or more")
    if args.dataset:
        return _find_in_dataset(args, query, bucket)
    if not args.no_index:
        return _find_in_index(args, query, bucket, env, concurrency)
    progress = Progress(not args.no_progress and sys.stderr.isatty(), f"find {args.label}")
    seen: Counter[str] = Counter()
    found: list[tuple[ReadResult, int | None]] = []
    failed: list[ReadResult] = []
    scanned = 0
    listing_prefix = _listing_prefix(args, query)
    objects = (
        obj
        for obj in list_objects(bucket.gateway, bucket.name, bucket.region, listing_prefix, on_page=progress.add_total)
        if not obj.key.endswith("/")  # a folder's placeholder carries no labels
        and obj.key.startswith(args.prefix)
    )
    try:
        for result in read_many(
            bucket.gateway, bucket.name, bucket.region, objects, args.mode, concurrency, lambda _: progress.update()
        ):
            if result.labels is None:
                if not result.gone:  # deleted since it was listed: not an error
                    failed.append(result)
                continue
            scanned += 1
            seen.update(name for name, _ in result.labels.labels)
            labels = result.labels.labels
            if not matches(query, result.listed.key, labels):
                continue
            confidence = best_confidence(query, labels)
            if (confidence or 0) >= args.min_confidence:
                found.append((result, confidence))
                if not args.json:
                    shown = "-" if confidence is None else confidence
                    _print_match(f"{clean(result.listed.key)}\t{shown}", progress)
    except (CosCallError, ValueError) as error:  # the listing itself failed, after its retries
        return _listing_failed(error, bucket, progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"cos-autotag find: interrupted after {scanned} objects", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    return _report(args, query, bucket, scanned, found, failed, seen)


run_find = command(_parser, _find, quiet_sdk=True)


def _listing_failed(error: CosCallError | ValueError, bucket: Bucket, progress: Progress) -> int:
    progress.close()
    reason = explain(error, bucket) if isinstance(error, CosCallError) else str(error)
    print(f"cos-autotag find: {reason}", file=sys.stderr)
    return EXIT_FAILED


def _listing_prefix(args: argparse.Namespace, query: Query) -> str:
    """The longer of --prefix and the query's own key: prefix, when one extends the other."""
    listing_prefix = max(args.prefix, key_prefix(query), key=len)
    if not (listing_prefix.startswith(args.prefix) and listing_prefix.startswith(key_prefix(query))):
        listing_prefix = args.prefix
    return str(listing_prefix)


def _find_in_index(
    args: argparse.Namespace, query: Query, bucket: Bucket, env: Mapping[str, str], concurrency: int
) -> int:
    """The answer from the local index, synced first with one listing (see the module's doc)."""
    from .gallery.index import IndexUnusable, LabelIndex, default_index_path

    endpoint = env.get("AUTOTAG_COS_ENDPOINT", "")
    path = default_index_path(bucket.name, env, endpoint, bucket.region, args.mode)
    try:
        index = LabelIndex(path, bucket.name, bucket.region, endpoint, args.mode)
    except IndexUnusable as error:
        raise UsageError(f"{error}, or run with --no-index") from error
    listing_prefix = _listing_prefix(args, query)
    progress = Progress(not args.no_progress and sys.stderr.isatty(), f"find {args.label}")
    failed: list[ReadResult] = []
    try:
        stats = index.sync(
            bucket, listing_prefix, args.mode, concurrency, progress, reindex=args.fresh,
            max_age_s=args.labels_max_age, everything=True, on_failed=failed.append,
        )  # fmt: skip
        progress.close()
        unread = {result.listed.key for result in failed}
        found: list[tuple[ReadResult, int | None]] = []
        for photo in index.select(query, listing_prefix):
            if photo.key in unread:
                continue
            confidence = best_confidence(query, photo.labels)
            if (confidence or 0) >= args.min_confidence:
                listed = ListedObject(photo.key, photo.size, "", photo.etag)
                labels = ObjectLabels(photo.key, photo.found_in, photo.marker, photo.labels)
                found.append((ReadResult(listed, labels), confidence))
                if not args.json:
                    print(f"{clean(photo.key)}\t{'-' if confidence is None else confidence}", flush=True)
        summary = index.summary(listing_prefix, False, 10)
        scanned = summary.count - sum(1 for key in unread if index.has_key(key))
    except (CosCallError, ValueError) as error:  # the listing itself failed, after its retries
        return _listing_failed(error, bucket, progress)
    except KeyboardInterrupt:
        progress.close()
        print("cos-autotag find: interrupted; what was read is kept in the index", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        index.close()
    as_of = time.strftime("%H:%M", time.localtime(summary.as_of))
    print(
        f"  (index: {stats.read} read, {stats.reused} unchanged, {stats.removed} gone; labels as of {as_of}; "
        "--fresh reads all again)",
        file=sys.stderr,
    )
    seen = Counter(dict(summary.labels))
    return _report(args, query, bucket, scanned, found, failed, seen)


def _find_in_dataset(args: argparse.Namespace, query: Query, bucket: Bucket) -> int:
    """The same answers from a MetaInsight dataset: the server narrows (`dataset_query.translate`),
    `query.matches` decides on each file's labels, as when listing."""
    from .dataset_query import key_of, labels_of, listed_of, translate
    from .metainsight import MetaInsight, MetaInsightError

    client = MetaInsight(bucket.gateway, bucket.name, bucket.region)
    server_query = translate(query, args.mode, bucket.name, args.prefix)
    seen: Counter[str] = Counter()
    found: list[tuple[ReadResult, int | None]] = []
    scanned = 0
    try:
        for file in client.files(args.dataset, server_query):
            key = key_of(file, bucket.name)
            if key.endswith("/") or not key.startswith(args.prefix):
                continue
            labels = labels_of(file, key, args.mode)
            scanned += 1
            seen.update(name for name, _ in labels.labels)
            if not matches(query, key, labels.labels):
                continue
            confidence = best_confidence(query, labels.labels)
            if (confidence or 0) >= args.min_confidence:
                found.append((ReadResult(listed_of(file, bucket.name), labels), confidence))
                if not args.json:
                    print(f"{clean(key)}\t{'-' if confidence is None else confidence}", flush=True)
    except MetaInsightError as error:
        print(f"cos-autotag find: {clean(str(error))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"cos-autotag find: interrupted after {scanned} objects", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"  (dataset {clean(args.dataset)}: {client.requests} MetaInsight requests)", file=sys.stderr)
    return _report(args, query, bucket, scanned, found, [], seen)


def _report(
    args: argparse.Namespace,
    query: Query,
    bucket: Bucket,
    scanned: int,
    found: list[tuple[ReadResult, int | None]],
    failed: list[ReadResult],
    seen: Counter[str],
) -> int:
    if args.json:
        document = {
            "label": args.label,
            "query": str(query),
            "bucket": bucket.name,
            "region": bucket.region,
            "prefix": args.prefix,
            "dataset": args.dataset,
            "min_confidence": args.min_confidence,
            "scanned": scanned,
            "matches": [{"key": r.listed.key, "confidence": c, "etag": r.listed.etag, **_rest(r)} for r, c in found],
            "failed": [{"key": r.listed.key, "error": str(r.error)} for r in failed],
        }
        print(json_text(document))
    _summary(args, scanned, found, failed, seen, bucket_name=bucket.name)
    for result in failed[:5]:
        assert result.error is not None
        print(f"  {clean(result.listed.key)}: {clean(explain(result.error, bucket))}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _print_match(line: str, progress: Progress) -> None:
    if progress.enabled and sys.stdout.isatty():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)  # above the bar, which is redrawn below it
    else:
        print(line, flush=True)


def _rest(result: ReadResult) -> dict[str, object]:
    assert result.labels is not None
    data = result.labels.as_dict()
    return {"mode": data["mode"], "labels": data["labels"]}


def _summary(
    args: argparse.Namespace,
    scanned: int,
    matches: list[tuple[ReadResult, int | None]],
    failed: list[ReadResult],
    seen: Counter[str],
    bucket_name: str,
) -> None:
    where = f"{bucket_name}/{args.prefix}"
    threshold = f" at confidence {args.min_confidence} or more" if args.min_confidence else ""
    line = f"{len(matches)} of {scanned} objects in {where} carry {clean(repr(args.label))}{threshold}"
    if failed:
        line += f"; {len(failed)} could not be read"
    print(line, file=sys.stderr)
    if not matches and seen:
        common = ", ".join(f"{clean(name)} ({count})" for name, count in seen.most_common(10))
        print(f"  labels found there, most common first: {common}", file=sys.stderr)
    elif not matches and scanned:
        print(
            "  none of them carries any label: has the function (or `cos-autotag backfill`) run on them?",
            file=sys.stderr,
        )
