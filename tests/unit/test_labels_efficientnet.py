"""EfficientNet-Lite0 in numpy: the building blocks against slow references, the real network on real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cos_autotag_tools.labels import EfficientNetEngine, ImageDecodeError
from cos_autotag_tools.labels.efficientnet import (
    BN_EPSILON,
    Conv,
    EfficientNetLite0,
    _dense,
    _depthwise,
    _same_padding,
    default_checkpoint_path,
    shared_model,
)
from cos_autotag_tools.labels.errors import CheckpointFormatError
from cos_autotag_tools.labels.scenes import NOISE_FLOOR, SCENE_POLICIES
from cos_autotag_tools.labels.torch_pickle import load_state_dict
from cos_autotag_tools.photos import photo_path


@pytest.fixture(scope="module")
def engine() -> EfficientNetEngine:
    built = EfficientNetEngine()
    _ = built.model  # load the weights once for the whole module
    return built


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# --- building blocks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(224, 3, 2, (0, 1)), (112, 3, 1, (1, 1)), (14, 5, 2, (1, 2)), (7, 5, 1, (2, 2)), (7, 1, 1, (0, 0))],
)
def test_same_padding_matches_tensorflow(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert _same_padding(size, kernel, stride) == expected


def _reference_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """Direct convolution, loops only: x (H, W, Cin), w (Cout, Cin/groups, k, k), TF SAME padding."""
    k = w.shape[2]
    ph, pw = _same_padding(x.shape[0], k, stride), _same_padding(x.shape[1], k, stride)
    xp = np.pad(x, (ph, pw, (0, 0))).astype(np.float64)
    oh, ow = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
    cout, cin_g = w.shape[0], w.shape[1]
    out = np.zeros((oh, ow, cout))
    per_group = cout // groups
    for o in range(cout):
        g = o // per_group
        for i in range(oh):
            for j in range(ow):
                patch = xp[i * stride : i * stride + k, j * stride : j * stride + k, g * cin_g : (g + 1) * cin_g]
                out[i, j, o] = np.sum(patch * w[o].transpose(1, 2, 0)) + b[o]
    return out


def _bn_state(prefix: str, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": rng.uniform(0.5, 1.5, channels).astype(np.float32),
        f"{prefix}.bias": rng.standard_normal(channels).astype(np.float32),
        f"{prefix}.running_mean": rng.standard_normal(channels).astype(np.float32),
        f"{prefix}.running_var": rng.uniform(0.1, 2.0, channels).astype(np.float32),
    }


def _apply_bn(y: np.ndarray, state: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + BN_EPSILON)
    return (y - state[f"{prefix}.running_mean"]) * scale + state[f"{prefix}.bias"]


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 2, 9), (3, 1, 8), (1, 1, 5), (5, 2, 10)])
def test_dense_conv_with_folded_bn_equals_conv_then_bn(kernel: int, stride: int, size: int) -> None:
    rng = np.random.default_rng(kernel * 10 + stride)
    cin, cout = 3, 4
    state = {"c.weight": rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32)}
    state.update(_bn_state("bn", cout, rng))
    x = rng.standard_normal((size, size + 1, cin)).astype(np.float32)

    got = _dense(state, "c", "bn", stride)(x)

    expected = _apply_bn(_reference_conv(x, state["c.weight"], np.zeros(cout), stride, 1), state, "bn")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 1, 7), (3, 2, 8), (5, 1, 6), (5, 2, 9)])
def test_depthwise_conv_with_folded_bn_equals_grouped_conv_then_bn(kernel: int, stride: int, size: int) -> None:
    rng = np.random.default_rng(kernel * 100 + stride)
    channels = 6
    state = {"d.weight": rng.standard_normal((channels, 1, kernel, kernel)).astype(np.float32)}
    state.update(_bn_state("bn", channels, rng))
    x = rng.standard_normal((size, size, channels)).astype(np.float32)

    conv = _depthwise(state, "d", "bn", stride)
    got = conv(x)

    assert isinstance(conv, Conv) and conv.depthwise
    expected = _apply_bn(_reference_conv(x, state["d.weight"], np.zeros(channels), stride, channels), state, "bn")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_state_dict_missing_a_layer_is_refused_by_name() -> None:
    state = load_state_dict(default_checkpoint_path())
    del state["_blocks.7._bn1.running_var"]

    with pytest.raises(CheckpointFormatError, match=r"_blocks\.7\._bn1\.running_var"):
        EfficientNetLite0(state)


def test_the_real_checkpoint_has_the_lite0_layout() -> None:
    state = load_state_dict(default_checkpoint_path())

    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(a.flags.c_contiguous for a in state.values())


# --- the real network ----------------------------------------------------------------------


def test_the_model_is_loaded_once_per_process(engine: EfficientNetEngine) -> None:
    assert EfficientNetEngine().model is engine.model is shared_model()


def test_logits_for_the_coffee_photo_are_stable(engine: EfficientNetEngine) -> None:
    from cos_autotag_tools.labels.image import preprocess

    logits = engine.model.logits(preprocess(photo_path("coffee.png").read_bytes()))

    # Recorded from this implementation (which matched the PyTorch reference to ~1e-5);
    # the tolerance allows BLAS summation-order differences, not a changed network.
    assert logits.shape == (1000,) and logits.dtype == np.float32
    assert np.argsort(-logits)[:5].tolist() == [967, 968, 925, 960, 504]
    np.testing.assert_allclose(logits[[967, 968, 925, 960, 504]], [11.5044, 7.2777, 6.5215, 5.9690, 5.7997], atol=2e-3)
    assert float(logits.sum()) == pytest.approx(-63.798, abs=0.05)
    assert float(np.abs(logits).sum()) == pytest.approx(777.77, rel=1e-3)


def test_the_coffee_photo_is_labeled_espresso_in_chinese_by_default(engine: EfficientNetEngine) -> None:
    labels = engine.detect(photo_path("coffee.png").read_bytes(), ["camera"])["camera"]

    assert labels[0]["Name"] == "意式浓缩咖啡"
    assert int(labels[0]["Confidence"]) >= 80
    assert (labels[0]["FirstCategory"], labels[0]["SecondCategory"]) == ("食物", "饮品")


def test_english_labels_on_request(engine: EfficientNetEngine) -> None:
    english = EfficientNetEngine(language="en")
    data = photo_path("coffee.png").read_bytes()

    labels = english.detect(data, ["camera"])["camera"]

    assert labels[0]["Name"] == "espresso"
    assert (labels[0]["FirstCategory"], labels[0]["SecondCategory"]) == ("Food", "Beverage")
    chinese = engine.detect(data, ["camera"])["camera"]
    assert [lb["Confidence"] for lb in labels] == [lb["Confidence"] for lb in chinese]  # same model, other names


def test_the_cat_photo_is_labeled_a_cat(engine: EfficientNetEngine) -> None:
    labels = engine.detect(photo_path("chelsea.png").read_bytes(), ["camera"])["camera"]

    assert labels, "expected at least one confident label"
    assert labels[0]["Name"] in {"虎斑猫", "虎纹猫", "埃及猫"}
    assert all(label["SecondCategory"] == "猫" for label in labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_noise_gets_no_label_in_any_scene(engine: EfficientNetEngine, seed: int) -> None:
    noise = np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8)

    probabilities = engine.probabilities(_png(noise))
    result = engine.detect(_png(noise), ["web", "camera", "album", "news"])

    assert float(probabilities.max()) < NOISE_FLOOR / 100
    assert result == {"web": [], "camera": [], "album": [], "news": []}


def test_scenes_answer_differently_but_consistently(engine: EfficientNetEngine) -> None:
    data = photo_path("chelsea.png").read_bytes()

    first = engine.detect(data, ["web", "camera", "album", "news"])
    again = engine.detect(data, ["news", "album", "camera", "web"])

    assert first == again
    names = {scene: [str(label["Name"]) for label in labels] for scene, labels in first.items()}
    assert "猫" in names["web"] and "猫" not in names["camera"]  # web adds the SecondCategory
    assert "动物" in names["news"]  # news adds the FirstCategory
    album = SCENE_POLICIES["album"]
    assert len(names["album"]) <= album.top_k
    assert all(int(lb["Confidence"]) >= album.min_confidence for lb in first["album"])
    for labels in first.values():
        confidences = [int(label["Confidence"]) for label in labels]
        assert confidences == sorted(confidences, reverse=True)
        assert all(0 <= c <= 100 for c in confidences)


def test_a_jpeg_photo_is_labeled(engine: EfficientNetEngine) -> None:
    labels = engine.detect(photo_path("rocket.jpg").read_bytes(), ["camera"])["camera"]

    assert labels[0]["Name"] in {"导弹", "炮弹", "航天飞机"}


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20],
    ids=["empty", "text", "gif", "png-signature-only"],
)
def test_bytes_that_are_not_a_png_or_jpeg_raise_image_decode_error(engine: EfficientNetEngine, data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        engine.detect(data, ["camera"])


def test_a_truncated_jpeg_raises_image_decode_error(engine: EfficientNetEngine) -> None:
    data = photo_path("rocket.jpg").read_bytes()

    with pytest.raises(ImageDecodeError):
        engine.detect(data[: len(data) // 3], ["camera"])


def test_an_unknown_scene_is_refused(engine: EfficientNetEngine) -> None:
    with pytest.raises(ValueError, match="unknown detect-label scene"):
        engine.detect(photo_path("coffee.png").read_bytes(), ["selfie"])
