"""`cos-autotag show KEY`: one object's labels, confidences and marker, in either mode."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from cos_autotag.errors import CosCallError

from .bucket_args import ENV_NOTE, bucket_parser
from .command import EXIT_FAILED, EXIT_OK, command
from .object_labels import (
    ObjectLabels,
    add_mode_argument,
    clean,
    explain,
    json_text,
    label_lines,
    open_bucket,
    read_labels,
)


def _parser() -> argparse.ArgumentParser:
    parser = bucket_parser("show", f"Print one object's labels, their confidence and the function's marker. {ENV_NOTE}")
    parser.add_argument("key", metavar="KEY", help="the object's key, e.g. photos/coffee.png")
    add_mode_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (UTF-8) instead of text")
    return parser


def _show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    bucket = open_bucket(args, env)
    try:
        found = read_labels(bucket.gateway, bucket.name, bucket.region, args.key, args.mode)
    except CosCallError as error:
        if error.not_found:
            print(
                f"cos-autotag show: no object {clean(repr(args.key))} in {bucket.name} ({bucket.region}); keys are "
                "case-sensitive: `cos-autotag find` or a listing shows the ones there",
                file=sys.stderr,
            )
        else:
            print(f"cos-autotag show: {explain(error, bucket)}", file=sys.stderr)
        return EXIT_FAILED

    if args.json:
        print(json_text({"bucket": bucket.name, **found.as_dict()}))
        return EXIT_OK
    where = {"tags": "object tags", "metadata": "object metadata"}.get(found.found_in, "")
    if not found.labeled:
        searched = {"auto": "tags or metadata", "tags": "tags", "metadata": "metadata"}[args.mode]
        print(f"{clean(args.key)}: not labeled (no autotag marker or labels in its {searched})")
        _unreadable(found)
        return EXIT_OK
    print(f"{clean(args.key)}  ({where})")
    print(
        f"  marker: {clean(found.marker)}" if found.marker is not None else "  marker: none (labels without a marker)"
    )
    if found.labels:
        print(f"  {len(found.labels)} label{'s' if len(found.labels) != 1 else ''}, confidence 0-100:")
        print("\n".join(label_lines(found.labels, indent="    ")))
    else:
        print("  no label above the threshold the function ran with")
    _unreadable(found)
    return EXIT_OK


def _unreadable(found: ObjectLabels) -> None:
    if found.unreadable:
        print(f"  {len(found.unreadable)} unreadable (not a label the function wrote; value shown as stored):")
        print("\n".join(label_lines([(n, repr(v)) for n, v in found.unreadable], indent="    ")))


run_show = command(_parser, _show, quiet_sdk=True)
