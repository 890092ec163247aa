"""detect-label through `CosS3Client.ci_image_detect_label`: response shapes per scene, CI's
input rules, detect-url (own objects only, presigned, thumbnail processing)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit

import pytest
from qcloud_cos import CosConfig, CosS3Client

from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator, auth
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import error_of
from tests.support.images import image_bytes
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration


class RecordingEngine(DigestLabelEngine):
    """The digest engine, remembering what it was shown."""

    def __init__(self) -> None:
        super().__init__(labels_per_scene=2)
        self.calls: list[tuple[bytes, list[str]]] = []
        self._lock = threading.Lock()

    def detect(self, data: bytes, scenes: Sequence[str]) -> dict[str, list[dict[str, str | int]]]:
        with self._lock:
            self.calls.append((data, list(scenes)))
        return super().detect(data, scenes)


@pytest.fixture
def engine(emulator: Emulator) -> RecordingEngine:
    engine = RecordingEngine()
    emulator.label_engine = engine
    return engine


def test_without_scenes_labels_are_top_level(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    data = image_bytes("JPEG", seed=1)
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=data)
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg")
    assert [label["Name"] for label in result["Labels"]] == [
        DigestLabelEngine.expected_first_name(data),
        engine.detect(data, ["camera"])["camera"][1]["Name"],
    ]
    assert set(result["Labels"][0]) == {"Confidence", "Name", "FirstCategory", "SecondCategory"}
    assert engine.calls[0] == (data, ["camera"])  # CI's default scene


@pytest.mark.parametrize("scenes", ["camera", "web,album", "web,camera,album,news"])
def test_one_element_per_requested_scene(cos_client: CosS3Client, engine: RecordingEngine, scenes: str) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="p.png", Body=image_bytes("PNG", seed=2))
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, Key="p.png", Scenes=scenes)
    wanted = scenes.split(",")
    assert set(result) == {cos_facts.DETECT_SCENE_ELEMENTS[s] for s in wanted}
    for scene in wanted:
        labels = result[cos_facts.DETECT_SCENE_ELEMENTS[scene]]["Labels"]
        assert [label["SecondCategory"] for label in labels] == [scene, scene]
        assert all(0 <= int(label["Confidence"]) <= 100 for label in labels)
    assert engine.calls[-1][1] == wanted


def test_unknown_scene(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="p.png", Body=image_bytes("PNG"))
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="p.png", Scenes="space"))
    assert (err.get_status_code(), err.get_error_code()) == (400, "InvalidArgument")
    assert not engine.calls


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"GIF89a not supported", cos_facts.CI_CODE_NOT_AN_IMAGE),
        (b"plain text", cos_facts.CI_CODE_NOT_AN_IMAGE),
        (b"", cos_facts.CI_CODE_NOT_AN_IMAGE),
        (b"\xff\xd8\xff but truncated", cos_facts.CI_CODE_NOT_AN_IMAGE),
        (b"\xff\xd8\xff" + b"\0" * cos_facts.DETECT_MAX_BYTES, cos_facts.CI_CODE_IMAGE_TOO_LARGE),
        (image_bytes("PNG", size=(cos_facts.DETECT_MIN_SIDE - 1, 200)), cos_facts.CI_CODE_IMAGE_TOO_SMALL),
    ],
    ids=["gif", "text", "empty", "truncated-jpeg", "too-large", "too-small"],
)
def test_ci_rejects_what_ci_rejects(cos_client: CosS3Client, engine: RecordingEngine, body: bytes, code: str) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="bad", Body=body)
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="bad"))
    assert (err.get_status_code(), err.get_error_code()) == (400, code)
    assert not engine.calls  # rejected before anything is billed or labelled


def test_missing_object(cos_client: CosS3Client) -> None:
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="missing.jpg"))
    assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchKey")


def test_engine_failure_is_a_500(cos_client: CosS3Client, emulator: Emulator) -> None:
    class Broken:
        def detect(self, data: bytes, scenes: Sequence[str]) -> dict[str, object]:
            raise RuntimeError("model exploded")

    emulator.label_engine = Broken()
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg"))
    assert (err.get_status_code(), err.get_error_code()) == (500, "InternalError")
    assert "model exploded" in err.get_error_msg()


def test_default_engine_is_the_projects_deterministic_engine(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg", Scenes="camera")
    assert type(emulator.label_engine).__name__ == "DeterministicEngine"
    assert result["CameraLabels"] is None or "Labels" in result["CameraLabels"]


def test_detect_counts_and_header(emulator: Emulator, cos_client: CosS3Client, engine: RecordingEngine) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    headers, _ = cos_client.ci_process(Bucket=BUCKET, Key="a.jpg", CiProcess="detect-label", NeedHeader=True)
    assert headers["Content-Type"] == "application/xml" and headers["x-cos-request-id"]
    assert emulator.count("DetectLabel", key="a.jpg", status=200) == 1


# --- detect-url ---------------------------------------------------------------------------------------


def object_url(key: str, bucket: str = BUCKET, expired: int = 300, token: str | None = None, **kwargs) -> str:  # type: ignore[no-untyped-def]
    """A presigned GET URL of `key` on the bucket's own COS host, as the SDK builds one (the
    emulator, like Cloud Infinite fetching from a private bucket, refuses unsigned URLs)."""
    conf = CosConfig(Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http")
    if token is not None:  # temporary keys: the token rides in the URL, signed (the SDK adds it only if asked)
        kwargs["Params"] = {"x-cos-security-token": token}
    return str(CosS3Client(conf).get_presigned_url(Bucket=bucket, Key=key, Method="GET", Expired=expired, **kwargs))


def test_detect_url_of_own_object(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    data = image_bytes("JPEG", size=(120, 80), seed=5)
    cos_client.put_object(Bucket=BUCKET, Key="dir/a b.jpg", Body=data)
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("dir/a b.jpg"), Scenes="web")
    assert result["WebLabels"]["Labels"][0]["Name"] == DigestLabelEngine.expected_first_name(data)
    assert engine.calls[-1][0] == data


def test_detect_url_with_thumbnail_processing(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    from PIL import Image

    cos_client.put_object(Bucket=BUCKET, Key="big.jpg", Body=image_bytes("JPEG", size=(400, 200)))
    cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "&imageMogr2/thumbnail/100x100")
    seen = Image.open(io.BytesIO(engine.calls[-1][0]))
    assert (seen.format, seen.size) == ("JPEG", (100, 50))  # fit within 100x100, aspect kept
    cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "&imageMogr2/thumbnail/x60")
    assert Image.open(io.BytesIO(engine.calls[-1][0])).size == (120, 60)
    err = error_of(
        lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "&imageMogr2/blur/3")
    )
    assert err.get_error_code() == "InvalidArgument"
    # A thumbnail below CI's minimum side is refused like any small image.
    small = error_of(
        lambda: cos_client.ci_image_detect_label(
            Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "&imageMogr2/thumbnail/40x40"
        )
    )
    assert small.get_error_code() == cos_facts.CI_CODE_IMAGE_TOO_SMALL


def test_detect_url_presigned(emulator: Emulator, cos_client: CosS3Client, engine: RecordingEngine) -> None:
    data = image_bytes("PNG", seed=9)
    cos_client.put_object(Bucket=BUCKET, Key="signed.png", Body=data)
    conf = CosConfig(Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http")
    url = CosS3Client(conf).get_presigned_url(Bucket=BUCKET, Key="signed.png", Method="GET", Expired=300)
    assert urlsplit(url).hostname == cos_facts.cos_host(BUCKET, REGION)
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=url, Scenes="camera")
    assert result["CameraLabels"]["Labels"][0]["Name"] == DigestLabelEngine.expected_first_name(data)
    tampered = url.replace("q-signature=", "q-signature=f")
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=tampered))
    assert (err.get_status_code(), err.get_error_code()) == (400, cos_facts.CI_CODE_BAD_IMAGE_SOURCE)
    assert "signature" in err.get_error_msg()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.jpg",
        "http://127.0.0.1:1/cat.jpg",
        "file:///etc/passwd",
        f"http://{cos_facts.cos_host('other-1250000000', REGION)}/a.jpg",
        f"http://{cos_facts.cos_host(BUCKET, 'ap-shanghai')}/a.jpg",
    ],
)
def test_detect_url_never_leaves_the_emulator(cos_client: CosS3Client, engine: RecordingEngine, url: str) -> None:
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=url))
    assert (err.get_status_code(), err.get_error_code()) == (400, cos_facts.CI_CODE_BAD_IMAGE_SOURCE)
    assert not engine.calls


def test_detect_url_missing_object(cos_client: CosS3Client) -> None:
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("nope.jpg")))
    assert err.get_error_code() == "NoSuchKey"


# --- detect-url is fetched as Cloud Infinite fetches it: a GET of the URL alone -------------------------


def unreadable(cos_client: CosS3Client, url: str) -> str:
    """The message of detect-label's refusal of `url` (checking the code and status on the way)."""
    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=url))
    assert (err.get_status_code(), err.get_error_code()) == (400, cos_facts.CI_CODE_DETECT_URL_UNREADABLE)
    return str(err.get_error_msg())


def signed_url(key: str, *, now: float, expire_s: int, secret_key: str = SECRET_KEY) -> str:
    query = auth.authorization(
        SECRET_ID, secret_key, "GET", "/" + key, {}, {"host": cos_facts.cos_host(BUCKET, REGION)}, expire_s, now
    )
    return f"https://{cos_facts.cos_host(BUCKET, REGION)}/{key}?{urlencode(auth.parse_authorization(query))}"


def test_detect_url_must_be_signed(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    plain = f"https://{cos_facts.cos_host(BUCKET, REGION)}/a.jpg"
    assert "not signed" in unreadable(cos_client, plain)
    assert "not signed" in unreadable(cos_client, plain + "?imageMogr2/thumbnail/100x100")
    assert not engine.calls
    cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("a.jpg"))  # signed: fetched
    assert len(engine.calls) == 1


def test_detect_url_signature_is_verified(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    now = time.time()
    assert "Request has expired" in unreadable(cos_client, signed_url("a.jpg", now=now - 3600, expire_s=60))
    assert "SignatureDoesNotMatch" in unreadable(cos_client, signed_url("a.jpg", now=now, expire_s=60, secret_key="x"))
    other_ak = object_url("a.jpg").replace(f"q-ak={SECRET_ID}", "q-ak=AKIDsomeoneelse")
    assert "InvalidAccessKeyId" in unreadable(cos_client, other_ak)
    # A signed header CI cannot send (it fetches with the Host header alone) fails the signature.
    with_header = object_url("a.jpg", Headers={"x-cos-traffic-limit": "819200"})
    assert "SignatureDoesNotMatch" in unreadable(cos_client, with_header)
    # The signature covers the path: a URL signed for one key does not open another.
    cos_client.put_object(Bucket=BUCKET, Key="b.jpg", Body=image_bytes(seed=4))
    assert "SignatureDoesNotMatch" in unreadable(cos_client, object_url("a.jpg").replace("/a.jpg?", "/b.jpg?"))
    assert not engine.calls
    assert cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=signed_url("a.jpg", now=now, expire_s=60))


def test_detect_url_of_another_bucket_is_refused(
    emulator: Emulator, cos_client: CosS3Client, engine: RecordingEngine
) -> None:
    other = "other-1250000000"
    emulator.create_bucket(other, REGION)
    cos_client.put_object(Bucket=other, Key="a.jpg", Body=image_bytes())
    message = unreadable(cos_client, object_url("a.jpg", bucket=other))
    assert f"bucket {other}" in message and f"not this request's {BUCKET}" in message
    assert not engine.calls
    assert cos_client.ci_image_detect_label(Bucket=other, DetectUrl=object_url("a.jpg", bucket=other))


def test_detect_url_with_temporary_keys_needs_the_token(emulator: Emulator, engine: RecordingEngine) -> None:
    emulator.token = "session-token-1"
    client = make_client(emulator, token="session-token-1")
    client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes())
    assert "x-cos-security-token" in unreadable(client, object_url("a.jpg"))
    assert "x-cos-security-token" in unreadable(client, object_url("a.jpg", token="another-token"))
    assert client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("a.jpg", token="session-token-1"))
    assert len(engine.calls) == 1
