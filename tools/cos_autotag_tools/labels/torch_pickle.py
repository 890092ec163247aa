"""Load a legacy (pre-1.6) torch checkpoint into numpy arrays without torch.

The legacy format is a run of pickles followed by raw storage bytes:

1. magic number, 2. protocol version, 3. system info (endianness, type sizes),
4. the object itself, whose tensors point at storages through persistent ids,
5. the list of storage keys in the order their bytes follow,
6. per storage: an int64 element count, then the elements.

A pickle is code, so every pickle here goes through `_RestrictedUnpickler`, which knows
exactly four kinds of global (storage types, the tensor rebuild function, OrderedDict)
and refuses every other one with `UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeGuard

import numpy as np

from cos_autotag_tools.labels.errors import CheckpointFormatError, UnsafePickleError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> element type (endianness is applied from the file's sys info).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for `torch.FloatStorage` & co.: only its element type matters."""

    name: str
    dtype_code: str


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id; its bytes come after the pickle."""

    key: str
    storage_type: _StorageType
    numel: int
    offset: int  # elements into the root storage (non-zero only for legacy storage views)


@dataclass(frozen=True)
class _TensorRef:
    """What `_rebuild_tensor_v2` returns while the storage bytes are still unread."""

    storage: _StorageRef
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int_tuple(value: object) -> TypeGuard[tuple[int, ...]]:
    return isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    """Stand-in for `torch._utils._rebuild_tensor_v2`: records where the tensor lives."""
    if not isinstance(storage, _StorageRef):
        raise CheckpointFormatError("tensor rebuilt from something that is not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointFormatError(f"bad tensor storage offset {storage_offset!r}")
    if not _is_int_tuple(size) or not _is_int_tuple(stride) or len(size) != len(stride):
        raise CheckpointFormatError(f"bad tensor size/stride {size!r}/{stride!r}")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a legacy state dict needs; anything else is refused."""

    def __init__(self, file: IO[bytes], storages: dict[str, _StorageRef]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise UnsafePickleError(
            f"refusing to load global {module}.{name} from a checkpoint: only torch storages, "
            "torch._utils._rebuild_tensor_v2 and collections.OrderedDict are allowed"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        # Legacy id: ("storage", storage_type, root_key, location, numel, view_metadata).
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointFormatError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise CheckpointFormatError(f"bad storage reference {pid!r}")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointFormatError(f"bad storage size in {pid!r}")
        root = self._storages.setdefault(key, _StorageRef(key, storage_type, numel, 0))
        if root.storage_type != storage_type or root.numel != numel:
            raise CheckpointFormatError(f"storage {key} is referenced with two different types or sizes")
        if view is None:
            return root
        # A view: (view_key, offset, view_size) into the root storage.
        if not (isinstance(view, tuple) and len(view) == 3 and _is_int_tuple(view[1:])):
            raise CheckpointFormatError(f"bad storage view {view!r}")
        _, offset, view_size = view
        if offset + view_size > numel:
            raise CheckpointFormatError(f"storage view {view!r} runs past storage {key}")
        return _StorageRef(key, storage_type, view_size, offset)


def _load_one(stream: IO[bytes], storages: dict[str, _StorageRef]) -> Any:
    try:
        return _RestrictedUnpickler(stream, storages).load()
    except (UnsafePickleError, CheckpointFormatError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointFormatError(f"corrupt checkpoint pickle: {exc}") from exc


def _materialise(ref: _TensorRef, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Copy a tensor out of its storage, checking every index stays inside the storage."""
    base = arrays[ref.storage.key]
    start = ref.storage.offset + ref.storage_offset
    limit = ref.storage.offset + ref.storage.numel
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=base.dtype)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= limit:
        # as_strided does no bounds checks: a hostile file could otherwise read arbitrary memory.
        raise CheckpointFormatError(f"tensor of size {ref.size} runs past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        base[start:],
        shape=ref.size,
        strides=tuple(s * base.itemsize for s in ref.stride),
        writeable=False,
    )
    # A native-byte-order C-layout copy (ascontiguousarray would turn a scalar into shape (1,)).
    return np.array(view, dtype=base.dtype.newbyteorder("="), order="C", copy=True)


def _resolve(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return _materialise(obj, arrays)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v, arrays)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(v, arrays) for v in obj)
    return obj


def load_legacy(source: str | Path | bytes) -> Any:
    """Load a legacy torch checkpoint (a path or its bytes); tensors become numpy arrays."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointFormatError(
            "this is a zip-format (torch >= 1.6) checkpoint; only the legacy format is supported"
        )
    stream = io.BytesIO(data)
    storages: dict[str, _StorageRef] = {}

    magic = _load_one(stream, storages)
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointFormatError("not a legacy torch checkpoint (wrong magic number)")
    protocol = _load_one(stream, storages)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointFormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _load_one(stream, storages)
    little_endian = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byte_order = "<" if little_endian else ">"

    result = _load_one(stream, storages)
    keys = _load_one(stream, storages)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointFormatError("storage key list is missing or malformed")

    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise CheckpointFormatError(f"storage {key} has bytes but no tensor refers to it")
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointFormatError(f"checkpoint truncated before storage {key}")
        (count,) = struct.unpack(f"{byte_order}q", header)
        if count != ref.numel:
            raise CheckpointFormatError(f"storage {key} holds {count} elements, expected {ref.numel}")
        dtype = np.dtype(byte_order + ref.storage_type.dtype_code)
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CheckpointFormatError(f"checkpoint truncated inside storage {key}")
        arrays[key] = np.frombuffer(raw, dtype=dtype)
    missing = set(storages) - set(arrays)
    if missing:
        raise CheckpointFormatError(f"storages without bytes: {sorted(missing)[:5]}")
    return _resolve(result, arrays)


def load_state_dict(source: str | Path | bytes) -> dict[str, np.ndarray]:
    """Load a legacy checkpoint that holds a state dict: parameter name -> numpy array."""
    obj = load_legacy(source)
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    state: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CheckpointFormatError(f"state dict entry {name!r} is not a named tensor")
        state[name] = value
    return state
