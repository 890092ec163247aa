"""The scenario runner: uploads go through the emulator's COS trigger into the real handler.

`run_scenario(setup, drive)` starts a fresh emulator (real HTTP on 127.0.0.1, signatures
checked) with the setup's fault knobs, wires one warm `App` to the trigger with SCF's retry
policy, lets `drive(run)` upload (and delete, overwrite, switch faults) through the unmodified
SDK, waits until every delivery and retry is over, and then measures and checks everything:
the final state of every object (invariants.py), invocations and detect-label calls per
upload, loops, and every line the function logged. Nothing in the function is patched.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from qcloud_cos import CosConfig, CosS3Client

from cos_autotag.handler import App
from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import Faults
from tests.reliability import invariants
from tests.reliability.invariants import Expected
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY, TOKEN
from tests.support.function_stack import Stack, running_stack

MODES = ("tags", "metadata")
STORES = ("marker", "redis")
# The uploader is a different user from the function: its requests are told apart by SecretId.
UPLOADER_ID = "AKIDreliabilityuploader"
UPLOADER_KEY = "uploader-secret-key-9f8e7d6c5b4a"
REDIS_PASSWORD = "redis-pass-5e6f7a8b9c0d"
WAIT_IDLE_S = 90.0
# Standard headers the uploader may set, by canonical name -> the SDK's keyword.
_SDK_HEADER_KEYWORDS = {h: h.replace("-", "") for h in cos_facts.PRESERVED_HEADERS if h != "Content-Type"}


@dataclass(frozen=True)
class Upload:
    """One upload, as a user would make it with the SDK."""

    key: str
    body: bytes
    content_type: str = "image/jpeg"
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)  # full x-cos-meta-* names
    headers: Mapping[str, str] = field(default_factory=dict)  # Cache-Control, Content-Disposition, ...
    storage_class: str = cos_facts.DEFAULT_STORAGE_CLASS

    def __post_init__(self) -> None:
        bad_meta = [n for n in self.metadata if not n.lower().startswith(cos_facts.USER_META_PREFIX)]
        if bad_meta:
            raise ValueError(f"{self.key}: metadata names must start with {cos_facts.USER_META_PREFIX}: {bad_meta}")
        bad_headers = [h for h in self.headers if h not in _SDK_HEADER_KEYWORDS]
        if bad_headers:
            raise ValueError(f"{self.key}: headers must be among {sorted(_SDK_HEADER_KEYWORDS)}: {bad_headers}")
        if self.storage_class not in cos_facts.STORAGE_CLASSES - cos_facts.ARCHIVE_STORAGE_CLASSES:
            raise ValueError(f"{self.key}: storage class {self.storage_class} is not a readable class")
        if len(self.tags) > cos_facts.TAGS_MAX_PER_OBJECT:
            raise ValueError(f"{self.key}: {len(self.tags)} tags; COS allows {cos_facts.TAGS_MAX_PER_OBJECT}")

    def sdk_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ContentType": self.content_type, "StorageClass": self.storage_class}
        if self.tags:
            kwargs["Tagging"] = urlencode(dict(self.tags))
        if self.metadata:
            kwargs["Metadata"] = dict(self.metadata)
        for header, value in self.headers.items():
            kwargs[_SDK_HEADER_KEYWORDS[header]] = value
        return kwargs

    def expected(self, request_id: str) -> Expected:
        return Expected(
            key=self.key,
            body=self.body,
            content_type=self.content_type,
            headers=dict(self.headers),
            metadata={k.lower(): v for k, v in self.metadata.items()},
            tags=dict(self.tags),
            storage_class=self.storage_class,
            upload_token=invariants.upload_token(request_id),
        )


@dataclass(frozen=True)
class Setup:
    """How the function is deployed and what goes wrong around it."""

    mode: str = "tags"
    store: str = "marker"  # "marker": the object marker only; "redis": the strict store in front
    faults: Faults = field(default_factory=Faults)
    # Shown in the table's "faults injected" column; {deliveries}, {throttles}, {errors_5xx},
    # {timeouts}, {reordered}, {retries} and {rejected} are filled in from what happened.
    faults_text: str = "none"
    retry_num: int = cos_facts.SCF_DEFAULT_RETRY_NUM
    retry_delay_s: float = 0.2  # SCF waits a minute; the policy, not the pause, is what matters here
    time_limit_ms: int = 5000
    event_key_encoding: str = "raw"
    delivery_workers: int = 16  # concurrent invocations (SCF runs each in its own container)
    # DEBUG level with every event logged: the most the function can print, for the secret scan.
    verbose_logs: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.store not in STORES:
            raise ValueError(f"store must be one of {STORES}, not {self.store!r}")

    @property
    def label(self) -> str:
        return f"{self.mode} / {'Redis' if self.store == 'redis' else 'marker'}"


@dataclass
class ScenarioResult:
    scenario_id: str
    scenario: str  # the title shown in the table
    setup: Setup
    uploads: int
    faults: str
    violations: list[str]
    detect_per_upload: list[float]  # detect-label calls answered 200 (billable), per upload
    detect_attempts_per_upload: list[float]  # every detect-label request the function sent
    invocations_per_upload: list[float]
    log_lines: int
    duration_s: float
    notes: list[str] = field(default_factory=list)
    known_issue: str = ""  # set when the violations are a documented, expected failure (xfail)

    @property
    def detect_mean(self) -> float:
        return sum(self.detect_per_upload) / len(self.detect_per_upload) if self.detect_per_upload else 0.0

    @property
    def detect_max(self) -> float:
        return max(self.detect_per_upload, default=0.0)


class Run:
    """What a scenario's `drive` function acts through."""

    def __init__(self, stack: Stack, setup: Setup, app: App) -> None:
        self.stack, self.setup, self.app = stack, setup, app
        self.emulator = stack.emulator
        self.uploader = CosS3Client(CosConfig(**self.emulator.sdk_config(REGION, secret_id=UPLOADER_ID)), retry=0)
        self._lock = threading.Lock()
        self.puts: list[tuple[Upload, str]] = []  # (upload, x-cos-request-id), in completion order
        self.deleted: set[str] = set()

    # --- acting ------------------------------------------------------------------------------

    def put(self, upload: Upload) -> str:
        headers = self.uploader.put_object(Bucket=BUCKET, Key=upload.key, Body=upload.body, **upload.sdk_kwargs())
        request_id = str(headers["x-cos-request-id"])
        with self._lock:
            self.puts.append((upload, request_id))
            self.deleted.discard(upload.key)
        return request_id

    def put_all(self, uploads: Sequence[Upload], threads: int = 8) -> None:
        """Upload at once from `threads` clients' worth of threads (distinct keys only: order is not kept)."""
        keys = [u.key for u in uploads]
        if len(set(keys)) != len(keys):
            raise ValueError("put_all uploads each key once; use put() in order for overwrites")
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self.put, uploads))

    def delete(self, key: str) -> None:
        self.uploader.delete_object(Bucket=BUCKET, Key=key)
        with self._lock:
            self.deleted.add(key)

    def set_faults(self, **changes: Any) -> None:
        self.emulator.set_faults(**changes)

    def function_requests(self, op: str, key: str | None = None, status: int | None = None) -> int:
        """Requests the function (not the uploader) made, by operation, key and status."""
        return sum(
            1
            for r in self.emulator.requests
            if r.secret_id == SECRET_ID
            and r.op == op
            and (key is None or r.key == key)
            and (status is None or r.status == status)
        )

    def wait_invoked(self, request_id: str, timeout_s: float = 30.0) -> None:
        """Block until a run of the function for the upload answered `request_id` has ended."""
        self.wait_for(
            f"the function's run for upload {request_id}",
            lambda: any(request_id in _record_request_ids(inv.event) for inv in self.emulator.invocations),
            timeout_s,
        )

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s} s for {what}")
            time.sleep(0.01)


# --- running ---------------------------------------------------------------------------------------


def run_scenario(
    scenario_id: str, title: str, setup: Setup, drive: Callable[[Run], None], redis_url: str | None = None
) -> ScenarioResult:
    """Run one scenario on a fresh emulator and answer what happened; raises only for harness errors."""
    started = time.monotonic()
    if (setup.store == "redis") != (redis_url is not None):
        raise ValueError("a redis_url is needed exactly when the setup's store is redis")
    with running_stack(faults=setup.faults, token=TOKEN, delivery_workers=setup.delivery_workers) as stack:
        emulator = stack.emulator
        emulator.credentials[UPLOADER_ID] = UPLOADER_KEY
        emulator.event_key_encoding = setup.event_key_encoding
        with _captured_output() as output:
            logging = {"log_level": "DEBUG", "log_event": True} if setup.verbose_logs else {}
            app = stack.app(mode=setup.mode, redis_url=redis_url, **logging)
            emulator.add_trigger(
                BUCKET,
                app.handle,
                retry_num=setup.retry_num,
                retry_delay_s=setup.retry_delay_s,
                time_limit_ms=setup.time_limit_ms,
            )
            run = Run(stack, setup, app)
            try:
                drive(run)
                emulator.wait_idle(WAIT_IDLE_S)
            finally:
                if app.pipeline.guard is not None:
                    app.pipeline.guard.records.close()  # type: ignore[attr-defined]
        result = _evaluate(scenario_id, title, run, output.getvalue())
    result.duration_s = time.monotonic() - started
    return result


class _Output:
    def __init__(self) -> None:
        self.stdout, self.stderr = io.StringIO(), io.StringIO()

    def getvalue(self) -> tuple[str, str]:
        return self.stdout.getvalue(), self.stderr.getvalue()


@contextlib.contextmanager
def _captured_output() -> Iterator[_Output]:
    """Everything written to stdout and stderr meanwhile, from every thread (the handler logs to stdout)."""
    output = _Output()
    with contextlib.redirect_stdout(output.stdout), contextlib.redirect_stderr(output.stderr):
        yield output


def _record_request_ids(invocation_event: Mapping[str, Any]) -> list[str]:
    ids = []
    for record in invocation_event.get("Records", []):
        ids.append(str(record["cos"]["cosObject"]["meta"]["x-cos-request-id"]))
    return ids


def _evaluate(name: str, title: str, run: Run, output: tuple[str, str]) -> ScenarioResult:
    setup, emulator = run.setup, run.emulator
    faults = emulator.faults
    requests = emulator.requests
    invocations = emulator.invocations
    violations: list[str] = []
    notes: list[str] = []

    uploads_by_key: dict[str, list[tuple[Upload, str]]] = {}
    key_of_upload: dict[str, str] = {}
    for upload, request_id in run.puts:
        uploads_by_key.setdefault(upload.key, []).append((upload, request_id))
        key_of_upload[request_id] = upload.key
    # Objects the function itself (re)wrote: its metadata copies fire events of their own.
    key_of_copy = {r.request_id: r.key or "" for r in requests if r.op == "CopyObject" and r.status == 200}

    # --- invocations: bounded per upload, and no loop ---------------------------------------------
    per_event: Counter[str] = Counter()
    per_key_invocations: Counter[str] = Counter()
    for inv in invocations:
        request_ids = _record_request_ids(inv.event)
        for request_id in request_ids:
            per_event[request_id] += 1
            key = key_of_upload.get(request_id) or key_of_copy.get(request_id)
            if key is None:
                raise AssertionError(f"{name}: an invocation for an operation the runner did not make: {request_id}")
            per_key_invocations[key] += 1
        violations += _loops(inv, request_ids, key_of_upload, key_of_copy)
    bound = faults.duplicate_deliveries * (setup.retry_num + 1)
    for request_id, count in per_event.items():
        if count > bound:
            key = key_of_upload.get(request_id) or key_of_copy[request_id]
            violations.append(f"{key}: one event invoked the function {count} times, more than {bound}")
    user_invocations = Counter(key_of_upload[rid] for rid in per_event.elements() if rid in key_of_upload)
    copies = Counter(key_of_copy.values())
    for key, count in copies.items():
        if count > user_invocations[key]:
            violations.append(f"{key}: {count} metadata rewrites for {user_invocations[key]} upload invocations")

    # --- detect-label calls per upload --------------------------------------------------------------
    billable: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    large = [k for k, ups in uploads_by_key.items() if len(ups[-1][0].body) > cos_facts.DETECT_MAX_BYTES]
    for r in requests:
        if r.op != "DetectLabel" or r.secret_id != SECRET_ID:
            continue
        key = r.key
        if key is None:  # by detect-url (a large image's thumbnail): the key is in the URL, not the path
            if len(large) != 1:
                raise AssertionError(f"{name}: a detect-url call cannot be told apart among large keys {large}")
            key = large[0]
        attempts[key] += 1
        if r.status == 200:
            billable[key] += 1
    detect_per_upload = [billable[k] / len(ups) for k, ups in uploads_by_key.items()]
    attempts_per_upload = [attempts[k] / len(ups) for k, ups in uploads_by_key.items()]
    if setup.store == "redis":
        # A second call for one upload is allowed only where the function saw the object change
        # during detect-label and labeled the new content: that pays for other content, not twice.
        relabels = Counter(
            line.get("key")
            for line in invariants.parse_log_lines(output[0])[0]
            if line.get("message", "").startswith("the tag set changed during detect-label")
        )
        for key, ups in uploads_by_key.items():
            if billable[key] > len(ups) + relabels[key]:
                violations.append(
                    f"{key}: {billable[key]} detect-label calls for {len(ups)} upload(s) with Redis "
                    f"({relabels[key]} relabel(s) of changed content)"
                )
            elif relabels[key]:
                notes.append(f"{key}: {relabels[key]} relabel(s) after the object changed during detect-label")

    # --- every object's final state -------------------------------------------------------------------
    settings = run.app.settings
    stale = 0
    for key, ups in uploads_by_key.items():
        upload, request_id = ups[-1]
        expected = upload.expected(request_id)
        if key in run.deleted:
            expected = Expected(key=key, deleted=True)
        state = emulator.get_object_state(BUCKET, key)
        labels = None
        if state is not None:
            try:
                labels = invariants.expected_labels(
                    state.body, state.headers.get("Content-Type") or "", run.stack.engine, settings
                )
            except invariants.OracleError as error:
                violations.append(f"{key}: {error}")
                continue
        violations += invariants.check_object(expected, state, setup.mode, labels)
        stale += invariants.stale_marker(expected, state, setup.mode)
    if stale:
        notes.append(f"{stale} object(s) end with a marker naming an older upload of the key")

    # --- logs: JSON, and no secret anywhere SCF would show ---------------------------------------------
    stdout, stderr = output
    lines, not_json = invariants.parse_log_lines(stdout)
    violations += [f"log line is not JSON: {line!r}" for line in not_json[:5]]
    if not lines:
        violations.append("the function logged nothing: the secret scan would prove nothing")
    # SCF shows the invocation's error message and return value in its logs too.
    shown = [stdout, stderr]
    shown += [inv.error or "" for inv in invocations]
    shown += [json.dumps(inv.result, ensure_ascii=False, default=str) for inv in invocations]
    secrets = [SECRET_KEY, TOKEN, UPLOADER_KEY, REDIS_PASSWORD]
    violations += invariants.find_secrets(shown, secrets)
    if "Traceback" in stderr:
        raise AssertionError(f"{name}: a traceback on stderr (emulator or runner bug):\n{stderr[-3000:]}")

    counts = {
        # Deliveries of the users' upload events (those of the function's own writes are not counted).
        "deliveries": sum(
            1
            for inv in invocations
            if inv.attempt == 1 and any(rid in key_of_upload for rid in _record_request_ids(inv.event))
        ),
        "retries": sum(1 for inv in invocations if inv.attempt > 1),
        "throttles": sum(1 for r in requests if r.op == "DetectLabel" and r.status == faults.throttle_status),
        "errors_5xx": sum(1 for r in requests if r.status >= 500),
        "timeouts": sum(1 for inv in invocations if inv.outcome == "timeout"),
        "reordered": _reordered(run.puts, invocations),
        "rejected": sum(1 for r in requests if r.op == "DetectLabel" and 400 <= r.status < 500 and r.status != 429),
    }
    per_upload_invocations = [per_key_invocations[k] / len(ups) for k, ups in uploads_by_key.items()]
    return ScenarioResult(
        scenario_id=name,
        scenario=title,
        setup=setup,
        uploads=len(run.puts),
        faults=setup.faults_text.format(**counts),
        violations=violations,
        detect_per_upload=detect_per_upload,
        detect_attempts_per_upload=attempts_per_upload,
        invocations_per_upload=per_upload_invocations,
        log_lines=len(lines),
        duration_s=0.0,
        notes=notes,
    )


def _loops(inv: Any, request_ids: list[str], key_of_upload: dict[str, str], key_of_copy: dict[str, str]) -> list[str]:
    """The event of the function's own metadata rewrite must end the chain: labeling again is a loop."""
    if inv.outcome != "ok" or not isinstance(inv.result, dict):
        return []
    copied = {key_of_copy[rid] for rid in request_ids if rid in key_of_copy}
    # A batch may also hold a user upload of the same key; its result cannot be told apart: skip it.
    copied -= {key_of_upload[rid] for rid in request_ids if rid in key_of_upload}
    found = []
    for result in inv.result.get("results", []):
        if result.get("key") not in copied:
            continue
        writes = {"CopyObject", "PutObjectTagging", "DetectLabel"} & set(result.get("calls", {}))
        if result.get("outcome") == "labeled" or writes:
            found.append(f"{result.get('key')}: loop: the event of the function's own write was processed again")
    return found


def _reordered(puts: Sequence[tuple[Upload, str]], invocations: Sequence[Any]) -> int:
    """How many consecutive uploads had their first delivery start in the opposite order."""
    first_start: dict[str, float] = {}
    for inv in invocations:
        for request_id in _record_request_ids(inv.event):
            first_start[request_id] = min(first_start.get(request_id, inv.started_at), inv.started_at)
    starts = [first_start[rid] for _, rid in puts if rid in first_start]
    return sum(1 for a, b in itertools.pairwise(starts) if b < a)
