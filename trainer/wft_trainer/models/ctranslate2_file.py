"""Reading CTranslate2's `model.bin` (binary version 6, as CTranslate2 3.x and 4.x write it).

The layout, in little-endian order: uint32 version; a string naming the spec (`WhisperSpec`);
uint32 revision; uint32 variable count; per variable its name, uint8 rank, rank x uint32
dimensions, uint8 type, uint32 byte count and the raw data; then uint32 alias count and
(alias, target) name pairs. A string is a uint16 length that counts a final NUL, the bytes, the
NUL. Quantized weights (int8, int16) come with a `<name>_scale` variable: the weight is
`quantized / scale`, one scale per output row for int8 (convolutions too) and one per
matrix for int16.

The file is memory-mapped and each variable is a view into it, so reading large-v3 (3 GB) costs
no more memory than the tensors made from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_VERSION = 6
_DTYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: the upper half of a float32, widened on read
}
_BFLOAT16 = 5


class ModelFileError(ValueError):
    """model.bin is not a CTranslate2 model this reader understands; the message says why."""


@dataclass
class ModelFile:
    path: Path
    spec: str
    revision: int
    variables: dict[str, np.ndarray]  # aliases resolved: both names point at the same array

    def scalar(self, name: str) -> int:
        value = self.variables[name]
        if value.size != 1:
            raise ModelFileError(f"{self.path}: {name} should be a scalar, has shape {value.shape}")
        return int(value.reshape(()))

    def weight(self, name: str) -> np.ndarray:
        """`name` as floating point, dequantized when it was stored as int8 or int16."""
        value = self.variables[name]
        if value.dtype.kind != "i":
            return value
        scale = self.variables.get(name + "_scale")
        if scale is None:
            raise ModelFileError(f"{self.path}: {name} is quantized but has no {name}_scale")
        scale = scale.astype(np.float32)
        if scale.size > 1:  # int8: one scale per output row (convolutions included)
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        dequantized: np.ndarray = value.astype(np.float32) / scale
        return dequantized


def read_model_file(path: Path) -> ModelFile:
    """Parse `path`; a file that is not such a model raises ModelFileError naming it."""
    try:
        size = path.stat().st_size
        data = np.memmap(path, dtype=np.uint8, mode="r") if size else None
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot be read ({err})") from err
    if data is None:
        raise ModelFileError(f"{path}: is empty (0 bytes; an interrupted download?)")
    reader = _Reader(path, data)
    try:
        return reader.model()
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ModelFileError(
            f"{path}: not a CTranslate2 model.bin (unreadable at byte {reader.pos}: {err})"
        ) from err


class _Reader:
    def __init__(self, path: Path, data: np.ndarray) -> None:
        self.path, self.data, self.pos = path, data, 0

    def _take(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.data):
            raise ModelFileError(
                f"{self.path}: ends at byte {len(self.data)}, before the {n} bytes needed at "
                f"{self.pos} (a truncated download, or parts not joined?)"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return int(struct.unpack(fmt, self._take(size).tobytes())[0])

    def _string(self) -> str:
        n = self._u("<H")
        raw = self._take(n).tobytes()
        if not raw.endswith(b"\0"):
            raise ModelFileError(f"{self.path}: a name at byte {self.pos - n} is not terminated")
        return raw[:-1].decode("utf-8")

    def model(self) -> ModelFile:
        version = self._u("<I")
        if version != SUPPORTED_VERSION:
            raise ModelFileError(
                f"{self.path}: CTranslate2 binary version {version}; this reader knows version "
                f"{SUPPORTED_VERSION} (written by CTranslate2 3.x and 4.x)"
                if 0 < version < 100
                else f"{self.path}: not a CTranslate2 model.bin (it starts with {version:#010x})"
            )
        spec = self._string()
        revision = self._u("<I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(self._u("<I")):
            name = self._string()
            rank = self._u("<B")
            dims = [self._u("<I") for _ in range(rank)]
            kind = self._u("<B")
            nbytes = self._u("<I")
            if kind not in _DTYPES:
                raise ModelFileError(f"{self.path}: {name} has an unknown data type {kind}")
            dtype = _DTYPES[kind]
            count = int(np.prod(dims)) if dims else 1
            if count * dtype.itemsize != nbytes:
                raise ModelFileError(
                    f"{self.path}: {name} claims {nbytes} bytes for shape {dims} of {dtype}"
                )
            array = self._take(nbytes).view(dtype).reshape(dims)
            if kind == _BFLOAT16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
            variables[name] = array
        for _ in range(self._u("<I")):
            alias, target = self._string(), self._string()
            if target not in variables:
                raise ModelFileError(f"{self.path}: alias {alias} names a missing {target}")
            variables[alias] = variables[target]
        if self.pos != len(self.data):
            raise ModelFileError(
                f"{self.path}: {len(self.data) - self.pos} bytes follow the model's last entry"
            )
        return ModelFile(path=self.path, spec=spec, revision=revision, variables=variables)
