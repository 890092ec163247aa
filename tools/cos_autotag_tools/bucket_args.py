"""`--bucket` and `--region` for the bucket-wide commands (show, find, gallery, dataset, backfill, untag).

Each defaults to the deploy's own variable, COS_BUCKET or COS_REGION, so that after
`set -a; . ./.env; set +a` the commands of docs/deploy.md need neither flag. A flag given on the
command line wins over the environment. `cos-autotag check` reads the same two names.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from cos_autotag import cos_facts

from .command import UsageError

BUCKET_VAR = "COS_BUCKET"
REGION_VAR = "COS_REGION"


# Said by the commands whose settings and credentials come from the function's own variables.
ENV_NOTE = (
    "Settings and credentials come from the same environment as the function and the backfill "
    "(TENCENTCLOUD_SECRETID/SECRETKEY[/SESSIONTOKEN], AUTOTAG_COS_ENDPOINT)."
)


def bucket_parser(command: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of `cos-autotag <command>`, with --bucket and --region as its first options."""
    parser = argparse.ArgumentParser(prog=f"cos-autotag {command}", description=description, epilog=epilog)
    add_bucket_arguments(parser)
    return parser


def add_bucket_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", help=f"the bucket, <name>-<appid> (default: ${BUCKET_VAR})")
    parser.add_argument("--region", help=f"its region, e.g. ap-guangzhou (default: ${REGION_VAR})")


def add_walk_arguments(parser: argparse.ArgumentParser, default_concurrency: int, max_concurrency: int) -> None:
    """--prefix and --concurrency, for the commands that go through a bucket's objects."""
    parser.add_argument("--prefix", default="", help="only keys starting with this")
    concurrency_help = f"objects in progress at once (1-{max_concurrency}; default {default_concurrency})"
    parser.add_argument("--concurrency", type=int, default=default_concurrency, help=concurrency_help)


def parse_region(value: str, source: str) -> str:
    """A region name from a value (a full name, or a short code like gz); `source` names where it came from."""
    value = value.strip()
    if cos_facts.REGION_RE.match(value):
        return value
    if value in cos_facts.REGION_SHORT_CODES:
        return cos_facts.REGION_SHORT_CODES[value]
    raise UsageError(f"{source} {value!r} is not a region name like ap-guangzhou")


def resolve_bucket(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The bucket and region from --bucket/--region, else COS_BUCKET/COS_REGION; checked.

    Sets args.bucket and args.region to the answer. Raises UsageError naming the flag and the
    variable when neither gives a value, and the source of a value that is not valid.
    """
    bucket, bucket_source = _pick(args.bucket, env, "--bucket", BUCKET_VAR)
    region, region_source = _pick(args.region, env, "--region", REGION_VAR)
    missing = [
        (what, f"{flag} {metavar}", var)
        for value, what, flag, metavar, var in (
            (bucket, "bucket", "--bucket", "NAME-APPID", BUCKET_VAR),
            (region, "region", "--region", "REGION", REGION_VAR),
        )
        if not value
    ]
    if missing:
        whats, flags, names = (" and ".join(parts) for parts in zip(*missing, strict=True))
        raise UsageError(
            f"no {whats} given: pass {flags}, or set {names} (the deploy's .env sets both: `set -a; . ./.env; set +a`)"
        )
    if not cos_facts.BUCKET_RE.match(bucket):
        raise UsageError(f"{bucket_source} {bucket!r} is not a <name>-<appid> bucket name, e.g. photos-1250000000")
    args.bucket, args.region = bucket, parse_region(region, region_source)
    return args.bucket, args.region


def _pick(value: str | None, env: Mapping[str, str], flag: str, var: str) -> tuple[str, str]:
    if value is not None and value.strip():
        return value.strip(), flag
    return (env.get(var) or "").strip(), var
