"""`cos-autotag dataset NAME`: set up Cloud Infinite MetaInsight (智能检索) for `find --dataset`.

Creates the dataset (kept when it exists), binds the bucket to it (new uploads and tag changes
are then indexed by the service, asynchronously, within minutes), and indexes the objects already
there with CreateFileMetaIndex, one request per object, paced (--qps). It then reports how many
files the dataset answers for, and the cost in requests: MetaInsight is billed as 智能检索费用
(see the Cloud Infinite console for the price in your region).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from cos_autotag.errors import CosCallError

from .backfill.listing import list_objects
from .backfill.rate import TokenBucket
from .bucket_args import bucket_parser
from .command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, command
from .object_labels import clean, explain, open_bucket

DEFAULT_QPS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser(
        "dataset",
        "Create a MetaInsight dataset, bind the bucket to it and index the objects already there, "
        "so that `find --dataset NAME` asks the dataset instead of listing the bucket.",
    )
    parser.add_argument("name", metavar="NAME", help="the dataset's name (unique in the account)")
    parser.add_argument("--prefix", default="", help="index only the existing keys starting with this")
    parser.add_argument("--no-index", action="store_true", help="create and bind only; index nothing that exists")
    parser.add_argument(
        "--qps",
        type=float,
        default=DEFAULT_QPS,
        help=f"CreateFileMetaIndex requests per second (default {DEFAULT_QPS:g})",
    )
    return parser


def _dataset(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .metainsight import MetaInsight, MetaInsightError

    if not args.name.strip():
        raise UsageError("NAME is empty: give the dataset's name, e.g. photos")
    if not 0 < args.qps <= 1000:
        raise UsageError(f"--qps must be above 0 and at most 1000, not {args.qps:g}")
    bucket = open_bucket(args, env)
    client = MetaInsight(bucket.gateway, bucket.name, bucket.region)
    pace = TokenBucket(args.qps)
    indexed = listed_pages = 0
    try:
        created = client.create_dataset(args.name)
        print(f"dataset {clean(args.name)}: {'created' if created else 'exists already, kept'}", file=sys.stderr)
        client.bind(args.name)
        print(f"bound cos://{bucket.name} (new uploads and tag changes are indexed from now on)", file=sys.stderr)
        if not args.no_index:

            def counted(_: int) -> None:
                nonlocal listed_pages
                listed_pages += 1

            for obj in list_objects(bucket.gateway, bucket.name, bucket.region, args.prefix, on_page=counted):
                if obj.key.endswith("/"):
                    continue
                pace.acquire()
                client.index(args.name, obj.key)
                indexed += 1
        total = client.aggregate(args.name, None, "URI", "count").get("Value")
    except MetaInsightError as error:
        print(f"cos-autotag dataset: {clean(str(error))} (after indexing {indexed} objects)", file=sys.stderr)
        return EXIT_FAILED
    except CosCallError as error:
        print(f"cos-autotag dataset: {clean(explain(error, bucket))} (after indexing {indexed})", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"cos-autotag dataset: interrupted after indexing {indexed} objects; run it again", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"indexed {indexed} existing objects with {indexed} CreateFileMetaIndex requests "
        f"({listed_pages} LIST requests); indexing is asynchronous: files appear within minutes"
    )
    print(f"the dataset answers for {_count(total)} files now")
    print(
        f"cost: {client.requests} MetaInsight requests, billed as 智能检索费用 (price: see the Cloud Infinite "
        "console); each `find --dataset` then costs one request per 100 answers"
    )
    return EXIT_OK


run_dataset = command(_parser, _dataset, quiet_sdk=True)


def _count(value: object) -> str:
    from .metainsight import count_value

    count = count_value(value)
    return "an unknown number of" if count is None else str(count)
