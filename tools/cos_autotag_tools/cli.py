"""The `cos-autotag` command.

Every sub-command but `invoke` lives in its own module, named in COMMANDS, and is imported only
when used, so `invoke` stays as light as the deployed function and a new command is one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import mimetypes
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from cos_autotag_tools.command import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, command
from cos_autotag_tools.scf_context import scf_context


def _context(args: argparse.Namespace) -> dict[str, Any]:
    return scf_context(function_name=args.function_name, time_limit_in_ms=args.timeout_ms)


def _read_event(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text)


def _upload(app: Any, event: Any, path: str) -> None:
    """Put the file at the object the event's first record names, through the function's own
    client (same endpoint, same credentials), and make the event describe that upload."""
    from cos_autotag.events import CosRecord, parse_event

    records = [r for r in parse_event(event) if isinstance(r, CosRecord)]
    if not records:
        raise ValueError("the event names no object to upload to")
    record = records[0]
    body = Path(path).read_bytes()
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    client = app.gateway.client(record.region)
    response = client.put_object(Bucket=record.bucket, Key=record.key, Body=body, ContentType=content_type)
    cos_object = event["Records"][0]["cos"]["cosObject"]
    cos_object["size"] = len(body)
    meta = cos_object.setdefault("meta", {})
    meta["Content-Type"] = content_type
    request_id = (response or {}).get("x-cos-request-id")
    if request_id:
        meta["x-cos-request-id"] = request_id
    print(f"uploaded {path} to {record.bucket}/{record.key} ({len(body)} bytes)", file=sys.stderr)


def _invoke_parser() -> argparse.ArgumentParser:
    invoke = argparse.ArgumentParser(prog="cos-autotag invoke", description=INVOKE_HELP)
    invoke.add_argument("event", help="an SCF COS trigger event (JSON) file, or - for stdin")
    invoke.add_argument(
        "--upload", metavar="FILE", help="first put FILE at the event's object, with the function's settings"
    )
    invoke.add_argument("--timeout-ms", type=int, default=30000, help="the context's time_limit_in_ms")
    invoke.add_argument("--function-name", default="cos-autotag")
    return invoke


def _invoke(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    from cos_autotag.errors import ConfigurationError, RetryableFailure, SettingsError
    from cos_autotag.handler import App

    try:
        event = _read_event(args.event)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {args.event}: {error}") from error
    try:
        # The function logs JSON lines to stdout, as on SCF; here stdout is the summary's alone
        # (`| jq` works), so the logs go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            app = App.from_env()
            if args.upload:
                _upload(app, event, args.upload)
            summary = app.handle(event, _context(args))
    except (SettingsError, ConfigurationError):
        raise  # the skeleton says what to set
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot upload {args.upload}: {error}") from error
    except (CosServiceError, CosClientError) as error:
        detail = error.get_error_msg() if isinstance(error, CosServiceError) else str(error)
        print(f"cos-autotag invoke: the upload of {args.upload} failed: {detail}", file=sys.stderr)
        return EXIT_FAILED
    except RetryableFailure as error:
        print(f"cos-autotag invoke: {error} (SCF would retry this invocation)", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return EXIT_OK


INVOKE_HELP = "run the handler on an event file and print the summary"
run_invoke = command(_invoke_parser, _invoke)

# name -> (module, function, help): each function takes the remaining argv and answers an exit code.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "invoke": ("cli", "run_invoke", INVOKE_HELP),
    "event": ("event", "run_event", "print an SCF COS trigger event for one object"),
    "local": ("emulator.cli", "run_local", "serve the local COS + Cloud Infinite emulator"),
    "demo": ("demo", "run_demo", "run the whole flow locally on real photos"),
    "backfill": ("backfill", "run_backfill", "label the objects already in a bucket"),
    "untag": ("untag", "run_untag", "remove the function's labels, keep everything else"),
    "show": ("show", "run_show", "print one object's labels"),
    "find": ("find", "run_find", "list the objects that carry a label"),
    "dataset": ("dataset", "run_dataset", "set up Cloud Infinite MetaInsight for `find --dataset`"),
    "gallery": ("gallery", "run_gallery", "browse a bucket's photos and labels in a web page"),
    "policy": ("deploy.policy", "run_policy", "print the execution role's least-privilege CAM policy"),
    "check": ("deploy.check", "run_check", "preflight a deployment's settings and access"),
}


def _version() -> str:
    try:
        return metadata.version("cos-autotag")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module, function, _ = COMMANDS[argv[0]]
        run = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        return int(run(argv[1:]))

    parser = argparse.ArgumentParser(prog="cos-autotag", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"cos-autotag {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=f"{help_text} (see: cos-autotag {name} -h)")
    parser.parse_args(argv)  # prints the help or the version, or says what is wrong, and exits
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
