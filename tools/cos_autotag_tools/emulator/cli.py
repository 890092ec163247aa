"""`cos-autotag local`: serve the emulator on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from cos_autotag import cos_facts

from .emulator import DEFAULT_CREDENTIALS, Emulator
from .engine import load_engine
from .faults import Faults

DEFAULT_BUCKET = "photos-1250000000"
DEFAULT_REGION = "ap-guangzhou"


def _parser() -> argparse.ArgumentParser:
    (default_id, default_key), *_ = DEFAULT_CREDENTIALS.items()
    p = argparse.ArgumentParser(
        prog="cos-autotag local",
        description="Serve a local COS + Cloud Infinite (detect-label) emulator on 127.0.0.1.",
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free port)")
    p.add_argument("--data-dir", help="keep buckets and objects in this folder (survives restarts)")
    p.add_argument(
        "--bucket",
        action="append",
        default=[],
        metavar="NAME-APPID[:REGION]",
        help=f"bucket to create; repeatable (default: {DEFAULT_BUCKET})",
    )
    p.add_argument("--region", default=DEFAULT_REGION, help="region of buckets given without one")
    p.add_argument("--secret-id", default=default_id)
    p.add_argument("--secret-key", default=default_key)
    p.add_argument("--token", default=None, help="require this x-cos-security-token on every request")
    p.add_argument(
        "--engine",
        default="auto",
        help="label engine: auto, digest, deterministic, efficientnet or package.module:Class",
    )
    p.add_argument(
        "--trigger",
        metavar="MODULE:FUNCTION",
        help="invoke this SCF handler for every object created in each bucket",
    )
    p.add_argument("--detect-qps", type=float, default=None, help="detect-label quota (throttles above it)")
    return p


def _parse_bucket(spec: str, default_region: str) -> tuple[str, str]:
    bucket, _, region = spec.partition(":")
    return bucket, region or default_region


def _load_handler(spec: str) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    module_name, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"--trigger {spec!r} must be MODULE:FUNCTION")
    handler: Callable[[dict[str, Any], dict[str, Any]], Any] = getattr(importlib.import_module(module_name), name)
    if not callable(handler):
        raise ValueError(f"--trigger {spec} is not callable")
    return handler


def _snippet(emu: Emulator, region: str, bucket: str) -> str:
    token = f"{emu.token!r}" if emu.token else "None"
    secret_id, secret_key = next(iter(emu.credentials.items()))
    return (
        "from qcloud_cos import CosConfig, CosS3Client\n"
        f"config = CosConfig(Region={region!r}, SecretId={secret_id!r}, SecretKey={secret_key!r},\n"
        f"                   Token={token}, Scheme='http', IP='127.0.0.1', Port={emu.port})\n"
        "client = CosS3Client(config, retry=0)\n"
        f"client.put_object(Bucket={bucket!r}, Key='hello.txt', Body=b'hi')"
    )


def run_local(argv: list[str] | None = None) -> int:
    """Serve until interrupted; returns the process exit status."""
    args = _parser().parse_args(argv)
    buckets = [_parse_bucket(spec, args.region) for spec in args.bucket] or [(DEFAULT_BUCKET, args.region)]
    try:
        appids = {cos_facts.BUCKET_RE.match(b).group("appid") for b, _ in buckets}  # type: ignore[union-attr]
    except AttributeError:
        print(f"error: bucket names must be <name>-<appid>: {[b for b, _ in buckets]}", file=sys.stderr)
        return 2
    if len(appids) != 1:
        print(f"error: all buckets must share one appid, got {sorted(appids)}", file=sys.stderr)
        return 2
    try:
        emu = Emulator(
            credentials={args.secret_id: args.secret_key},
            token=args.token,
            data_dir=args.data_dir,
            label_engine=load_engine(args.engine),
            faults=Faults(detect_qps=args.detect_qps),
            appid=appids.pop(),
        )
        for bucket, region in buckets:
            emu.create_bucket(bucket, region)
        handler = _load_handler(args.trigger) if args.trigger else None
    except (ValueError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        emu.start(args.port)
    except OSError as exc:
        emu.stop()
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        if handler is not None:
            for bucket, _ in buckets:
                emu.add_trigger(bucket, handler)
        first_bucket, first_region = buckets[0]
        print(f"COS emulator serving on {emu.endpoint}", flush=True)
        print(f"SecretId={args.secret_id} SecretKey={args.secret_key} Token={args.token or ''}")
        for bucket, region in buckets:
            print(f"bucket {bucket} in {region} (Host: {cos_facts.cos_host(bucket, region)})")
        print("SDK configuration:\n" + _snippet(emu, first_region, first_bucket))
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
        print(f"stopping; served {len(emu.requests)} requests", flush=True)
    finally:
        emu.stop()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    return 0
