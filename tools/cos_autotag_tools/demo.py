"""`cos-autotag demo`: the whole flow on real photos, on this machine, with no cloud account.

It starts the local COS + Cloud Infinite emulator with the offline EfficientNet label engine,
uploads the photos that ship with the package through the unmodified SDK, and lets the
emulator's COS trigger run the real handler (`index.main_handler`, the same code path as on
SCF). Then it delivers every event once more, as SCF's at-least-once delivery and retries may,
and prints per object the labels, what is now on the object and the API calls each delivery spent.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from qcloud_cos import CosConfig, CosS3Client

from cos_autotag import handler as handler_module
from cos_autotag.writeback import LABELS_META, MARKER_META, decode_labels_meta
from cos_autotag_tools import cos_facts
from cos_autotag_tools.command import EXIT_FAILED, EXIT_OK, command
from cos_autotag_tools.emulator import Emulator
from cos_autotag_tools.function_env import function_environment
from cos_autotag_tools.labels import DEFAULT_LANGUAGE, LANGUAGES, EfficientNetEngine
from cos_autotag_tools.photos import list_photos

BUCKET = "demo-1250000000"
REGION = "ap-guangzhou"
UPLOADER_ID = "AKIDdemouploader"
FUNCTION_ID = "AKIDdemofunction"
# ImageNet probabilities spread over near-synonyms (tiger cat / tabby): CI's scores run higher.
DEMO_MIN_CONFIDENCE = "20"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cos-autotag demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("tags", "metadata"), default="tags", help="write-back mode")
    parser.add_argument("--verbose", action="store_true", help="show the function's JSON log lines")
    parser.add_argument(
        "--label-language",
        choices=LANGUAGES,
        default=DEFAULT_LANGUAGE,
        help="language of the labels; Cloud Infinite answers in Chinese (default: zh)",
    )
    return parser


def _on_object(emu: Emulator, key: str, mode: str) -> str:
    state = emu.get_object_state(BUCKET, key)
    if state is None:
        return "(gone)"
    if mode == "tags":
        return ", ".join(f"{k}={v}" for k, v in state.tags.items()) or "(no tags)"
    meta = dict(state.metadata)
    labels = meta.pop(LABELS_META, "")
    parts = [f"{k[len(cos_facts.USER_META_PREFIX) :]}={v}" for k, v in meta.items() if k != MARKER_META]
    if labels:
        parts.append("autotag-labels=" + ";".join(f"{n}:{c}" for n, c in decode_labels_meta(labels)))
    if MARKER_META in meta:
        parts.append("autotag=" + meta[MARKER_META])
    return ", ".join(parts) or "(no metadata)"


def _calls_by_key(emu: Emulator, keys: list[str], since: float = 0.0) -> dict[str, list[str]]:
    """API calls the function made per object, in order (the uploader signs with other credentials)."""
    calls: dict[str, list[str]] = {key: [] for key in keys}
    for request in sorted(emu.requests, key=lambda r: r.timestamp):
        if request.secret_id == FUNCTION_ID and request.key in calls and request.timestamp >= since:
            calls[request.key].append(request.op)
    return calls


def _spent(calls: list[str]) -> str:
    short = {
        "GetObjectTagging": "get-tags",
        "PutObjectTagging": "put-tags",
        "DetectLabel": "detect",
        "HeadObject": "head",
        "GetObjectACL": "acl",
        "CopyObject": "copy",
        "GetObject": "read",
    }
    if not calls:
        return "0"
    return f"{len(calls)} (" + " ".join(short.get(op, op) for op in calls) + ")"


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(_width(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip(), line]
    out += ["  ".join(_pad(str(c), w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(out)


def _demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    function_key, uploader_key = secrets.token_hex(16), secrets.token_hex(16)
    print("Loading the offline label engine (EfficientNet-Lite0, numpy) ...", flush=True)
    engine = EfficientNetEngine(language=args.label_language)
    emu = Emulator(
        credentials={UPLOADER_ID: uploader_key, FUNCTION_ID: function_key},
        label_engine=engine,
    )
    emu.start()
    stack = ExitStack()
    try:
        emu.create_bucket(BUCKET, REGION)
        print(f"Local COS + Cloud Infinite emulator on {emu.endpoint}, bucket {BUCKET} ({REGION})", flush=True)
        # The function reads its settings and role credentials from the environment, as on SCF.
        function_env = dict(
            TENCENTCLOUD_SECRETID=FUNCTION_ID,
            TENCENTCLOUD_SECRETKEY=function_key,
            AUTOTAG_COS_ENDPOINT=emu.endpoint,
            AUTOTAG_MODE=args.mode,
            AUTOTAG_MIN_CONFIDENCE=os.environ.get("AUTOTAG_MIN_CONFIDENCE", DEMO_MIN_CONFIDENCE),
            AUTOTAG_LOG_LEVEL="INFO" if args.verbose else "WARNING",
        )
        stack.enter_context(function_environment(function_env))
        emu.add_trigger(BUCKET, handler_module.main_handler, time_limit_ms=30000)

        uploader = CosS3Client(CosConfig(**emu.sdk_config(REGION, secret_id=UPLOADER_ID)), retry=0)
        uploads: list[str] = []
        for index, photo in enumerate(list_photos()):
            key = f"photos/{photo.name}"
            extra: dict[str, Any] = {}
            if index == 0:  # a user's own tag and metadata, to show they are kept
                extra = {"Tagging": "owner=demo-user", "Metadata": {"x-cos-meta-album": "summer"}}
            content_type = "image/png" if photo.suffix == ".png" else "image/jpeg"
            uploader.put_object(Bucket=BUCKET, Key=key, Body=photo.read_bytes(), ContentType=content_type, **extra)
            uploads.append(key)
        uploader.put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"not a photo", ContentType="text/plain")
        uploads.append("notes/readme.txt")
        print(f"Uploaded {len(uploads)} objects; the COS trigger runs the function ...", flush=True)
        emu.wait_idle(300)
        first_runs = sorted(emu.invocations, key=lambda run: run.started_at)
        first = _calls_by_key(emu, uploads)

        print("Delivering every event again, as SCF may ...", flush=True)
        replay_started = time.time()
        for run in first_runs:
            handler_module.main_handler(run.event, {**run.context, "request_id": secrets.token_hex(8)})
        again = _calls_by_key(emu, uploads, since=replay_started)

        ms: Counter[str] = Counter()
        for run in first_runs:
            for key in run.keys:
                ms[key] += round(run.duration_s * 1000)
        rows = [
            [
                key,
                _spent(first[key]),
                _spent(again[key]),
                str(ms[key]),
                _on_object(emu, key, args.mode),
            ]
            for key in uploads
        ]
        print()
        headers = ["object", "1st delivery: calls", "again: calls", "ms", f"now on the object ({args.mode})"]
        print(_table(rows, headers))
        detect_calls = sum(c.count("DetectLabel") for c in first.values())
        failed = [run for run in emu.invocations if run.outcome != "ok"]
        print()
        for run in failed:  # never swallowed: what went wrong, per failed invocation
            print(f"failed: {', '.join(run.keys)} (attempt {run.attempt}): {run.error}", file=sys.stderr)
        deliveries = len(emu.invocations) + len(first_runs)
        print(
            f"{len(uploads)} uploads, {deliveries} deliveries, {detect_calls} detect-label calls "
            f"(USD {cos_facts.detect_cost_usd(detect_calls):.4f} at Cloud Infinite's public price), "
            f"{len(failed)} failed invocations."
        )
        print(
            "Try it yourself: `.venv/bin/cos-autotag local` serves the emulator until Ctrl-C and labels "
            'what you upload (see the README\'s "Try it yourself").'
        )
        print(
            "See these photos and their labels in your browser: `.venv/bin/cos-autotag gallery --demo` "
            "(then open the address it prints)."
        )
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        stack.close()  # the caller's environment as it was
        emu.stop()


run_demo = command(_parser, _demo)


if __name__ == "__main__":
    started = time.monotonic()
    code = run_demo()
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    raise SystemExit(code)
