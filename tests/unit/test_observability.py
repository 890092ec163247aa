"""Redaction: every form a secret can take, in every place a log line can hold it."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from contextlib import redirect_stdout
from urllib.parse import quote, quote_plus

import pytest
import requests

from cos_autotag import observability
from cos_autotag.cos_adapter import CosGateway
from cos_autotag.errors import SettingsError
from cos_autotag.settings import Settings
from tests.support.constants import POWERTOOLS_KEYS

TOKEN = "Ux7pQ+wErT9/yUi0oPaS+dFgH/jK==lZ"
SECRET_KEY = "unit-secret-key-9f8e7d6c5b4a"
SECRET_ID = "AKIDunitobservability01"
SIGNATURE = "8d3c5e7f9a1b2c4d6e8f0a1b3c5d7e9f1a2b3c4d"


@pytest.fixture(autouse=True)
def registered() -> None:
    observability.configure("DEBUG")
    for value in (TOKEN, SECRET_KEY, SECRET_ID):
        observability.register_secret(value)


def redacted(text: str) -> str:
    return observability.redact_text(text)


# --- a registered secret, however it is encoded ---------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        TOKEN,
        quote(TOKEN, safe=""),
        quote(TOKEN),
        quote_plus(TOKEN),
        quote(quote(TOKEN, safe=""), safe=""),
        quote_plus(quote_plus(TOKEN)),
        quote(quote(quote(TOKEN, safe=""), safe=""), safe=""),
        quote(TOKEN, safe="").replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
        base64.b64encode(TOKEN.encode()).decode(),
        TOKEN.replace("+", " "),  # a `+` read back as a space by a form decoder
    ],
    ids=lambda form: form[:24],
)
def test_a_registered_token_is_redacted_in_every_encoding(form: str) -> None:
    assert redacted(f"before {form} after") == f"before {observability.REDACTED} after"


def test_lower_case_hex_escapes_are_redacted_exactly() -> None:
    lower = re.sub(r"%(?:25)*[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(quote(TOKEN, safe=""), safe=""))
    assert lower != quote(quote(TOKEN, safe=""), safe="")
    assert redacted(f"x {lower} y") == "x *** y"


def test_short_values_are_not_registered_as_secrets() -> None:
    observability.register_secret("abc")  # would otherwise redact every "abc" in every line
    assert redacted("abc") == "abc"


# --- named secrets, whatever encodes their `=` and `&` ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"q-sign-algorithm=sha1&q-ak=AKIDother&q-signature={SIGNATURE}", ["AKIDother", SIGNATURE]),
        (f"q-ak%3DAKIDother%26q-signature%3D{SIGNATURE}%26x", ["AKIDother", SIGNATURE]),
        (f"q-ak%253DAKIDother%2526q-signature%253D{SIGNATURE}%2526x", ["AKIDother", SIGNATURE]),
        ("{'x-cos-security-token': 'someoneelses/token+1=', 'Host': 'h'}", ["someoneelses"]),
        ('{"x-ci-security-token": "someoneelses/token+1="}', ["someoneelses"]),
        ("{'x-cos-security-token': b'someoneelses/token+1='}", ["someoneelses"]),
        ("X-Cos-Security-Token: someoneelses/token+1=\r\n", ["someoneelses"]),
        ("x-cos-security-token%3Dsomeoneelses%252Ftoken%26imageMogr2", ["someoneelses"]),
    ],
)
def test_named_secrets_are_redacted_in_raw_and_url_encoded_forms(text: str, hidden: list[str]) -> None:
    out = redacted(text)
    assert all(value not in out for value in hidden), out
    assert observability.REDACTED in out


def test_the_value_after_an_encoded_name_stops_at_the_encoded_ampersand() -> None:
    out = redacted(f"q-signature%3D{SIGNATURE}%26imageMogr2%2Fthumbnail")
    assert out == "q-signature%3D***%26imageMogr2%2Fthumbnail"


def test_a_detect_url_request_line_shows_neither_signature_nor_token() -> None:
    """The URL the function really builds, signed by the SDK, inside detect-url as requests sends it."""
    settings = Settings(cos_endpoint=("http", "127.0.0.1", 9))
    env = {"TENCENTCLOUD_SECRETID": SECRET_ID, "TENCENTCLOUD_SECRETKEY": SECRET_KEY, "TENCENTCLOUD_SESSIONTOKEN": TOKEN}
    gateway = CosGateway(settings, env)
    url = gateway.thumbnail_url("photos-1250000000", "ap-guangzhou", "相册/a b.jpg", "imageMogr2/thumbnail/1280x1280")
    signature = re.search(r"q-signature=([0-9a-f]{40})", url)
    assert signature and quote_plus(TOKEN) in url
    request = requests.Request(
        "GET", "http://127.0.0.1:9/", params={"ci-process": "detect-label", "detect-url": url}
    ).prepare()
    assert request.url and "%253D" in request.url  # the token's `=` is encoded twice
    # The forms the SDK and urllib3 print: the request line, and the "Max retries" error.
    for line in (
        f'http://127.0.0.1:9 "GET {request.path_url} HTTP/1.1" 503 0',
        f"HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: {request.path_url}",
        url,
    ):
        out = redacted(line)
        assert signature.group(1) not in out and SECRET_ID not in out
        assert not any(form in out for form in (TOKEN, quote_plus(TOKEN), quote_plus(quote_plus(TOKEN))))
        assert "imageMogr2" in out  # the rest of the URL stays readable


def test_without_the_rule_for_encoded_names_the_signature_shows() -> None:
    """The negative control: the old rule, which knew only a raw `=`, misses the detect-url's signature."""
    raw_only = re.compile(r"(q-signature=)[0-9a-fA-F]+")
    line = f"detect-url=https%3A%2F%2Fb.cos%2Fk%3Fq-signature%3D{SIGNATURE}%26x"
    assert SIGNATURE in raw_only.sub(r"\1***", line)
    assert SIGNATURE not in redacted(line)


# --- Redis URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:Sup3rSecret@10.0.0.5:6379/0", "redis://***@10.0.0.5:6379/0"),
        ("REDIS://:Sup3rSecret@10.0.0.5:6379", "REDIS://***@10.0.0.5:6379"),
        ("Rediss://user:Sup3rSecret@cache.example:6380/1", "Rediss://***@cache.example:6380/1"),
        ("redis://:acct@Sup3rSecret@10.0.0.5:6379", "redis://***@10.0.0.5:6379"),
        ("redis://:Sup3r/Secret@10.0.0.5", "redis://***@10.0.0.5"),
        ("redis://:Sup3r@Sec/ret@10.0.0.5", "redis://***@10.0.0.5"),
        ("redis://:Sup3r%40Sec%2Fret%25@10.0.0.5", "redis://***@10.0.0.5"),
        ("redis://:Sup3r%Secret@10.0.0.5", "redis://***@10.0.0.5"),
        ("redis://:Sup3rSecret@", "redis://***@"),
        ("redis://:Sup3rSecret", "redis://***"),  # no host: nothing tells where the password ends
        ("redis://:Sup3r/Secret", "redis://***"),
        ("redis%3A%2F%2F%3AacctSup3rSecret%40h%3A6379", "redis%3A%2F%2F***%40h%3A6379"),
    ],
)
def test_redis_passwords_are_redacted_in_every_url_form(url: str, shown: str) -> None:
    assert redacted(f"store: {url} failed") == f"store: {shown} failed"
    assert redacted(repr(url)) == repr(shown)


@pytest.mark.parametrize("url", ["redis://10.0.0.5:6379/0", "rediss://cache.example", "redis://h:6379/0,"])
def test_a_redis_url_without_credentials_is_left_readable(url: str) -> None:
    assert redacted(f"at {url} now") == f"at {url} now"


def test_the_settings_error_for_a_malformed_redis_url_would_not_show_the_password() -> None:
    """Whatever the settings module prints, the password in it cannot reach a log line."""
    message = str(SettingsError("AUTOTAG_IDEMPOTENCY_REDIS_URL", "redis://:Sup3rSecret@", "redis://HOST:PORT"))
    assert message == "AUTOTAG_IDEMPOTENCY_REDIS_URL='redis://:Sup3rSecret@' is not valid: expected redis://HOST:PORT"
    assert "Sup3rSecret" not in redacted(message)
    for value in ("redis://:acct@Sup3r/Secret@", "REDIS://:Sup3rSecret", "redis://:Sup3r%Secret@:0x"):
        assert "Sup3r" not in redacted(str(SettingsError("AUTOTAG_IDEMPOTENCY_REDIS_URL", value, "a URL")))


def test_a_registered_redis_url_hides_its_password_anywhere() -> None:
    observability.register_redis_url("redis://:acct9@Pw%2Fwith%40all%25@10.0.0.5:6379/0")
    for text in ("Pw/with@all%", "acct9@Pw/with@all%", "Pw%2Fwith%40all%25", quote_plus("Pw/with@all%")):
        assert "with" not in redacted(f"AUTH {text} refused"), text


# --- structlog lines: nested values, objects, tracebacks; shape unchanged -----------------------------


def log_lines(emit) -> list[dict]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    with redirect_stdout(out):
        emit(observability.get_logger())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_nested_values_objects_and_bytes_are_redacted() -> None:
    [line] = log_lines(
        lambda log: log.info(
            "x",
            cos_event={"Records": [{"headers": {"Authorization": "q-signature=ab", "note": f"t={TOKEN}"}}]},
            by_url={f"https://h/k?t={quote_plus(TOKEN)}": 1},
            items=(f"{quote(TOKEN, safe='')}", {SECRET_KEY}),
            error=RuntimeError(f"failed with {quote_plus(TOKEN)}"),
            body=f"key {SECRET_KEY}".encode(),
            count=3,
        )
    )
    text = json.dumps(line)
    assert TOKEN not in text and quote(TOKEN, safe="") not in text and SECRET_KEY not in text
    assert line["cos_event"]["Records"][0]["headers"]["Authorization"] == "***"
    assert line["error"] == "failed with ***" and line["count"] == 3
    assert line["by_url"] == {"https://h/k?t=***": 1}


def test_a_traceback_is_logged_as_powertools_exception_fields_and_redacted() -> None:
    try:
        raise ConnectionError(f"Max retries exceeded with url: /?x-cos-security-token={quote_plus(TOKEN)}")
    except ConnectionError as error:
        [line] = log_lines(lambda log, error=error: log.error("call failed", exc_info=error))
    assert line["exception_name"] == "ConnectionError"
    assert "Traceback (most recent call last)" in line["exception"] and "x-cos-security-token=***" in line["exception"]
    assert quote_plus(TOKEN) not in json.dumps(line)


def test_the_powertools_keys_come_first_in_their_order() -> None:
    observability.bind_invocation({"function_name": "f", "request_id": "r"}, True, "c")
    with observability.bound(bucket="b", key="k"):
        [line] = log_lines(lambda log: log.info("record labeled", outcome="labeled", extra=1))
    assert list(line)[:12] == [*POWERTOOLS_KEYS, "bucket", "key", "outcome"]


# --- stdlib records from any library, whatever handler prints them -------------------------------------


@pytest.fixture
def root_handler():  # type: ignore[no-untyped-def]
    """A plain handler on the root logger at DEBUG, added after `configure`, as a runtime would."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_urllib3_lines_reaching_a_root_handler_are_redacted(root_handler: io.StringIO) -> None:
    path = f"/?ci-process=detect-label&detect-url=https%3A%2F%2Fb%2Fk%3Fq-signature%3D{SIGNATURE}"
    path += f"%26x-cos-security-token%3D{quote_plus(quote_plus(TOKEN))}"
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "http", "h", 80, "GET", path, "HTTP/1.1", 200, 5
    )
    text = root_handler.getvalue()
    assert "urllib3.connectionpool" in text and "ci-process=detect-label" in text
    assert SIGNATURE not in text and quote_plus(quote_plus(TOKEN)) not in text


def test_a_stdlib_traceback_reaching_a_root_handler_is_redacted(root_handler: io.StringIO) -> None:
    try:
        raise OSError(f"could not send {SECRET_KEY} with token {quote(TOKEN, safe='')}")
    except OSError:
        logging.getLogger("some.library").exception("failed: %s", {"token_in_args": TOKEN})
    text = root_handler.getvalue()
    assert "Traceback (most recent call last)" in text and "OSError: could not send ***" in text
    assert SECRET_KEY not in text and TOKEN not in text and quote(TOKEN, safe="") not in text


def test_the_sdk_error_line_is_json_with_its_traceback_redacted() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            raise ConnectionError(f"url: /?detect-url=x%3Fq-signature%3D{SIGNATURE}")
        except ConnectionError:
            logging.getLogger("qcloud_cos.cos_client").exception([f"url:/?q-signature={SIGNATURE}"])
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    # WARNING, not ERROR: the function retries a network failure and logs the outcome itself.
    assert line["level"] == "warning" and line["logger"] == "qcloud_cos.cos_client"
    assert line["exception_name"] == "ConnectionError" and "q-signature%3D***" in line["exception"]
    assert SIGNATURE not in json.dumps(line)


HMAC = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    "line",
    [
        f"sign_key: {HMAC}",
        f"sign_key{HMAC}",  # the SDK's second print has no separator
        f"sign: {HMAC}",
        f"signature: {HMAC}",
        f"{{'sign_key': '{HMAC}'}}",
        f'{{"sign_key": "{HMAC}"}}',
        f"sign_key%3D{HMAC}",
        f"SIGN_KEY={HMAC.upper()}",
    ],
)
def test_an_hmac_after_a_signing_name_is_redacted_in_every_form(line: str) -> None:
    assert HMAC not in observability.redact_text(line).lower()


def test_forty_hex_digits_without_a_signing_name_are_left_alone() -> None:
    assert observability.redact_text(f"etag {HMAC}") == f"etag {HMAC}"
    assert observability.redact_text(f"design {HMAC}") == f"design {HMAC}"
