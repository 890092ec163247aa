"""No secret in anything the function prints, in any encoding, whatever fails.

The real handler runs in its own process (`index.main_handler`, as SCF calls it) at DEBUG, with
the event logged and the root logger at DEBUG behind a plain stdlib handler (urllib3 then prints
every request line). Its stdout and stderr are captured whole, tracebacks included. Every call the
function makes (HeadObject, GetObject, GetObjectTagging, PutObjectTagging, CopyObject, DetectLabel
by key and by detect-url) is made to fail in turn: the connection reset before any answer, a 5xx
from the emulator, and a 403 (the signature spoiled on the way, so the emulator refuses it). The
secrets are a session token holding `+`, `/` and `=`, the secret key and id, every request
signature, and the Redis password (`/`, `%` and `@` in it).

A small proxy between the function and the emulator plays the connection failures and spoils the
signatures; it forwards everything else unchanged. Run as a script, this module is the process
that hosts the handler (`python -m tests.integration.test_secret_leaks`).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ("tests.integration.conftest_redis",)
pytestmark = pytest.mark.integration

# A session token shaped like an STS one, with every character URL encoding changes.
TOKEN = "Tk9vRzXh+Ab3dPq7LmN2/sWxYz0AbCdEf+Gh5=="
REDIS_PASSWORD = "acct@Sup3r/Secr%et"
UPLOADER_SIGNATURE = "0f4e1d2c3b4a59687766554433221100ffeeddcc"
SENTINEL = "=== invocation done ==="
# Only this test's host process reads it: drop the rule that finds names whose `=` is URL-encoded.
DROP_RULE_VAR = "SECRET_LEAKS_TEST_DROP_ENCODED_NAMES"
OPS_LARGE_TAGS = ("GetObjectTagging", "GetObject", "DetectLabel", "PutObjectTagging")
OPS_LARGE_METADATA = ("HeadObject", "GetObject", "DetectLabel", "CopyObject")
FAILURES = ("reset", "refused", "5xx", "403")


# --- what counts as a leak ------------------------------------------------------------------------


def encodings(secret: str) -> dict[str, str]:
    """The forms a secret must not appear in: raw, URL-encoded once and twice, hex either case, base64."""
    forms = {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "quote keeping /": quote(secret),
        "quote_plus": quote_plus(secret),
        "double quote": quote(quote(secret, safe=""), safe=""),
        "double quote_plus": quote_plus(quote_plus(secret)),
        "base64": base64.b64encode(secret.encode()).decode(),
    }
    for name, form in list(forms.items()):
        lower = re.sub(r"%(?:25)*[0-9A-F]{2}", lambda m: m.group(0).lower(), form)
        if lower != form:
            forms[name + " (lower-case hex)"] = lower
    return forms


# A request signature (ours, or the uploader's in the event) after any separator and encoding.
SIGNATURE_SHOWN = re.compile(r"q-signature(?:=|%(?:25)*3d|['\"]?\s*:\s*['\"]?)[0-9a-f]{8,}", re.I)


def find_leaks(text: str, secrets: Mapping[str, str]) -> list[str]:
    found = []
    for name, secret in secrets.items():
        for encoding, form in encodings(secret).items():
            if form in text:
                found.append(f"{name}, {encoding}")
    found += [f"a request signature: ...{m.group(0)[-12:]}" for m in SIGNATURE_SHOWN.finditer(text)]
    return found


# --- a proxy that resets connections and spoils signatures ------------------------------------------


def operation(method: str, target: str, headers: Mapping[str, str]) -> str:
    """The COS operation of a request, named as the emulator names it."""
    query = target.partition("?")[2]
    params = {part.partition("=")[0] for part in query.split("&") if part}
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        if "tagging" in params:
            return "GetObjectTagging"
        return "DetectLabel" if "ci-process=detect-label" in query else "GetObject"
    if method == "PUT":
        if "tagging" in params:
            return "PutObjectTagging"
        return "CopyObject" if "x-cos-copy-source" in headers else "PutObject"
    return method


class FaultProxy:
    """Forwards HTTP/1.1 requests to the emulator. `actions[op]` for one operation:
    "reset" answers its request with a TCP reset; "refuse" does too and stops listening, so the
    retry's new connection is refused (urllib3 then names the whole URL in its error) until
    `set_actions` is called again; "spoil" corrupts its signature, so the emulator answers 403."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.actions: dict[str, str] = {}
        self.seen: list[tuple[str, str]] = []  # (operation, what was done)
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._listen()

    def set_actions(self, actions: dict[str, str]) -> None:
        self.actions = actions
        self._listen()

    def close(self) -> None:
        self._stop_listening()

    def _listen(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", self.port))  # the same port again
                self.port = self._listener.getsockname()[1]
                threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
                self._listener.close()
                self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        with client:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                op = operation(method, target, headers)
                action = self.actions.get(op, "forward")
                self.seen.append((op, action))
                if action == "refuse":
                    self._stop_listening()
                if action in ("reset", "refuse"):
                    # An RST, not a polite close: the SDK sees "connection reset by peer".
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if action == "spoil":
                    lines = [_spoil(line) for line in lines]
                self._forward(client, lines, body)

    def _forward(self, client: socket.socket, lines: list[str], body: bytes) -> None:
        kept = [line for line in lines if not line.lower().startswith("connection:")]
        request = "\r\n".join([*kept, "Connection: close"]).encode("latin-1") + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
            upstream.sendall(request)
            response = b""
            while chunk := upstream.recv(65536):
                response += chunk
        # Keep the client's connection open: the answer's Content-Length frames it.
        client.sendall(re.sub(rb"\r\nConnection: close(?=\r\n)", b"", response, count=1, flags=re.I))


def _spoil(line: str) -> str:
    """The same request with a wrong signature: the emulator must answer 403 SignatureDoesNotMatch."""
    if not line.lower().startswith("authorization:"):
        return line
    return re.sub(r"q-signature=([0-9a-f])", lambda m: "q-signature=" + ("1" if m.group(1) != "1" else "2"), line)


# --- the process that hosts the handler --------------------------------------------------------------


class HostProcess:
    """`python -m tests.integration.test_secret_leaks` with the function's environment; one
    invocation per `invoke`, everything it printed (stdout and stderr, merged) kept in `output`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.test_secret_leaks"],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def invoke(self, event: Any, context: Mapping[str, Any]) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"event": event, "context": context}) + "\n")
        self.proc.stdin.flush()
        printed = []
        while True:
            line = self._lines.get(timeout=120)
            if line is None:
                raise AssertionError("the host process ended early:\n" + "".join(self.output + printed))
            if line.rstrip("\n") == SENTINEL:
                self.output += printed
                return printed
            printed.append(line)

    def close(self) -> str:
        """End the process (stdin closed) and answer all it printed; safe to call again."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            while (line := self._lines.get(timeout=10)) is not None:
                self.output.append(line)
        return "".join(self.output)


def host_main() -> None:
    """Runs the handler the way SCF's Python runtime does: a stdlib root handler at DEBUG, the
    return value printed, an escaping exception's traceback printed."""
    import logging
    import traceback

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    import index

    if os.environ.get(DROP_RULE_VAR):
        # The negative control: the name rule as it was before URL-encoded separators were known.
        from cos_autotag import observability

        raw_only = re.compile(r"((?:q-signature|q-ak|x-cos-security-token)=)[^&\s'\"]+")
        observability._SECRET_IN_TEXT[0] = (raw_only, r"\1" + observability.REDACTED)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = index.main_handler(request["event"], request["context"])
            print(json.dumps(result, ensure_ascii=False))
        except BaseException:
            traceback.print_exc()
        sys.stderr.flush()
        print(SENTINEL, flush=True)


# --- the test ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_photo() -> bytes:
    from tests.integration.test_function_large import big_jpeg

    return big_jpeg(min_bytes=4 * 1024 * 1024)


@pytest.fixture
def redis_url(redis_server_factory) -> str:
    """A real redis-server behind a password, in Tencent Cloud's `:account@password` URL form,
    with the `/` and `%` of the password percent-encoded and the `@` after the account not."""
    server = redis_server_factory(password=REDIS_PASSWORD)
    account, password = REDIS_PASSWORD.split("@", 1)
    return f"redis://:{account}@{quote(password, safe='')}@{server.host}:{server.port}/0"


@contextmanager
def function_under_faults(mode: str, redis_url: str, drop_rule: bool = False) -> Iterator[Any]:
    from tests.support.function_stack import running_stack

    with running_stack(token=TOKEN) as stack:
        proxy = FaultProxy(stack.emulator.port)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOTAG_", "TENCENTCLOUD_"))},
            **stack.env,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tools"), str(ROOT)]),
            "AUTOTAG_COS_ENDPOINT": f"http://127.0.0.1:{proxy.port}",
            "AUTOTAG_MODE": mode,
            "AUTOTAG_MIN_CONFIDENCE": "10",
            "AUTOTAG_LOG_LEVEL": "DEBUG",
            "AUTOTAG_LOG_EVENT": "true",
            "AUTOTAG_IDEMPOTENCY_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        if drop_rule:
            env[DROP_RULE_VAR] = "1"
        host = HostProcess(env)
        try:
            yield stack, proxy, host
        finally:
            host.close()
            proxy.close()


def _event(stack: Any, key: str, request_id: str, content_type: str) -> dict[str, Any]:
    event = stack.event(key, request_id, content_type=content_type)
    # The uploader's own signed request rides in the event, and AUTOTAG_LOG_EVENT logs the event.
    event["Records"][0]["event"]["requestParameters"]["requestHeaders"]["Authorization"] = (
        f"q-sign-algorithm=sha1&q-ak=AKIDuploader0000001&q-signature={UPLOADER_SIGNATURE}"
    )
    return event


def _fail(stack: Any, proxy: FaultProxy, op: str, failure: str | None) -> None:
    """Make every `op` request fail this way from now on (None: no failure at all)."""
    from cos_autotag_tools.emulator import Faults

    proxy_action = {"reset": "reset", "refused": "refuse", "403": "spoil"}.get(failure or "")
    proxy.set_actions({op: proxy_action} if proxy_action else {})
    stack.emulator.set_faults(Faults(error_5xx_rate=1.0, error_5xx_ops={op}) if failure == "5xx" else Faults())


def _run_every_failure(stack: Any, proxy: FaultProxy, host: HostProcess, flows: list[tuple[str, Any, tuple]]) -> str:
    from tests.support.scf import context

    for key, event, ops in flows:
        for op in ops:
            for failure in FAILURES:
                _fail(stack, proxy, op, failure)
                start = len(proxy.seen)
                printed = host.invoke(event, context(time_limit_ms=3000))
                reached = [action for seen_op, action in proxy.seen[start:] if seen_op == op]
                # Each failure really happened on that call (else the test would prove nothing).
                assert reached, f"{key}: {op} was never called under {failure}:\n{''.join(printed)}"
                assert any("record failed" in line for line in printed), "".join(printed)
    _fail(stack, proxy, "", None)
    for key, event, _ in flows:  # and the successful path, at DEBUG too
        assert '"labeled": 1' in "".join(host.invoke(event, context())), key
    return host.close()


def _secrets(stack: Any) -> dict[str, str]:
    return {
        "the session token": TOKEN,
        "the secret key": stack.env["TENCENTCLOUD_SECRETKEY"],
        "the secret id": stack.env["TENCENTCLOUD_SECRETID"],
        "the Redis password": REDIS_PASSWORD,
        "the Redis password after the account": REDIS_PASSWORD.split("@", 1)[1],
        "the uploader's signature": UPLOADER_SIGNATURE,
        "the uploader's secret id": "AKIDuploader0000001",
    }


def _tags_flows(stack: Any, photo: bytes) -> list[tuple[str, Any, tuple]]:
    from tests.support.images import jpeg

    # No extension and a generic type: the function reads the first bytes (GetObject) to decide.
    large = stack.put("leak/large-photo", photo, content_type="application/octet-stream")
    small = stack.put("leak/small.jpg", jpeg(7))
    return [
        ("leak/large-photo", _event(stack, "leak/large-photo", large, "application/octet-stream"), OPS_LARGE_TAGS),
        ("leak/small.jpg", _event(stack, "leak/small.jpg", small, "image/jpeg"), ("DetectLabel",)),
    ]


def test_no_secret_in_anything_printed_when_any_call_fails_in_tags_mode(large_photo, redis_url):
    with function_under_faults("tags", redis_url) as (stack, proxy, host):
        printed = _run_every_failure(stack, proxy, host, _tags_flows(stack, large_photo))
    _assert_the_dangerous_lines_were_printed(printed)
    assert find_leaks(printed, _secrets(stack)) == []


def _assert_the_dangerous_lines_were_printed(printed: str) -> None:
    # The large photo went through detect-url; urllib3's request lines reached the root handler.
    assert "detect-url=" in printed and "DEBUG:urllib3.connectionpool" in printed
    assert "Connection reset by peer" in printed and "SignatureDoesNotMatch" in printed
    # A refused connection makes urllib3 (and so the SDK's ERROR line) name the whole signed URL.
    assert "Max retries exceeded with url: /?ci-process=detect-label&scenes=camera&detect-url=" in printed
    # The function logged in to Redis with the password from the URL (else it was never used).
    assert "idempotency store unreachable" not in printed


def test_no_secret_in_anything_printed_when_any_call_fails_in_metadata_mode(large_photo, redis_url):
    with function_under_faults("metadata", redis_url) as (stack, proxy, host):
        key = "leak/large-photo"
        request_id = stack.put(key, large_photo, content_type="application/octet-stream")
        event = _event(stack, key, request_id, "application/octet-stream")
        printed = _run_every_failure(stack, proxy, host, [(key, event, OPS_LARGE_METADATA)])
    _assert_the_dangerous_lines_were_printed(printed)
    assert find_leaks(printed, _secrets(stack)) == []


def test_the_leak_check_fails_without_the_rule_for_url_encoded_names(large_photo, redis_url):
    """The negative control: one redaction rule fewer, and the same run shows the detect-url's signature."""
    with function_under_faults("tags", redis_url, drop_rule=True) as (stack, proxy, host):
        flows = _tags_flows(stack, large_photo)[:1]
        for failure in FAILURES:
            _fail(stack, proxy, "DetectLabel", failure)
            host.invoke(flows[0][1], {"time_limit_in_ms": 3000})
        printed = host.close()
    leaks = find_leaks(printed, _secrets(stack))
    assert any(leak.startswith("a request signature") for leak in leaks), leaks


# --- the SDK's signing keys, with its own logger raised to DEBUG ---------------------------------------

# The SDK's DEBUG lines that carry a signing key or a signature, and any 40-hex HMAC after such a name.
HMAC_SHOWN = re.compile(r"(?:sign_key|sign|signature)\W{0,6}[0-9a-f]{40}", re.I)


def _signing_keys(secret_key: str, started: int, ended: int) -> set[str]:
    """Every signing key the SDK can have derived in [started, ended]: HMAC-SHA1 of the secret key
    over the key time `<now - 60>;<now + expiry>`, for the SDK's default expiry and the presign's."""
    import hashlib
    import hmac

    keys = set()
    for now in range(started - 1, ended + 2):
        for expiry in (10000, 600):
            key_time = f"{now - 60};{now + expiry}"
            keys.add(hmac.new(secret_key.encode(), key_time.encode(), hashlib.sha1).hexdigest())
    return keys


def _run_with_sdk_debug(stack: Any) -> tuple[str, set[str]]:
    """Label two photos (one by key, one through a signed detect-url) and fail a third's calls,
    with `qcloud_cos` at DEBUG behind the function's own handler and a plain stdlib one; answer all
    that was printed and every signing key the SDK can have used meanwhile."""
    import contextlib
    import io
    import logging
    import time
    from contextlib import redirect_stdout

    from cos_autotag_tools.emulator import Faults
    from tests.support.images import jpeg
    from tests.support.scf import context

    app = stack.app(log_level="DEBUG", log_event=True)
    sdk_logger = logging.getLogger("qcloud_cos")
    plain, out = io.StringIO(), io.StringIO()
    plain_handler = logging.StreamHandler(plain)
    plain_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    sdk_logger.addHandler(plain_handler)
    previous = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    started = int(time.time())
    try:
        small = stack.put("sign/small.jpg", jpeg(71))
        large = stack.put("sign/large", jpeg(72, size=(400, 300)), content_type="application/octet-stream")
        with redirect_stdout(out):
            app.handle(stack.event("sign/small.jpg", small), context())
            app.handle(stack.event("sign/large", large, content_type="application/octet-stream"), context())
            stack.emulator.set_faults(Faults(error_5xx_rate=1.0, error_5xx_ops={"DetectLabel"}))
            with contextlib.suppress(Exception):  # the retry signal, expected here
                app.handle(stack.event("sign/small.jpg", small), context(time_limit_ms=3000))
            stack.emulator.set_faults(Faults())
    finally:
        sdk_logger.setLevel(previous)
        sdk_logger.removeHandler(plain_handler)
    printed = out.getvalue() + plain.getvalue()
    return printed, _signing_keys(stack.env["TENCENTCLOUD_SECRETKEY"], started, int(time.time()))


def _signing_key_leaks(printed: str, keys: set[str]) -> list[str]:
    found = [
        f"a signing key ({encoding})" for key in keys for encoding, form in encodings(key).items() if form in printed
    ]
    return found + [f"an HMAC after its name: {m.group(0)[:12]}..." for m in HMAC_SHOWN.finditer(printed)]


def test_no_signing_key_when_the_sdk_logger_is_raised_to_debug():
    from tests.support.function_stack import running_stack

    with running_stack() as stack:
        printed, keys = _run_with_sdk_debug(stack)
    # The SDK really printed its signing lines (else the test would prove nothing).
    assert "sign_key" in printed and "str_to_sign" in printed
    assert _signing_key_leaks(printed, keys) == []


def test_the_signing_key_check_fails_without_the_hmac_rule(monkeypatch):
    """The negative control: without the rule for HMACs after their name, the same run shows them."""
    from cos_autotag import observability
    from tests.support.function_stack import running_stack

    rules = [rule for rule in observability._SECRET_IN_TEXT if rule[0] is not observability._HMAC_AFTER_NAME]
    monkeypatch.setattr(observability, "_SECRET_IN_TEXT", rules)
    with running_stack() as stack:
        printed, keys = _run_with_sdk_debug(stack)
    leaks = _signing_key_leaks(printed, keys)
    assert any(leak.startswith("a signing key") for leak in leaks), leaks


if __name__ == "__main__":
    host_main()
