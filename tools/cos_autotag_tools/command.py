"""What every `cos-autotag` sub-command shares: its exit codes and the skeleton around its body.

`command(parser, body)` makes a sub-command's entry point, `entry(argv, env=None)`: it parses the
arguments, runs `body(args, env)` and turns bad input (UsageError, and the function's own
SettingsError and ConfigurationError) into exit 2 with the message, which says what to do next.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cos_autotag.errors import ConfigurationError, SettingsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """Bad input to a command: the message says what to do next (the command exits 2)."""


class FlagError(UsageError):
    """Flags that do not go together: reported as argparse reports its own errors (usage line, exit 2)."""


Body = Callable[..., int]
Entry = Callable[..., int]


def command(parser: Callable[[], argparse.ArgumentParser], body: Body, *, quiet_sdk: bool = False) -> Entry:
    """The entry point of a sub-command: parse, run `body(args, env, **extra)`, map bad input to exit 2.

    `quiet_sdk` silences the SDK's own log lines (the commands that read objects print their own).
    """

    def entry(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, **extra: Any) -> int:
        built = parser()
        args = built.parse_args(argv)
        quiet: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if quiet_sdk:
            from .object_labels import sdk_quiet

            quiet = sdk_quiet()
        try:
            with quiet:
                return int(body(args, os.environ if env is None else env, **extra))
        except FlagError as error:
            built.error(str(error))
        except (UsageError, SettingsError, ConfigurationError) as error:
            print(f"{built.prog}: {error}", file=sys.stderr)
        return EXIT_USAGE

    return entry


def write_report(path: Path, summary: Mapping[str, Any], prog: str) -> None:
    """Write a run's report as JSON (UTF-8); a failed write is said on stderr and changes no exit code."""
    try:
        path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as error:
        print(f"{prog}: cannot write the report to {path}: {error}", file=sys.stderr)
