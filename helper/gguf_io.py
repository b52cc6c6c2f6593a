"""GGUF opened by hand: a struct-level reader and the Q8_0 / Q4_0 / Q4_1 block formats. Taught in 05.

File layout (little-endian): magic b"GGUF", version u32, tensor_count u64, kv_count u64; then kv_count
(key, value-type, value) metadata entries; then one (name, n_dims, ne[0..n), type, offset) entry per
tensor; then, aligned to general.alignment (32), the tensor data. Strings are u64 length + UTF-8 bytes.
`ne` lists dimensions fastest-varying first: a PyTorch (out, in) weight has ne = [in, out].
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["GGUFFormatError", "TensorInfo", "GGUFFile", "BLOCK_FORMATS", "read_gguf", "raw_tensor_bytes", "load_tensor",
           "dequantize_q8_0", "dequantize_q4_0", "dequantize_q4_1", "quantize_q8_0", "quantize_q4_0", "split_block",
           "k_quant_bits_per_weight", "write_gguf"]

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 16 << 20  # a metadata string (the largest real ones, embedded tokenizer.json files, are ~10 MB)
_MAX_NAME = 1 << 16  # a key or tensor name (llama.cpp allows 64 bytes)
_SIZES = {fmt: struct.calcsize(fmt) for fmt in _SCALARS.values()}
_MIN_VALUE_BYTES = {**{t: struct.calcsize(f) for t, f in _SCALARS.items()}, _STRING: 8, _ARRAY: 12}
_MAX_ARRAY_DEPTH = 8  # real files nest arrays at most once; a bound keeps a 60 kB file from recursing forever
_MAX_ALIGNMENT = 1 << 16  # general.alignment: a power of two up to this (llama.cpp writes 32)
_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
               12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}

# type -> (weights per block, bytes per block); bits per weight = 8 * bytes / weights
BLOCK_FORMATS = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q8_0": (32, 2 + 32),        # fp16 d, 32 int8:        x = q * d
    "Q4_0": (32, 2 + 16),        # fp16 d, 32 nibbles:     x = (q - 8) * d
    "Q4_1": (32, 2 + 2 + 16),    # fp16 d, fp16 m, nibbles: x = q * d + m
    "Q5_0": (32, 2 + 4 + 16), "Q5_1": (32, 2 + 2 + 4 + 16),
    "Q2_K": (256, 256 // 16 + 256 // 4 + 2 + 2), "Q3_K": (256, 256 // 8 + 256 // 4 + 12 + 2),
    "Q4_K": (256, 2 + 2 + 12 + 256 // 2), "Q5_K": (256, 2 + 2 + 12 + 256 // 8 + 256 // 2),
    "Q6_K": (256, 256 // 2 + 256 // 4 + 256 // 16 + 2),
}


class GGUFFormatError(ValueError):
    """The bytes are not a (complete, sane) GGUF file; the message says what and where."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table."""

    name: str
    ne: tuple[int, ...]  # GGUF order, fastest dimension first
    type_name: str
    offset: int  # absolute byte offset in the file
    n_bytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The PyTorch / numpy shape: ne reversed."""
        return tuple(reversed(self.ne))


@dataclass
class GGUFFile:
    """Header, metadata and tensor table of a GGUF file (tensor bytes stay on disk until asked for)."""

    path: Path
    version: int
    metadata: dict[str, object]
    tensors: list[TensorInfo]
    alignment: int
    data_start: int
    file_size: int
    metadata_types: dict[str, tuple[int, int | None]] = field(default_factory=dict, repr=False)  # (type, item type)
    _by_name: dict[str, TensorInfo] = field(default_factory=dict, repr=False)

    def tensor(self, name: str) -> TensorInfo:
        """The tensor table entry called name, with a clear error if absent."""
        if not self._by_name:
            self._by_name = {t.name: t for t in self.tensors}
        if name not in self._by_name:
            raise KeyError(f"no tensor {name!r} in {self.path.name}; e.g. {', '.join(list(self._by_name)[:3])}")
        return self._by_name[name]


class _Cursor:
    """Reads little-endian values from a byte buffer, checking every length against what is left."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.view = memoryview(data)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise GGUFFormatError(f"file truncated: {what} needs {n:,} bytes at byte {self.pos:,} "
                                  f"but the file has {len(self.data):,}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, fmt: str, what: str):
        size = _SIZES.get(fmt) or struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            self.take(size, what)  # raises: file truncated
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def string(self, what: str, limit: int = _MAX_STRING) -> str:
        length = self.scalar("<Q", f"length of {what}")
        if length > len(self.data) - self.pos:
            raise GGUFFormatError(f"string length {length:,} at byte {self.pos - 8:,} exceeds the file size "
                                  f"({len(self.data):,} bytes): {what}")
        if length > limit:
            raise GGUFFormatError(f"string length {length:,} at byte {self.pos - 8:,} is over this reader's "
                                  f"limit of {limit:,} bytes: {what}")
        start = self.pos
        self.pos += length
        try:  # decoded straight from the mapped file: no copy of the bytes first
            return str(self.view[start:start + length], "utf-8")
        except UnicodeDecodeError as error:
            raise GGUFFormatError(f"string at byte {start:,} is not UTF-8 ({error.reason} at its byte "
                                  f"{error.start:,}): {what}") from None

    def value(self, value_type: int, what: str, depth: int = 0):
        if value_type in _SCALARS:
            return self.scalar(_SCALARS[value_type], what)
        if value_type == _STRING:
            return self.string(what)
        if value_type == _ARRAY:
            if depth >= _MAX_ARRAY_DEPTH:
                raise GGUFFormatError(f"arrays nested more than {_MAX_ARRAY_DEPTH} deep at byte {self.pos:,}: {what}")
            item_type, count = self.scalar("<I", f"array type of {what}"), self.scalar("<Q", f"array length of {what}")
            if item_type not in _MIN_VALUE_BYTES:
                raise GGUFFormatError(f"unknown array item type {item_type} at byte {self.pos - 12:,}: {what}")
            # Each item takes at least that many bytes of the file, and 8 bytes of list in memory: the list
            # of a lying count can never outgrow the file.
            if count * max(_MIN_VALUE_BYTES[item_type], 8) > len(self.data) - self.pos:
                raise GGUFFormatError(f"array of {count:,} items at byte {self.pos:,} cannot fit in the file: {what}")
            return [self.value(item_type, what, depth + 1) for _ in range(count)]
        raise GGUFFormatError(f"unknown value type {value_type} at byte {self.pos:,}: {what}")


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse header, metadata and tensor table; checks that every tensor's data lies inside the file."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as handle:  # mapped, not read: only the header's pages are touched, nothing is copied
        head = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    cursor = _Cursor(head)
    magic = cursor.take(4, "magic")
    if magic != b"GGUF":
        raise GGUFFormatError(f"not a GGUF file: magic {magic!r} (expected b'GGUF')")
    version = cursor.scalar("<I", "version")
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version} (this reader knows 2 and 3)")
    tensor_count, kv_count = cursor.scalar("<Q", "tensor count"), cursor.scalar("<Q", "metadata count")
    if tensor_count > size // 24 or kv_count > size // 12:  # each entry takes at least that many bytes
        raise GGUFFormatError(f"file truncated or corrupt: {tensor_count:,} tensors and {kv_count:,} metadata "
                              f"entries cannot fit in {size:,} bytes")
    metadata, metadata_types = {}, {}
    for _ in range(kv_count):
        key = cursor.string("metadata key", _MAX_NAME)
        if key in metadata:
            raise GGUFFormatError(f"metadata key {key!r} appears twice (at byte {cursor.pos:,})")
        value_type = cursor.scalar("<I", f"type of {key}")
        item_type = (struct.unpack("<I", cursor.data[cursor.pos:cursor.pos + 4])[0]
                     if value_type == _ARRAY and cursor.pos + 4 <= len(cursor.data) else None)  # else value() says
        metadata[key] = cursor.value(value_type, key)
        metadata_types[key] = (value_type, item_type)
    entries, names = [], set()
    for _ in range(tensor_count):
        name = cursor.string("tensor name", _MAX_NAME)
        if name in names:
            raise GGUFFormatError(f"tensor name {name!r} appears twice in the tensor table")
        names.add(name)
        n_dims = cursor.scalar("<I", f"dimensions of {name}")
        if n_dims > 4:
            raise GGUFFormatError(f"tensor {name} claims {n_dims} dimensions (GGUF allows at most 4)")
        ne = tuple(cursor.scalar("<Q", f"shape of {name}") for _ in range(n_dims))
        type_id, offset = cursor.scalar("<I", f"type of {name}"), cursor.scalar("<Q", f"offset of {name}")
        entries.append((name, ne, type_id, offset))
    alignment = metadata.get("general.alignment", 32)
    if (isinstance(alignment, bool) or not isinstance(alignment, int) or not 1 <= alignment <= _MAX_ALIGNMENT
            or alignment & (alignment - 1)):
        raise GGUFFormatError(f"general.alignment must be a power of two from 1 to {_MAX_ALIGNMENT:,}, "
                              f"got {alignment!r:.40}")
    data_start = -(-cursor.pos // alignment) * alignment
    tensors = []
    for name, ne, type_id, offset in entries:
        type_name = _TYPE_NAMES.get(type_id, f"type {type_id}")
        if type_name not in BLOCK_FORMATS:
            raise GGUFFormatError(f"tensor {name} has unsupported type {type_name}")
        block, block_bytes = BLOCK_FORMATS[type_name]
        count = math.prod(ne)  # Python integers: 2^32 x 2^32 does not wrap around to 0
        if offset % alignment:
            raise GGUFFormatError(f"tensor {name}: offset {offset:,} is not a multiple of the alignment {alignment}")
        if count % block:
            raise GGUFFormatError(f"tensor {name}: {count} values is not a whole number of {type_name} blocks")
        info = TensorInfo(name, ne, type_name, data_start + offset, count // block * block_bytes)
        if info.offset + info.n_bytes > size:
            raise GGUFFormatError(f"file truncated: tensor {name} ends at byte {info.offset + info.n_bytes:,} "
                                  f"but the file has {size:,} bytes")
        tensors.append(info)
    return GGUFFile(path, version, metadata, tensors, alignment, data_start, size, metadata_types)


def raw_tensor_bytes(file: GGUFFile, name: str) -> np.ndarray:
    """The raw bytes of one tensor (uint8), read from disk."""
    info = file.tensor(name)
    return np.fromfile(file.path, dtype=np.uint8, count=info.n_bytes, offset=info.offset)


def _blocks(data: np.ndarray, type_name: str) -> np.ndarray:
    block_bytes = BLOCK_FORMATS[type_name][1]
    if not isinstance(data, (np.ndarray, bytes, bytearray, memoryview)) or (
            isinstance(data, np.ndarray) and data.dtype != np.uint8):
        raise TypeError(f"data must be raw bytes (a uint8 array or bytes), got {type(data).__name__}"
                        f"{f' of {data.dtype}' if isinstance(data, np.ndarray) else ''}")
    data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if data.size % block_bytes:
        raise ValueError(f"{data.size} bytes is not a whole number of {type_name} blocks of {block_bytes} bytes")
    return data.reshape(-1, block_bytes)


def _finite_scales(scales: np.ndarray, field_name: str, type_name: str) -> np.ndarray:
    """The fp16 scales (or minimums) of some blocks, refused if any is NaN or Inf (a corrupt block)."""
    bad = ~np.isfinite(scales.reshape(-1))
    if bad.any():
        raise ValueError(f"{type_name} block {int(np.argmax(bad)):,} has {field_name} = {scales.reshape(-1)[bad][0]}: "
                         f"{bad.sum():,} of {bad.size:,} blocks are corrupt (NaN or Inf)")
    return scales


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """Q8_0 block = fp16 d + 32 int8 q (34 bytes, 8.5 bits/weight): x = q * d, in float32."""
    blocks = _blocks(data, "Q8_0")
    d = _finite_scales(blocks[:, :2].copy().view(np.float16), "d", "Q8_0").astype(np.float32)  # (blocks, 1)
    return (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """16 bytes -> 32 codes: low nibbles are weights 0..15, high nibbles weights 16..31."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1)


def dequantize_q4_0(data: np.ndarray) -> np.ndarray:
    """Q4_0 block = fp16 d + 16 bytes of nibbles (18 bytes, 4.5 bits/weight): x = (q - 8) * d."""
    blocks = _blocks(data, "Q4_0")
    d = _finite_scales(blocks[:, :2].copy().view(np.float16), "d", "Q4_0").astype(np.float32)
    return ((_nibbles(blocks[:, 2:]).astype(np.int8) - np.int8(8)).astype(np.float32) * d).reshape(-1)


def dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    """Q4_1 block = fp16 d + fp16 m + 16 bytes of nibbles (20 bytes, 5 bits/weight): x = q * d + m."""
    blocks = _blocks(data, "Q4_1")
    d = _finite_scales(blocks[:, 0:2].copy().view(np.float16), "d", "Q4_1").astype(np.float32)
    m = _finite_scales(blocks[:, 2:4].copy().view(np.float16), "m", "Q4_1").astype(np.float32)
    return (_nibbles(blocks[:, 4:]).astype(np.float32) * d + m).reshape(-1)


def _check_values(x: np.ndarray) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"x must be an array of numbers (a rectangular float array), got {type(x).__name__}") from None
    if x.ndim == 0 or x.size == 0 or x.shape[-1] % 32:
        raise ValueError(f"the last dimension must be a non-zero multiple of 32 (one block), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or Inf: a block scale cannot be chosen")
    with np.errstate(over="ignore"):
        return x.astype(np.float32).reshape(-1, 32)


def _fp16_scales(d: np.ndarray, blocks: np.ndarray, type_name: str, divisor: int) -> np.ndarray:
    """d as the fp16 a block stores, refused where it overflows: |x| up to 65504 x divisor fits."""
    with np.errstate(over="ignore"):
        stored = d.astype(np.float16)
    if not np.isfinite(stored).all():
        raise ValueError(f"values too large for {type_name}: its fp16 scale d = max|x| / {divisor} holds |x| up to "
                         f"{65504 * divisor:,}, got max |x| = {float(np.abs(blocks).max()):.4g}")
    return stored


def _round_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, like C's roundf (what llama.cpp and gguf.quants use)."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """d = max|x| / 127 per block of 32, q = roundf(x / d); bytes as llama.cpp writes them."""
    blocks = _check_values(x)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    stored = _fp16_scales(d, blocks, "Q8_0", 127)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = _round_away(blocks * inverse).astype(np.int8)
    return np.concatenate([stored.view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """d = (signed value of largest magnitude) / -8 per block; q = min(15, trunc(x / d + 8.5)); packed nibbles."""
    blocks = _check_values(x)
    index = np.abs(blocks).argmax(axis=1)[:, None]
    d = np.take_along_axis(blocks, index, axis=1) / np.float32(-8)
    stored = _fp16_scales(d, blocks, "Q4_0", 8)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.trunc(blocks * inverse + np.float32(8.5)).clip(0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([stored.view(np.uint8), packed], axis=1).reshape(-1)


def split_block(block: np.ndarray, type_name: str) -> dict[str, object]:
    """The named fields of one raw block (d, m for Q4_1, the 32 codes) and the 32 values it decodes to."""
    if type_name not in ("Q8_0", "Q4_0", "Q4_1"):
        raise ValueError(f"split_block knows Q8_0, Q4_0 and Q4_1, not {type_name}")
    block = _blocks(block, type_name)
    if block.shape[0] != 1:
        raise ValueError(f"pass exactly one block ({BLOCK_FORMATS[type_name][1]} bytes)")
    fields: dict[str, object] = {"d": float(block[0, :2].copy().view(np.float16)[0])}
    if type_name == "Q8_0":
        fields["codes"] = block[0, 2:].copy().view(np.int8).tolist()
        fields["values"] = dequantize_q8_0(block)
    else:
        start = 4 if type_name == "Q4_1" else 2
        if type_name == "Q4_1":
            fields["m"] = float(block[0, 2:4].copy().view(np.float16)[0])
        fields["codes"] = _nibbles(block[:, start:])[0].tolist()
        fields["values"] = (dequantize_q4_1 if type_name == "Q4_1" else dequantize_q4_0)(block)
    return fields


_DEQUANTIZERS = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1}


def load_tensor(file: GGUFFile, name: str) -> torch.Tensor:
    """One tensor dequantized to float32, in PyTorch shape (ne reversed)."""
    info = file.tensor(name)
    raw = raw_tensor_bytes(file, name)
    if info.type_name == "F32":
        values = raw.view(np.float32)
    elif info.type_name == "F16":
        values = raw.view(np.float16).astype(np.float32)
    elif info.type_name in _DEQUANTIZERS:
        values = _DEQUANTIZERS[info.type_name](raw)
    else:
        raise ValueError(f"{name} is {info.type_name}; load_tensor supports F32, F16, {', '.join(_DEQUANTIZERS)}")
    return torch.from_numpy(values.copy()).reshape(info.shape)


def k_quant_bits_per_weight(type_name: str) -> float:
    """Bits per weight of a block format from its layout, e.g. Q4_K: (2 + 2 + 12 + 128) * 8 / 256 = 4.5."""
    if type_name not in BLOCK_FORMATS:
        raise ValueError(f"unknown type {type_name!r}; known: {', '.join(BLOCK_FORMATS)}")
    weights, n_bytes = BLOCK_FORMATS[type_name]
    return 8 * n_bytes / weights


_QUANTIZERS = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0}
_FILE_TYPES = {"Q8_0": 7, "Q4_0": 2}  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0 / MOSTLY_Q4_0 (general.file_type)


def write_gguf(source: str | Path | GGUFFile, path: str | Path, type_name: str = "Q8_0") -> GGUFFile:
    """Re-quantize every quantized tensor of a GGUF file with our quantizer and write a new file with gguf.GGUFWriter.

    Metadata (architecture, hyper-parameters, tokenizer) is copied with its original value types;
    F32 tensors (norms) stay F32; every other tensor is dequantized and re-quantized to type_name. The
    tensors keep llama.cpp's layout (its permuted q/k rows), so any GGUF loader reads the result.
    Returns the new file, read back by our reader.
    """
    import gguf  # the writer is the reference package's; the blocks it writes are ours

    if type_name not in _QUANTIZERS:
        raise ValueError(f"write_gguf quantizes to {', '.join(_QUANTIZERS)}, not {type_name!r}")
    source = source if isinstance(source, GGUFFile) else read_gguf(source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, str(source.metadata["general.architecture"]))
    for key, value in source.metadata.items():
        if key == "general.architecture":  # the writer adds it itself
            continue
        if key == "general.file_type":
            value = _FILE_TYPES[type_name]
        value_type, item_type = source.metadata_types[key]
        writer.add_key_value(key, value, gguf.GGUFValueType(value_type),
                             sub_type=None if item_type is None else gguf.GGUFValueType(item_type))
    for info in source.tensors:
        values = load_tensor(source, info.name).numpy()
        if info.type_name in ("F32", "F16", "BF16") or values.shape[-1] % 32:
            writer.add_tensor(info.name, values.astype(np.float32))
            continue
        weights, block_bytes = BLOCK_FORMATS[type_name]
        blocks = _QUANTIZERS[type_name](values).reshape(*values.shape[:-1], values.shape[-1] // weights * block_bytes)
        writer.add_tensor(info.name, blocks, raw_dtype=gguf.GGMLQuantizationType[type_name])
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return read_gguf(path)
