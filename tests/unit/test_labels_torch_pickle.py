"""The legacy torch checkpoint loader: real round trips, and refusal of anything but tensors."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cos_autotag_tools.labels.errors import CheckpointFormatError, UnsafePickleError
from cos_autotag_tools.labels.torch_pickle import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    load_legacy,
    load_state_dict,
)

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


class _Storage:
    def __init__(self, key: str, kind: type, data: np.ndarray) -> None:
        self.key, self.kind, self.data = key, kind, data


class _Tensor:
    """Pickles as torch does: a call to torch._utils._rebuild_tensor_v2 on a storage."""

    rebuild: object = None

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args: tuple[object, ...] = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (_Tensor.rebuild, self.args)


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """Stand-in `torch` modules so the stdlib pickler writes the same globals torch writes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    kinds: dict[str, type] = {}
    for name in ("FloatStorage", "LongStorage"):
        kind = type(name, (), {"__module__": "torch"})
        setattr(torch, name, kind)
        kinds[name] = kind

    def _rebuild_tensor_v2(*args: object) -> None:  # only its name is pickled
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch._utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    monkeypatch.setattr(_Tensor, "rebuild", _rebuild_tensor_v2)
    return kinds


def _legacy_file(obj: object, storages: list[_Storage], *, magic: object = LEGACY_MAGIC_NUMBER) -> bytes:
    """Write `obj` in the legacy torch layout: 3 header pickles, the object, keys, raw storages."""

    class _Pickler(pickle.Pickler):
        def persistent_id(self, o: object) -> object:
            if isinstance(o, _Storage):
                return ("storage", o.kind, o.key, "cpu", o.data.size, None)
            return None

    out = io.BytesIO()
    for header in (magic, LEGACY_PROTOCOL_VERSION, SYS_INFO):
        pickle.dump(header, out, protocol=2)
    _Pickler(out, protocol=2).dump(obj)
    ordered = sorted(storages, key=lambda s: s.key)
    pickle.dump([s.key for s in ordered], out, protocol=2)
    for storage in ordered:
        out.write(struct.pack("<q", storage.data.size))
        out.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def test_round_trip_restores_values_strides_offsets_and_order(fake_torch: dict[str, type]) -> None:
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((3, 4)).astype(np.float32)
    # Stored transposed, as the real checkpoint stores its TF-converted weights.
    transposed = _Storage("10", fake_torch["FloatStorage"], weight.T.copy().ravel())
    shared = _Storage("2", fake_torch["FloatStorage"], np.arange(10, dtype=np.float32))
    counter = _Storage("7", fake_torch["LongStorage"], np.array([42], dtype=np.int64))
    state = collections.OrderedDict(
        [
            ("w", _Tensor(transposed, 0, (3, 4), (1, 3))),
            ("head", _Tensor(shared, 0, (4,), (1,))),
            ("tail", _Tensor(shared, 6, (2, 2), (2, 1))),
            ("n", _Tensor(counter, 0, (), ())),
        ]
    )
    data = _legacy_file(state, [transposed, shared, counter])

    loaded = load_state_dict(data)

    assert list(loaded) == ["w", "head", "tail", "n"]
    np.testing.assert_array_equal(loaded["w"], weight)
    assert loaded["w"].flags.c_contiguous and loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["head"], [0, 1, 2, 3])
    np.testing.assert_array_equal(loaded["tail"], [[6, 7], [8, 9]])
    assert loaded["n"].dtype == np.int64 and int(loaded["n"]) == 42


def test_loads_from_a_path(fake_torch: dict[str, type], tmp_path: Path) -> None:
    storage = _Storage("0", fake_torch["FloatStorage"], np.array([1.5, -2.0], dtype=np.float32))
    path = tmp_path / "tiny.pth"
    path.write_bytes(_legacy_file({"b": _Tensor(storage, 0, (2,), (1,))}, [storage]))

    np.testing.assert_array_equal(load_state_dict(path)["b"], [1.5, -2.0])


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_would_run_a_shell_command(fake_torch: dict[str, type], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    storage = _Storage("0", fake_torch["FloatStorage"], np.zeros(1, dtype=np.float32))
    evil = {"weight": _Tensor(storage, 0, (1,), (1,)), "payload": _RunsCommand(marker)}
    data = _legacy_file(evil, [storage])

    with pytest.raises(UnsafePickleError, match=r"refusing to load global \w+\.system"):
        load_state_dict(data)
    assert not marker.exists()


def test_refuses_a_malicious_header_pickle_before_reading_further(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsCommand(marker)) + b"never reached"

    with pytest.raises(UnsafePickleError):
        load_legacy(data)
    assert not marker.exists()


def test_refuses_builtins_eval_written_by_hand() -> None:
    header = b"".join(pickle.dumps(h, protocol=2) for h in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, SYS_INFO))
    # Protocol 0: push builtins.eval, call it with one string argument.
    evil = b"cbuiltins\neval\n(S'__import__(\"os\").getcwd()'\ntR."

    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        load_legacy(header + evil)


def test_refuses_a_tensor_that_reads_past_its_storage(fake_torch: dict[str, type]) -> None:
    storage = _Storage("0", fake_torch["FloatStorage"], np.zeros(4, dtype=np.float32))
    data = _legacy_file({"w": _Tensor(storage, 2, (2, 2), (2, 1))}, [storage])

    with pytest.raises(CheckpointFormatError, match="past the end"):
        load_state_dict(data)


def test_refuses_a_truncated_file(fake_torch: dict[str, type]) -> None:
    storage = _Storage("0", fake_torch["FloatStorage"], np.zeros(8, dtype=np.float32))
    data = _legacy_file({"w": _Tensor(storage, 0, (8,), (1,))}, [storage])

    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_state_dict(data[:-5])


def test_refuses_a_wrong_magic_number(fake_torch: dict[str, type]) -> None:
    storage = _Storage("0", fake_torch["FloatStorage"], np.zeros(1, dtype=np.float32))
    data = _legacy_file({"w": _Tensor(storage, 0, (1,), (1,))}, [storage], magic=1234)

    with pytest.raises(CheckpointFormatError, match="magic"):
        load_state_dict(data)


def test_refuses_zip_format_checkpoints_with_a_clear_message() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}))

    with pytest.raises(CheckpointFormatError, match="zip-format"):
        load_legacy(buffer.getvalue())


def test_refuses_garbage() -> None:
    with pytest.raises(CheckpointFormatError):
        load_legacy(b"\x00\x01 definitely not a pickle")


def test_a_checkpoint_holding_something_else_than_a_state_dict_is_refused(fake_torch: dict[str, type]) -> None:
    storage = _Storage("0", fake_torch["FloatStorage"], np.zeros(1, dtype=np.float32))
    data = _legacy_file([_Tensor(storage, 0, (1,), (1,))], [storage])

    assert isinstance(load_legacy(data), list)
    with pytest.raises(CheckpointFormatError, match="not a state dict"):
        load_state_dict(data)
