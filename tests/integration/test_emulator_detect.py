"""detect-label through `CosS3Client.ci_image_detect_label`: response shapes per scene, CI's
input rules, detect-url (own objects only, presigned, thumbnail processing)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

import pytest
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag import cos_facts
from cos_autotag_tools.emulator import DigestLabelEngine, Emulator
from tests.conftest import BUCKET, REGION, SECRET_ID, SECRET_KEY, image_bytes

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


def error_of(call) -> CosServiceError:  # type: ignore[no-untyped-def]
    with pytest.raises(CosServiceError) as err:
        call()
    return err.value


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


def object_url(key: str) -> str:
    return f"http://{cos_facts.cos_host(BUCKET, REGION)}/{key}"


def test_detect_url_of_own_object(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    data = image_bytes("JPEG", size=(120, 80), seed=5)
    cos_client.put_object(Bucket=BUCKET, Key="dir/a b.jpg", Body=data)
    result = cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("dir/a%20b.jpg"), Scenes="web")
    assert result["WebLabels"]["Labels"][0]["Name"] == DigestLabelEngine.expected_first_name(data)
    assert engine.calls[-1][0] == data


def test_detect_url_with_thumbnail_processing(cos_client: CosS3Client, engine: RecordingEngine) -> None:
    from PIL import Image

    cos_client.put_object(Bucket=BUCKET, Key="big.jpg", Body=image_bytes("JPEG", size=(400, 200)))
    cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "?imageMogr2/thumbnail/100x100")
    seen = Image.open(io.BytesIO(engine.calls[-1][0]))
    assert (seen.format, seen.size) == ("JPEG", (100, 50))  # fit within 100x100, aspect kept
    cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "?imageMogr2/thumbnail/x60")
    assert Image.open(io.BytesIO(engine.calls[-1][0])).size == (120, 60)
    err = error_of(
        lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "?imageMogr2/blur/3")
    )
    assert err.get_error_code() == "InvalidArgument"
    # A thumbnail below CI's minimum side is refused like any small image.
    small = error_of(
        lambda: cos_client.ci_image_detect_label(
            Bucket=BUCKET, DetectUrl=object_url("big.jpg") + "?imageMogr2/thumbnail/40x40"
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
