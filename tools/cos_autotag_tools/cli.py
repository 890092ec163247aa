"""The `cos-autotag` command.

    cos-autotag invoke EVENT.json    run the handler on an event, against COS or AUTOTAG_COS_ENDPOINT
    cos-autotag local                serve the local COS + Cloud Infinite emulator
    cos-autotag demo                 the whole flow on real photos, locally, in one command
    cos-autotag backfill ...         label the objects already in a bucket
    cos-autotag policy ...           the execution role's least-privilege CAM policy (JSON)
    cos-autotag check ...            preflight: settings, credentials, bucket, tag access, CI

Sub-commands other than `invoke` live in their own modules and are imported only when used,
so `invoke` stays as light as the deployed function.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from cos_autotag.errors import SettingsError


def _context(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "function_name": args.function_name,
        "function_version": "$LATEST",
        "namespace": "default",
        "memory_limit_in_mb": 128,
        "time_limit_in_ms": args.timeout_ms,
    }


def _invoke(args: argparse.Namespace) -> int:
    from cos_autotag.errors import ConfigurationError, RetryableFailure
    from cos_autotag.handler import App

    try:
        event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"cos-autotag invoke: cannot read {args.event}: {error}", file=sys.stderr)
        return 2
    try:
        app = App.from_env()
        summary = app.handle(event, _context(args))
    except (SettingsError, ConfigurationError) as error:
        print(f"cos-autotag invoke: {error}", file=sys.stderr)
        return 2
    except RetryableFailure as error:
        print(f"cos-autotag invoke: {error} (SCF would retry this invocation)", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # These parse their own arguments.
    if argv and argv[0] == "local":
        from .emulator.cli import run_local

        return run_local(argv[1:])
    if argv and argv[0] == "demo":
        from .demo import run_demo

        return run_demo(argv[1:])
    if argv and argv[0] == "backfill":
        from .backfill import run_backfill

        return run_backfill(argv[1:])
    if argv and argv[0] == "policy":
        from .deploy.policy import run_policy

        return run_policy(argv[1:])
    if argv and argv[0] == "check":
        from .deploy.check import run_check

        return run_check(argv[1:])

    parser = argparse.ArgumentParser(prog="cos-autotag", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    invoke = sub.add_parser("invoke", help="run the handler on an event file and print the summary")
    invoke.add_argument("event", help="an SCF COS trigger event (JSON), e.g. tests/fixtures/events/put.json")
    invoke.add_argument("--timeout-ms", type=int, default=30000, help="the context's time_limit_in_ms")
    invoke.add_argument("--function-name", default="cos-autotag")
    sub.add_parser("local", help="serve the local COS + Cloud Infinite emulator (see: cos-autotag local -h)")
    sub.add_parser("demo", help="run the whole flow locally on real photos")
    sub.add_parser("backfill", help="label existing objects (see: cos-autotag backfill -h)")
    sub.add_parser("policy", help="print the execution role's CAM policy (see: cos-autotag policy -h)")
    sub.add_parser("check", help="preflight a deployment's settings and access (see: cos-autotag check -h)")
    args = parser.parse_args(argv)
    return _invoke(args)


if __name__ == "__main__":
    raise SystemExit(main())
