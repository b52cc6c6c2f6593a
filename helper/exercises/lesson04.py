"""Lesson 04's checkers: packing 2-bit and 3-bit codes, the bytes of a W4A16 layer, bits per weight.

The two packing exercises run the learner's own function on hidden cases and say which case fails and how.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..layers import W4A16Linear
from ..packing import pack
from .core import Feedback, as_array, call_learner, is_number

__all__ = ["CHECKERS"]


# --- exercise 1: pack 2-bit codes -------------------------------------------------------------------------

def _pack_2bit(answer: Any) -> Feedback:
    if not callable(answer):
        return call_learner(answer, "my_pack_2bit")[1]
    generator = torch.Generator().manual_seed(4)
    cases = [torch.randint(0, 4, shape, generator=generator, dtype=torch.uint8) for shape in [(3, 16), (1, 4), (2, 64)]]
    for k, values in enumerate(cases, 1):
        where = f"hidden case {k} of {len(cases)} (shape {tuple(values.shape)})"
        result, problem = call_learner(answer, "my_pack_2bit", values.clone())
        if problem:
            return Feedback(False, f"{where}: {problem.message}")
        packed, message = as_array(result, "uint8 bytes")
        if message:
            return Feedback(False, f"{where}: {message}")
        expected = pack(values, 2).numpy()
        if packed.shape != expected.shape:
            return Feedback(False, f"{where}: expected shape {expected.shape} (4 values per byte), got {packed.shape}.")
        if isinstance(result, (torch.Tensor, np.ndarray)) and packed.dtype != np.uint8:
            return Feedback(False, f"{where}: return uint8 bytes, not {packed.dtype} (add .to(torch.uint8)).")
        if np.array_equal(packed, expected):
            continue
        if np.array_equal(packed, pack(values.flip(-1), 2).flip(-1).numpy()):
            return Feedback(False, f"{where}: the right values, in reverse order: the first value goes in the "
                                   f"lowest 2 bits.")
        return Feedback(False, f"{where}: the bytes differ: byte = v0 | v1 << 2 | v2 << 4 | v3 << 6 for each group "
                               f"of 4 values.")
    return Feedback(True, f"same bytes as helper.pack(values, 2) on all {len(cases)} hidden cases: value i of a byte "
                          f"sits at bits 2i..2i+1.")


# --- exercise 2: pack 3-bit codes into a bit stream, padded to whole bytes ------------------------------------

def pack_3bit_reference(codes: np.ndarray) -> np.ndarray:
    """Code i at bits 3i..3i+2 of a little-endian bit stream, zero-padded to whole bytes (np.packbits, an
    implementation independent of the learner's bit arithmetic)."""
    bits = (codes.astype(np.uint8)[:, None] >> np.arange(3, dtype=np.uint8)) & 1  # (n, 3), lowest bit first
    return np.packbits(bits.reshape(-1), bitorder="little")


def _unpack_3bit(packed: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(packed.astype(np.uint8), bitorder="little")
    if bits.size < 3 * n:
        bits = np.concatenate([bits, np.zeros(3 * n - bits.size, dtype=np.uint8)])
    return (bits[: 3 * n].reshape(n, 3) << np.arange(3, dtype=np.uint8)).sum(axis=1)


def _pack_3bit_msb_first(codes: np.ndarray) -> np.ndarray:
    bits = (codes.astype(np.uint8)[:, None] >> np.arange(2, -1, -1, dtype=np.uint8)) & 1
    return np.packbits(bits.reshape(-1), bitorder="big")


_PACK_3BIT_CASES = [8, 16, 5, 1, 3, 11, 21]  # 8 codes fill exactly 3 bytes; the others need padding


def _pack_3bit_cases() -> list[np.ndarray]:
    generator = np.random.default_rng(3)
    cases = [generator.integers(0, 8, n, dtype=np.uint8) for n in _PACK_3BIT_CASES]
    cases.append(np.full(5, 7, dtype=np.uint8))  # all ones: shows whether the padding bits stay 0
    return cases


def _diagnose_3bit(packed: np.ndarray, codes: np.ndarray, expected: np.ndarray) -> str:
    n = codes.size
    if packed.size == n:
        return "you stored one code per byte: stream the bits instead, 3 per code, 8 codes in 3 bytes."
    if packed.size == -(-n // 2) and packed.size != expected.size:
        return "you stored two codes per byte (6 of 8 bits used): stream the bits, 8 codes in 3 bytes."
    if packed.size == 3 * n // 8 and packed.size < expected.size:
        return (f"{3 * n} bits need {expected.size} bytes, not {packed.size}: round up and pad the last byte with "
                f"zeros, e.g. n_bytes = (3 * n + 7) // 8.")
    if packed.size != expected.size:
        return f"{n} codes x 3 bits = {3 * n} bits = {expected.size} bytes (rounded up), not {packed.size}."
    if np.array_equal(packed, _pack_3bit_msb_first(codes)):
        return ("the bits are in the opposite order: code 0 goes in the LOWEST 3 bits of byte 0 (bits 0-2), code 1 "
                "in bits 3-5, and code i at bits 3i..3i+2 of the stream.")
    decoded = _unpack_3bit(packed, n)
    wrong = np.flatnonzero(decoded != codes)
    if wrong.size == 0:
        extra = int(packed[-1]) >> ((3 * n) % 8) if (3 * n) % 8 else 0
        return (f"every code reads back right, but the padding bits after the last code are not 0 (last byte "
                f"{packed[-1]:08b}, padding value {extra}): pad with zeros.")
    crossing = [i for i in range(n) if (3 * i) // 8 != (3 * i + 2) // 8]
    i = int(wrong[0])
    if set(wrong.tolist()) <= set(crossing):
        return (f"codes that cross a byte boundary come out wrong (code {i}, bits {3 * i}..{3 * i + 2}, is split "
                f"between bytes {3 * i // 8} and {3 * i // 8 + 1}): its high bits go into the next byte.")
    return (f"code {i} (value {int(codes[i])}) reads back as {int(decoded[i])} from your bytes: code i must sit at "
            f"bits 3i..3i+2 of the stream, byte k holding stream bits 8k..8k+7.")


def _pack_3bit(answer: Any) -> Feedback:
    if not callable(answer):
        return call_learner(answer, "my_pack_3bit")[1]
    cases = _pack_3bit_cases()
    for k, codes in enumerate(cases, 1):
        where = f"hidden case {k} of {len(cases)} ({codes.size} codes {codes.tolist()})"
        result, problem = call_learner(answer, "my_pack_3bit", torch.from_numpy(codes.copy()))
        if problem:
            return Feedback(False, f"{where}: {problem.message}")
        packed, message = as_array(result, "uint8 bytes")
        if message:
            return Feedback(False, f"{where}: {message}")
        expected = pack_3bit_reference(codes)
        if packed.ndim != 1:
            return Feedback(False, f"{where}: return a flat (1-D) tensor of {expected.size} bytes, got shape "
                                   f"{packed.shape}.")
        if isinstance(result, (torch.Tensor, np.ndarray)) and packed.dtype != np.uint8:
            return Feedback(False, f"{where}: return uint8 bytes (torch.uint8), not {packed.dtype}.")
        if not np.issubdtype(packed.dtype, np.integer) or packed.size and (packed.min() < 0 or packed.max() > 255):
            return Feedback(False, f"{where}: bytes are whole numbers 0..255; got {packed.tolist()[:8]}.")
        if np.array_equal(packed, expected):
            continue
        return Feedback(False, f"{where}: expected bytes {expected.tolist()}, got {packed.tolist()}. "
                               + _diagnose_3bit(packed, codes, expected))
    return Feedback(True, f"all {len(cases)} hidden cases right ({min(_PACK_3BIT_CASES)} to "
                          f"{max(_PACK_3BIT_CASES)} codes): 8 codes fill exactly 3 bytes, any other count pads the "
                          f"last byte with zeros. 3 bits per weight, really.")


# --- exercises 3 and 4: counting bytes and bits ------------------------------------------------------------

def _w4a16_bytes(answer: Any) -> Feedback:
    layer = W4A16Linear(576, 1536, bias=False, group_size=32)
    expected = sum(t.numel() * t.element_size() for t in layer.buffers())
    codes = 576 * 1536 // 2
    if not is_number(answer):
        return Feedback(False, "give a number of bytes.")
    if answer == expected:
        return Feedback(True, f"{codes:,} B of packed codes + {expected - codes:,} B of fp32 scales "
                              f"(1536 rows x 18 groups x 4 B) = {expected:,} B: 5 bits per weight.")
    if answer == codes:
        return Feedback(False, "that is the packed codes only: add one fp32 scale per group of 32 weights.")
    if answer == 576 * 1536 + (expected - codes):
        return Feedback(False, "codes are packed two per byte: 4 bits, not 8, per weight.")
    if answer == 576 * 1536 * 4:
        return Feedback(False, "that is the fp32 layer; the quantized one stores 4-bit codes + scales.")
    if answer == codes + (expected - codes) // 2:
        return Feedback(False, "that is with 16-bit scales; this layer keeps fp32 scales (4 B each).")
    if math.isclose(answer, expected / 1e6, rel_tol=1e-3) or math.isclose(answer, expected / 2**20, rel_tol=1e-3):
        return Feedback(False, f"give the count of bytes, not megabytes: {expected / 1e6:.3f} MB = ... B.")
    return Feedback(False, f"{answer:,} is not it: (weights x 4 bits) / 8 + (weights / 32) x 4 bytes.")


def _bits_per_weight(answer: Any) -> Feedback:
    expected = 4 + 16 / 32
    if not is_number(answer):
        return Feedback(False, "give bits per weight as a number.")
    if math.isclose(answer, expected):
        return Feedback(True, "4 bits of code + a 16-bit scale shared by 32 weights (0.5 bit each) = 4.5.")
    if math.isclose(answer, 4):
        return Feedback(False, "the scales cost something too: 16 bits per group of 32 weights.")
    if math.isclose(answer, 5):
        return Feedback(False, "that is with fp32 scales; the question says 16-bit scales.")
    if math.isclose(answer, 4 + 16):
        return Feedback(False, "the 16-bit scale is shared by 32 weights: 16 / 32 bits each, not 16.")
    if math.isclose(answer, expected / 8):
        return Feedback(False, "that is bytes per weight; the question asks for bits.")
    return Feedback(False, f"{answer} is not it: 4 + 16 / 32.")


CHECKERS: dict[str, Callable[[Any], Feedback]] = {
    "04.pack_2bit": _pack_2bit,
    "04.pack_3bit": _pack_3bit,
    "04.w4a16_layer_bytes": _w4a16_bytes,
    "04.bits_per_weight_g32": _bits_per_weight,
}
